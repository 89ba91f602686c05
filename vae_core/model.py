"""The VAE networks: an MLP after Kingma & Welling (2014) and a small conv net."""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn

from vae_core.config import CONV_FC_WIDTH, KERNEL, ModelConfig


class Posterior(NamedTuple):
    """Parameters of the diagonal Gaussian q(z|x); each (B, D)."""

    mu: torch.Tensor
    logvar: torch.Tensor


class VAEOutput(NamedTuple):
    """What one forward pass returns.

    ``x_hat`` is the decoded mean in [0, 1], (B, C, H, W); ``logits`` the decoder's raw
    output of the same shape (the loss uses it for numerical stability); ``mu``,
    ``logvar`` and ``z`` are (B, D).
    """

    x_hat: torch.Tensor
    mu: torch.Tensor
    logvar: torch.Tensor
    z: torch.Tensor
    logits: torch.Tensor


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, eps: torch.Tensor | None = None) -> torch.Tensor:
    """Return z = mu + exp(logvar / 2) * eps (Kingma & Welling 2014, eq. 10).

    Args:
        mu: posterior means (..., D).
        logvar: posterior log-variances, same shape.
        eps: standard-normal noise broadcastable to ``mu``; drawn fresh when None.
    """
    if eps is None:
        eps = torch.randn_like(mu)
    return mu + torch.exp(0.5 * logvar) * eps


class VAE(nn.Module):
    """A variational autoencoder with a Gaussian encoder and a Bernoulli or Gaussian decoder.

    For the Gaussian likelihood the decoder's variance is one learned scalar
    (``log_scale`` = log sigma), as in the sigma-VAE of Rybkin et al. (2021), so the
    reconstruction term stays a proper log-density in nats.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        if config.arch == "mlp":
            self.encoder, self.decoder, feat = _mlp(config)
        else:
            self.encoder, self.decoder, feat = _conv(config)
        self.to_mu = nn.Linear(feat, config.latent_dim)
        self.to_logvar = nn.Linear(feat, config.latent_dim)
        if config.likelihood == "gaussian":
            self.log_scale = nn.Parameter(torch.zeros(()))
        else:
            self.register_parameter("log_scale", None)

    def encode(self, x: torch.Tensor) -> Posterior:
        """Map images (B, C, H, W) in [0, 1] to the posterior's mu and logvar, each (B, D)."""
        h = self.encoder(x)
        return Posterior(self.to_mu(h), self.to_logvar(h))

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        """Map latents (B, D) to decoder logits (B, C, H, W)."""
        return self.decoder(z).view(-1, *self.config.image_shape)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Map latents (B, D) to decoded means (B, C, H, W) in [0, 1]."""
        return torch.sigmoid(self.decode_logits(z))

    def forward(self, x: torch.Tensor) -> VAEOutput:
        """Encode, sample z with the reparameterization trick, decode."""
        mu, logvar = self.encode(x)
        z = reparameterize(mu, logvar)
        logits = self.decode_logits(z)
        return VAEOutput(torch.sigmoid(logits), mu, logvar, z, logits)

    @property
    def device(self) -> torch.device:
        """Return the device the parameters live on."""
        return next(self.parameters()).device

    def num_parameters(self) -> int:
        """Return the number of parameters (loaded models have gradients off, so all are counted)."""
        return sum(p.numel() for p in self.parameters())


def _mlp(config: ModelConfig) -> tuple[nn.Module, nn.Module, int]:
    # Encoder h = ReLU(W1 x + b1) (K&W 2014, appendix C.2); the decoder mirrors it.
    widths = (config.num_pixels, *config.hidden)
    enc: list[nn.Module] = [nn.Flatten()]
    for a, b in zip(widths[:-1], widths[1:]):
        enc += [nn.Linear(a, b), nn.ReLU()]
    back = (config.latent_dim, *reversed(config.hidden))
    dec: list[nn.Module] = []
    for a, b in zip(back[:-1], back[1:]):
        dec += [nn.Linear(a, b), nn.ReLU()]
    dec.append(nn.Linear(back[-1], config.num_pixels))
    return nn.Sequential(*enc), nn.Sequential(*dec), widths[-1]


def _conv(config: ModelConfig) -> tuple[nn.Module, nn.Module, int]:
    c, h, w = config.image_shape
    factor = 2 ** len(config.channels)
    grid = (config.channels[-1], h // factor, w // factor)
    flat = math.prod(grid)
    enc: list[nn.Module] = []
    for a, b in zip((c, *config.channels[:-1]), config.channels):
        enc += [nn.Conv2d(a, b, kernel_size=KERNEL, stride=2, padding=1), nn.ReLU()]
    enc += [nn.Flatten(), nn.Linear(flat, CONV_FC_WIDTH), nn.ReLU()]
    dec: list[nn.Module] = [
        nn.Linear(config.latent_dim, CONV_FC_WIDTH),
        nn.ReLU(),
        nn.Linear(CONV_FC_WIDTH, flat),
        nn.ReLU(),
        nn.Unflatten(1, grid),
    ]
    back = (*reversed(config.channels), c)
    for i, (a, b) in enumerate(zip(back[:-1], back[1:])):
        dec.append(nn.ConvTranspose2d(a, b, kernel_size=KERNEL, stride=2, padding=1))
        if i < len(back) - 2:
            dec.append(nn.ReLU())
    return nn.Sequential(*enc), nn.Sequential(*dec), CONV_FC_WIDTH
