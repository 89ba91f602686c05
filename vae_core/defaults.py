"""The Train page's default run, and how many epochs a dataset of a given size needs.

A dataset's size alone should not decide how long a model trains: five epochs are 2,345
optimisation steps on MNIST but 15 on a 300-image folder, which leaves grey blobs. So the
suggested epoch count is the smallest one that gives at least ``MIN_STEPS`` steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# Optimisation steps a default run takes at least. The page's MLP on the offline digits decodes
# recognisable digits (test -ELBO <= 160 nats, benchmarks/train_app.py) after 216-240 steps at
# lr 1e-3 over three seeds; 300 leaves a margin and ends near 157 nats.
MIN_STEPS = 300
# Epochs a default run takes at least, however large the dataset (one epoch shows no curve).
MIN_EPOCHS = 2


@dataclass(frozen=True)
class PageDefaults:
    """The Train page's default settings: what pressing Start trains without touching the form.

    ``epochs`` is ``suggested_epochs`` for the digits' 1,500 training images at this batch size.
    The learning rate stays at Adam's usual 1e-3: 2e-3 and 3e-3 reach recognisable digits in
    about half the steps with the MLP, but the same rates collapsed the conv model's posterior
    (KL 0) on digits (2e-3, one seed of three) and on MNIST (3e-3), and the form's rate is the
    one a user keeps on switching to conv.
    """

    dataset: str = "digits"
    arch: str = "mlp"
    latent_dim: int = 8
    hidden: tuple[int, ...] = (400,)
    batch_size: int = 128
    lr: float = 1e-3
    beta: float = 1.0
    epochs: int = 25

    def __post_init__(self) -> None:
        for name in ("latent_dim", "batch_size", "epochs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.hidden or min(self.hidden) < 1:
            raise ValueError(f"hidden must list widths >= 1, got {self.hidden}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not self.beta >= 0:
            raise ValueError(f"beta must be >= 0, got {self.beta}")


PAGE_DEFAULTS = PageDefaults()


def suggested_epochs(
    n_train: int, *, batch_size: int, minimum_steps: int = MIN_STEPS, at_least: int = MIN_EPOCHS
) -> int:
    """Return the fewest epochs that give at least ``minimum_steps`` optimisation steps.

    Args:
        n_train: training images per epoch (>= 1).
        batch_size: images per step (>= 1); the last, smaller batch of an epoch counts as a step.
        minimum_steps: optimisation steps the run should take at least (>= 0).
        at_least: the result is never below this many epochs (>= 1).

    Returns:
        max(at_least, ceil(minimum_steps / steps_per_epoch)), steps_per_epoch = ceil(n_train / batch_size).

    Raises:
        ValueError: an argument is out of range.
    """
    if n_train < 1:
        raise ValueError(f"the dataset has no training images (n_train = {n_train})")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if minimum_steps < 0:
        raise ValueError(f"minimum_steps must be >= 0, got {minimum_steps}")
    if at_least < 1:
        raise ValueError(f"at_least must be >= 1, got {at_least}")
    steps_per_epoch = math.ceil(n_train / batch_size)
    return max(at_least, math.ceil(minimum_steps / steps_per_epoch))
