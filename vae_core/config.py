"""Frozen configuration dataclasses for models and training runs.

Configs hash, so they key caches; variants come from ``dataclasses.replace``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from vae_core import limits

Arch = Literal["mlp", "conv"]
Likelihood = Literal["bernoulli", "gaussian"]
Device = Literal["auto", "cpu", "cuda", "mps"]

ARCHS: tuple[str, ...] = ("mlp", "conv")
LIKELIHOODS: tuple[str, ...] = ("bernoulli", "gaussian")
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda", "mps")
CONV_FC_WIDTH = 256  # the conv model's fully connected layer (model._conv); fixed, not configured
KERNEL = 4  # the conv model's kernel size (stride 2, padding 1)


@dataclass(frozen=True)
class ModelConfig:
    """Describe a VAE: image shape, latent size, architecture and likelihood.

    ``hidden`` lists the MLP's hidden layer widths; ``channels`` lists the conv
    encoder's channel counts, one stride-2 convolution each (the decoder mirrors it).
    """

    image_shape: tuple[int, int, int] = (1, 28, 28)
    latent_dim: int = 16
    arch: Arch = "conv"
    hidden: tuple[int, ...] = (400,)
    channels: tuple[int, ...] = (32, 64)
    likelihood: Likelihood = "bernoulli"
    beta: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "image_shape", tuple(int(s) for s in self.image_shape))
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        if len(self.image_shape) != 3 or min(self.image_shape) < 1:
            raise ValueError(f"image_shape must be (C, H, W) with positive sizes, got {self.image_shape}")
        if self.image_shape[0] not in (1, 3):
            raise ValueError(f"images must have 1 (greyscale) or 3 (RGB) channels, got {self.image_shape[0]}")
        if self.latent_dim < 1:
            raise ValueError(f"latent_dim must be >= 1, got {self.latent_dim}")
        if self.arch not in ARCHS:
            raise ValueError(f"arch must be one of {ARCHS}, got {self.arch!r}")
        if self.likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {self.likelihood!r}")
        if not self.beta >= 0:
            raise ValueError(f"beta must be >= 0, got {self.beta}")
        if self.arch == "mlp" and (not self.hidden or min(self.hidden) < 1):
            raise ValueError(f"an MLP needs at least one hidden layer of width >= 1, got {self.hidden}")
        if self.arch == "conv":
            if not self.channels or min(self.channels) < 1:
                raise ValueError(f"a conv model needs at least one channel count >= 1, got {self.channels}")
            factor = 2 ** len(self.channels)
            _, height, width = self.image_shape
            if height % factor or width % factor:
                raise ValueError(
                    f"a conv model with {len(self.channels)} stride-2 layers needs height and width "
                    f"divisible by {factor}, got {height}x{width}"
                )
        self._check_limits()

    def _check_limits(self) -> None:
        """Refuse a model past the limits (``vae_core.limits``) before anything is allocated."""
        limits.MAX_IMAGE_SIDE.check(max(self.image_shape[1:]), "the image height or width")
        limits.MAX_LATENT_DIM.check(self.latent_dim, "latent_dim")
        if self.arch == "mlp":
            limits.MAX_LAYERS.check(len(self.hidden), "the MLP")
            for i, width in enumerate(self.hidden, 1):
                limits.MAX_WIDTH.check(width, f"hidden layer {i} of the MLP")
        else:
            limits.MAX_LAYERS.check(len(self.channels), "the conv model")
            for i, count in enumerate(self.channels, 1):
                limits.MAX_CHANNELS.check(count, f"conv layer {i}")
        limits.MAX_PARAMETERS.check(self.num_parameters(), "the model")

    def num_parameters(self) -> int:
        """Return how many parameters ``VAE(self)`` has, from the config alone (nothing is allocated)."""
        c, h, w = self.image_shape
        d = self.latent_dim
        if self.arch == "mlp":
            widths = (self.num_pixels, *self.hidden)
            layers = list(zip(widths[:-1], widths[1:]))  # encoder
            back = (d, *reversed(self.hidden), self.num_pixels)
            layers += list(zip(back[:-1], back[1:]))  # decoder
            feat = self.hidden[-1]
            count = sum(a * b + b for a, b in layers)
        else:
            steps = (c, *self.channels)
            convs = sum(a * b * KERNEL * KERNEL + b for a, b in zip(steps[:-1], steps[1:]))
            # Each ConvTranspose2d weight is (in, out, k, k) with out biases: the same counts, mirrored.
            deconvs = sum(b * a * KERNEL * KERNEL + a for a, b in zip(steps[:-1], steps[1:]))
            flat = self._conv_flat()
            fc = (flat * CONV_FC_WIDTH + CONV_FC_WIDTH) + (CONV_FC_WIDTH * flat + flat)
            count = convs + deconvs + fc + d * CONV_FC_WIDTH + CONV_FC_WIDTH
            feat = CONV_FC_WIDTH
        count += 2 * (feat * d + d)  # to_mu and to_logvar
        return count + (1 if self.likelihood == "gaussian" else 0)

    def activations_per_image(self) -> int:
        """Return how many floats one image's forward pass produces, every layer's output counted once."""
        c, h, w = self.image_shape
        d = self.latent_dim
        if self.arch == "mlp":
            # Each hidden layer: a linear output and its ReLU, in the encoder and again in the decoder.
            hidden = 4 * sum(self.hidden)
        else:
            maps = sum(n * (h >> i) * (w >> i) for i, n in enumerate(self.channels, 1))
            # Encoder: each conv output and its ReLU, then the fully connected layer and its ReLU.
            # Decoder: two fully connected layers and ReLUs (the second is the last map, unflattened),
            # then each transposed conv and its ReLU up to the logits (counted with the pixels).
            hidden = 4 * maps + 4 * CONV_FC_WIDTH
        # Input, logits and x_hat; mu, logvar, eps and z.
        return 3 * self.num_pixels + hidden + 4 * d

    def _conv_flat(self) -> int:
        _, h, w = self.image_shape
        factor = 2 ** len(self.channels)
        return self.channels[-1] * (h // factor) * (w // factor)

    @property
    def num_pixels(self) -> int:
        """Return C * H * W."""
        c, h, w = self.image_shape
        return c * h * w

    def to_dict(self) -> dict[str, Any]:
        """Return plain types only, safe for a ``weights_only`` checkpoint."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Rebuild from ``to_dict`` output, ignoring no field and accepting no unknown one."""
        return _from_dict(cls, data)


@dataclass(frozen=True)
class TrainConfig:
    """Describe one training run.

    ``kl_warmup_epochs`` ramps the KL weight linearly from 0 to ``beta`` over that many
    epochs (0 disables it). ``binarize`` resamples Bernoulli targets each batch
    (dynamic binarization, Salakhutdinov & Murray 2008) when the model is Bernoulli.
    """

    dataset: str = "mnist"
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    kl_warmup_epochs: int = 0
    seed: int = 0
    device: Device = "auto"
    binarize: bool = False
    max_train_images: int | None = None

    def __post_init__(self) -> None:
        if not self.dataset:
            raise ValueError("dataset must be named")
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if not self.lr > 0:
            raise ValueError(f"learning rate must be > 0, got {self.lr}")
        if self.kl_warmup_epochs < 0:
            raise ValueError(f"kl_warmup_epochs must be >= 0, got {self.kl_warmup_epochs}")
        if self.device not in DEVICES:
            raise ValueError(f"device must be one of {DEVICES}, got {self.device!r}")
        if self.max_train_images is not None and self.max_train_images < 1:
            raise ValueError(f"max_train_images must be >= 1 or None, got {self.max_train_images}")

    def to_dict(self) -> dict[str, Any]:
        """Return plain types only, safe for a ``weights_only`` checkpoint."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Rebuild from ``to_dict`` output."""
        return _from_dict(cls, data)


def _from_dict(cls: type, data: dict[str, Any]):
    if not isinstance(data, dict):
        raise ValueError(f"{cls.__name__} must be stored as a dict, got {type(data).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"{cls.__name__} has no field(s) {', '.join(unknown)}")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    return cls(**values)


# Named model configs for image sizes the defaults do not fit (``python -m vae_core train --preset``).
PRESETS: dict[str, ModelConfig] = {
    # 64x64 RGB faces (CelebA-style, aligned and cropped): four stride-2 convolutions down to a 4x4x256
    # map, a 128-D latent and a Gaussian likelihood with a learned scale: 3.6 M parameters.
    "faces64": ModelConfig(
        image_shape=(3, 64, 64),
        latent_dim=128,
        arch="conv",
        channels=(32, 64, 128, 256),
        likelihood="gaussian",
    ),
}
