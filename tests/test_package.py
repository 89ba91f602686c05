"""Packaging rules: vae_core stays free of streamlit, the licence is MIT, dependencies are lower-bounded."""

from __future__ import annotations

import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

import vae_core

REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DIR = REPO_ROOT / "vae_core"


def _modules() -> list[str]:
    # __main__ runs the CLI when imported, so it is checked statically only.
    names = [info.name for info in pkgutil.walk_packages(vae_core.__path__, prefix="vae_core.")]
    return ["vae_core", *(name for name in names if not name.endswith(".__main__"))]


def _pyproject() -> dict:
    tomllib = pytest.importorskip("tomllib", reason="tomllib needs Python 3.11+")
    return tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_importing_every_module_leaves_streamlit_unimported() -> None:
    modules = _modules()
    assert "vae_core.model" in modules, modules
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "loaded = sorted(m for m in sys.modules if m == 'streamlit' or m.startswith('streamlit.'))\n"
        "assert not loaded, f'vae_core imported {loaded}'\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr


def test_no_source_file_mentions_a_streamlit_import() -> None:
    pattern = re.compile(r"^\s*(import\s+streamlit|from\s+streamlit[\s.])", re.MULTILINE)
    files = sorted(PACKAGE_DIR.rglob("*.py"))
    assert files
    offenders = [
        str(f.relative_to(REPO_ROOT)) for f in files if pattern.search(f.read_text(encoding="utf-8"))
    ]
    assert offenders == []


def test_license_is_mit() -> None:
    text = (REPO_ROOT / "LICENSE").read_text(encoding="utf-8")
    assert text.startswith("MIT License")
    assert "Copyright (c) 2026 The VAE latent-space explorer authors" in text
    assert "WITHOUT WARRANTY OF ANY KIND" in text
    assert _pyproject()["project"]["license"] == "MIT"


def test_dependencies_have_lower_bounds_only() -> None:
    project = _pyproject()["project"]
    requirements = [*project["dependencies"], *project["optional-dependencies"]["test"]]
    assert {"streamlit", "torch", "torchvision"} <= {Requirement(r).name for r in project["dependencies"]}
    for line in requirements:
        operators = [spec.operator for spec in Requirement(line).specifier]
        assert operators == [">="], (
            f"{line!r} must have exactly one lower bound (>=) and no upper bound or pin"
        )


def test_version_matches_the_package() -> None:
    assert _pyproject()["project"]["version"] == vae_core.__version__
