"""Entry point for ``python -m vae_core``."""

import sys

from vae_core.cli import main

sys.exit(main())
