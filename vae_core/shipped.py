"""The checkpoints the repository ships, and how ``python -m vae_core ship`` reproduces them."""

from __future__ import annotations

from dataclasses import dataclass

from vae_core.config import ModelConfig, TrainConfig


@dataclass(frozen=True)
class ShippedModel:
    """A checkpoint the repository ships, reproduced by ``python -m vae_core ship``."""

    name: str
    description: str
    model: ModelConfig
    train: TrainConfig
    nll_k: int
    nll_images: int | None = None


SHIPPED: tuple[ShippedModel, ...] = (
    ShippedModel(
        "mnist-conv-16",
        "MNIST conv VAE, 16-dimensional latent",
        ModelConfig(arch="conv", latent_dim=16, channels=(32, 64)),
        TrainConfig(
            dataset="mnist", epochs=30, batch_size=64, lr=1e-3, kl_warmup_epochs=5, seed=0, device="cpu"
        ),
        # The conv decoder is the slow part on a CPU: K=200 on 2,000 test images takes minutes, not an hour.
        nll_k=200,
        nll_images=2000,
    ),
    ShippedModel(
        "mnist-mlp-2",
        "MNIST MLP VAE, 2-dimensional latent (the classic map and decoded manifold)",
        ModelConfig(arch="mlp", latent_dim=2, hidden=(512, 256)),
        TrainConfig(dataset="mnist", epochs=40, batch_size=64, lr=1e-3, seed=0, device="cpu"),
        nll_k=500,
    ),
    ShippedModel(
        "digits-mlp-8",
        "scikit-learn digits MLP VAE, 8-dimensional latent",
        ModelConfig(arch="mlp", latent_dim=8, hidden=(256,)),
        TrainConfig(
            dataset="digits", epochs=60, batch_size=64, lr=1e-3, kl_warmup_epochs=5, seed=0, device="cpu"
        ),
        nll_k=500,
    ),
)
SHIPPED_NAMES = frozenset(spec.name for spec in SHIPPED)
