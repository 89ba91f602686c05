"""Latent health: KL per dimension, active units and posterior-collapse warnings, from codes or a model.

The ``*_of`` functions work on codes already computed (an atlas's mu and logvar); the others
encode images first and call them, so each figure has one formula.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from vae_core.geometry import dims_by_kl
from vae_core.inference import encode
from vae_core.losses import kl_per_dim
from vae_core.model import VAE

ACTIVE_THRESHOLD = 0.01


class ActiveUnits(NamedTuple):
    """Active units (Burda et al. 2015, sec. 5.2): ``count`` dims with Cov_x(E_q[z_u]) > threshold."""

    count: int
    variances: np.ndarray
    threshold: float


class LatentHealth(NamedTuple):
    """KL per dimension and active units over a dataset, with plain-language warnings."""

    kl_per_dim: np.ndarray
    active: ActiveUnits
    warnings: tuple[str, ...]


def _latents(name: str, values: np.ndarray | torch.Tensor) -> torch.Tensor:
    t = torch.as_tensor(values).detach().cpu().float()
    if t.ndim != 2 or t.shape[1] == 0:
        raise ValueError(f"{name} must be (N, D) with D >= 1, got shape {tuple(t.shape)}")
    return t


def kl_per_dimension_of(mu: np.ndarray | torch.Tensor, logvar: np.ndarray | torch.Tensor) -> np.ndarray:
    """Return the KL of each latent dimension averaged over images, float32 (D,), in nats.

    The closed form of ``losses.kl_per_dim`` on posteriors already computed (an atlas's
    ``mu`` and ``logvar``, (N, D)); it sums to the mean KL of those images. No images give zeros.
    """
    mu, logvar = _latents("mu", mu), _latents("logvar", logvar)
    if mu.shape != logvar.shape:
        raise ValueError(f"mu {tuple(mu.shape)} and logvar {tuple(logvar.shape)} must have the same shape")
    if len(mu) == 0:
        return np.zeros(mu.shape[1], np.float32)
    return kl_per_dim(mu, logvar).mean(dim=0).numpy()


def active_units_of(mu: np.ndarray | torch.Tensor, *, threshold: float = ACTIVE_THRESHOLD) -> ActiveUnits:
    """Count dimensions u whose posterior mean varies over the data: Cov_x(E_q[z_u]) > threshold.

    Burda et al. 2015, sec. 5.2, on posterior means already computed, (N, D); the variance is
    the population variance over the N images (zero for fewer than two).
    """
    mu = _latents("mu", mu)
    variances = mu.var(dim=0, unbiased=False).numpy() if len(mu) > 1 else np.zeros(mu.shape[1], np.float32)
    return ActiveUnits(int((variances > threshold).sum()), variances, threshold)


def latent_health_of(
    mu: np.ndarray | torch.Tensor, logvar: np.ndarray | torch.Tensor, *, threshold: float = ACTIVE_THRESHOLD
) -> LatentHealth:
    """Return KL per dimension, active units and collapse warnings of posteriors (N, D) already computed."""
    kl = kl_per_dimension_of(mu, logvar)
    active = active_units_of(mu, threshold=threshold)
    return LatentHealth(kl, active, collapse_warnings(kl, active))


def kl_per_dimension(model: VAE, x: torch.Tensor, *, batch_size: int = 1000) -> np.ndarray:
    """Return the KL of each latent dimension averaged over images ``x``, (D,), in nats: see ``kl_per_dimension_of``."""
    mu, logvar = encode(model, x, batch_size=batch_size)
    return kl_per_dimension_of(mu, logvar)


def active_units(
    model: VAE, x: torch.Tensor, *, threshold: float = ACTIVE_THRESHOLD, batch_size: int = 1000
) -> ActiveUnits:
    """Count the active units of ``model`` on images ``x``: see ``active_units_of``."""
    return active_units_of(encode(model, x, batch_size=batch_size).mu, threshold=threshold)


def latent_health(model: VAE, x: torch.Tensor, *, threshold: float = ACTIVE_THRESHOLD) -> LatentHealth:
    """Return KL per dimension, active units and warnings about posterior collapse of ``model`` on ``x``."""
    mu, logvar = encode(model, x)
    return latent_health_of(mu, logvar, threshold=threshold)


def collapse_warnings(kl: np.ndarray, active: ActiveUnits) -> tuple[str, ...]:
    """Explain, in plain words, signs of posterior collapse and what to try."""
    d = len(kl)
    total = float(kl.sum())
    warnings = []
    if total < 0.5:
        warnings.append(
            f"The posterior has collapsed: the total KL is {total:.2f} nats, so the encoder passes almost no "
            "information to the decoder and every image decodes to about the same output. Try a KL warm-up "
            "(e.g. 10 epochs), a lower beta, or a weaker decoder."
        )
    elif active.count == 0 or active.count < max(1, d // 4):
        warnings.append(
            f"Only {active.count} of {d} latent dimensions are active (their mean varies over the data). The "
            "rest copy the prior and carry no information. That is normal for a large latent; if the model "
            "reconstructs poorly, try a KL warm-up or a lower beta, or use a smaller latent."
        )
    inactive = [u for u in range(d) if active.variances[u] <= active.threshold]
    if inactive and active.count >= max(1, d // 4):
        listed = ", ".join(f"z{u}" for u in inactive[:12]) + (" …" if len(inactive) > 12 else "")
        warnings.append(f"{len(inactive)} inactive dimension(s): {listed}. Moving them changes little.")
    return tuple(warnings)


class DimensionRanking(NamedTuple):
    """Latent dimensions ranked by KL: ``order`` int64 (D,) holds dimension indices, largest KL first.

    ``kl`` float32 (D,) and ``active`` bool (D,) are indexed by dimension, not by rank.
    """

    order: np.ndarray
    kl: np.ndarray
    active: np.ndarray


def rank_dimensions_of(
    mu: np.ndarray | torch.Tensor, logvar: np.ndarray | torch.Tensor, *, threshold: float = ACTIVE_THRESHOLD
) -> DimensionRanking:
    """Rank latent dimensions by their mean KL over images, most informative first, and mark the active ones.

    Ties keep the lower index first. The ranking is a display order only: a latent z keeps its indices.

    Args:
        mu: posterior means (N, D), e.g. an atlas's.
        logvar: their log-variances (N, D).
        threshold: the active-unit threshold on Cov_x(E_q[z_u]) (``active_units_of``).

    Returns:
        DimensionRanking(order (D,), kl (D,) in nats, active (D,)).
    """
    kl = kl_per_dimension_of(mu, logvar)
    active = active_units_of(mu, threshold=threshold)
    return DimensionRanking(dims_by_kl(kl), kl, active.variances > threshold)
