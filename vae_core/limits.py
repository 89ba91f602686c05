"""Upper bounds on what a model, a training run, a checkpoint or an upload may ask of the machine.

Each bound is a named :class:`Limit` whose default suits a laptop or a small two-core server
(a few GB of memory), checked before anything is allocated: a model config before ``VAE(config)``,
a training run before its data and model, a checkpoint's zip entries before ``torch.load`` and
its tensors before the model is built, an upload before it is kept. A refusal is a
:class:`LimitError` whose message states the limit and the environment variable that raises it,
so people with bigger machines set, for example, ``VAE_MAX_PARAMETERS=200000000``. The
variables are read when a check runs, so a server picks them up from its environment at start.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vae_core.config import ModelConfig, TrainConfig

MB = 1024**2
# Training keeps the weights, their gradients and Adam's two moments, plus the temporaries of its update step.
FLOATS_PER_PARAMETER = 6
# Each activation is kept for the backward pass and gets a gradient there; the rest is temporaries and slack.
FLOATS_PER_ACTIVATION = 4
BYTES_PER_FLOAT = 4


class LimitError(ValueError):
    """A request goes past one of the limits; the message names the limit and how to raise it."""


@dataclass(frozen=True)
class Limit:
    """An upper bound with a default and an environment variable that overrides it.

    ``unit`` names what is counted ("parameters", "MB"); limits in MB accept fractions
    (``VAE_MAX_UNPACKED_MB=0.5``), counts only whole numbers.
    """

    env: str
    default: int
    unit: str

    @property
    def in_mb(self) -> bool:
        return self.unit == "MB"

    @property
    def value(self) -> float:
        """Return the limit: the environment variable when it is set, else the default."""
        raw = os.environ.get(self.env, "").strip().replace("_", "")
        if not raw:
            return self.default
        try:
            value = float(raw) if self.in_mb else int(raw)
        except ValueError:
            kind = "a number of MB" if self.in_mb else "a whole number"
            raise LimitError(f"the environment variable {self.env} must be {kind}, got {raw!r}") from None
        if not value > 0 or not math.isfinite(value):
            raise LimitError(f"the environment variable {self.env} must be above 0, got {raw!r}")
        return value

    @property
    def bytes(self) -> int:
        """Return a limit in MB as bytes."""
        return int(self.value * MB)

    def check(self, amount: float, what: str, *, verb: str = "asks for") -> None:
        """Raise :class:`LimitError` when ``amount`` (in ``unit``; bytes for an MB limit) is over the limit.

        Args:
            amount: The requested amount.
            what: What asks for it, e.g. ``"latent_dim"`` or ``"the model"``.
            verb: How ``what`` relates to ``amount`` in the message ("asks for", "is", "unpacks to").
        """
        if amount > (self.bytes if self.in_mb else self.value):
            raise LimitError(self.message(amount, what, verb=verb))

    def message(self, amount: float, what: str, *, verb: str = "asks for") -> str:
        """Return the refusal for ``amount``: what asked, the limit, and the variable that raises it."""
        shown = amount / MB if self.in_mb else amount
        return (
            f"{what} {verb} {_number(shown)} {self.unit}, more than the limit of {_number(self.value)} "
            f"{self.unit}; on a machine with more memory, raise it with the environment variable {self.env}"
        )


def _number(value: float) -> str:
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.1f}" if value >= 1 else f"{value:.3g}"


# The model (checked by ModelConfig).
MAX_PARAMETERS = Limit("VAE_MAX_PARAMETERS", 50_000_000, "parameters")
MAX_LATENT_DIM = Limit("VAE_MAX_LATENT_DIM", 1024, "latent dimensions")
MAX_WIDTH = Limit("VAE_MAX_WIDTH", 16384, "units")
MAX_CHANNELS = Limit("VAE_MAX_CHANNELS", 1024, "channels")
MAX_LAYERS = Limit("VAE_MAX_LAYERS", 16, "layers")
MAX_IMAGE_SIDE = Limit("VAE_MAX_IMAGE_SIDE", 1024, "pixels")
# A training run (checked by check_training: the Train form, the CLI).
MAX_BATCH = Limit("VAE_MAX_BATCH", 4096, "images per batch")
MAX_TRAIN_MEMORY_MB = Limit("VAE_MAX_TRAIN_MEMORY_MB", 3072, "MB")
# Checkpoint files (checked by safeload before torch.load reads them).
MAX_CHECKPOINT_MB = Limit("VAE_MAX_CHECKPOINT_MB", 512, "MB")
MAX_UNPACKED_MB = Limit("VAE_MAX_UNPACKED_MB", 1024, "MB")
# Checkpoints uploaded in one browser session of the app, held until the session ends.
MAX_SESSION_UPLOADS = Limit("VAE_MAX_SESSION_UPLOADS", 3, "uploaded checkpoints")
MAX_SESSION_UPLOAD_MB = Limit("VAE_MAX_SESSION_UPLOAD_MB", 400, "MB")

ALL: tuple[Limit, ...] = (
    MAX_PARAMETERS,
    MAX_LATENT_DIM,
    MAX_WIDTH,
    MAX_CHANNELS,
    MAX_LAYERS,
    MAX_IMAGE_SIDE,
    MAX_BATCH,
    MAX_TRAIN_MEMORY_MB,
    MAX_CHECKPOINT_MB,
    MAX_UNPACKED_MB,
    MAX_SESSION_UPLOADS,
    MAX_SESSION_UPLOAD_MB,
)


def training_bytes(model_config: ModelConfig, batch_size: int) -> int:
    """Estimate the memory one training step needs: weights, gradients and Adam state, and activations.

    Args:
        model_config: The model (its parameter and activation counts come from the config alone).
        batch_size: Images per step.

    Returns:
        Bytes, an estimate on the generous side (float32 throughout).
    """
    floats = (
        model_config.num_parameters() * FLOATS_PER_PARAMETER
        + batch_size * model_config.activations_per_image() * FLOATS_PER_ACTIVATION
    )
    return floats * BYTES_PER_FLOAT


def check_training(model_config: ModelConfig, train_config: TrainConfig) -> None:
    """Refuse a training run past the batch-size or training-memory limit, before data or model exist.

    The batch size is checked here rather than by ``TrainConfig``: a checkpoint's train config only
    records how a model was trained, and a bigger machine's batch size must not make it unreadable.

    Raises:
        LimitError: Naming the limit and its environment variable.
    """
    MAX_BATCH.check(train_config.batch_size, "batch_size")
    need = training_bytes(model_config, train_config.batch_size)
    if need > MAX_TRAIN_MEMORY_MB.bytes:
        raise LimitError(
            MAX_TRAIN_MEMORY_MB.message(need, "training this model with this batch size")
            + " (or choose a smaller batch or a smaller model)"
        )
