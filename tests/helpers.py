"""Small seeded fixtures shared by the tests: random datasets and tiny models."""

from __future__ import annotations

import torch

from vae_core.config import ModelConfig
from vae_core.datasets import DatasetSplits
from vae_core.model import VAE

TINY = ModelConfig(arch="mlp", latent_dim=2, hidden=(32,))


def random_splits(*, n_train: int = 256, n_test: int = 64, shape=(1, 28, 28), seed: int = 0) -> DatasetSplits:
    """Return a dataset of seeded blobs: half the images bright at the top, half at the bottom."""
    gen = torch.Generator().manual_seed(seed)

    def make(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        labels = torch.randint(0, 2, (n,), generator=gen)
        x = torch.rand((n, *shape), generator=gen) * 60
        half = shape[1] // 2
        x[labels == 0, :, :half] += 180
        x[labels == 1, :, half:] += 180
        return x.clamp(0, 255).to(torch.uint8), labels

    train_x, train_y = make(n_train)
    test_x, test_y = make(n_test)
    return DatasetSplits("random", train_x, train_y, test_x, test_y, ("top", "bottom"), "random blobs")


def tiny_model(config: ModelConfig = TINY, seed: int = 0) -> VAE:
    """Return a seeded tiny VAE."""
    torch.manual_seed(seed)
    return VAE(config)
