"""Dataset-level metrics: test ELBO, importance-weighted NLL, active units, KL per dimension."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import torch

from vae_core.datasets import to_float
from vae_core.health import active_units_of
from vae_core.inference import encode, inference, seeded_eps
from vae_core.losses import kl_divergence, log_normal, reconstruction_nll
from vae_core.model import VAE, reparameterize

# The one per-image -ELBO estimator of the app, the CLI and the saved metrics: closed-form KL plus
# the mean of -log p(x|z) over ELBO_SAMPLES draws z = mu + sigma * eps_s, with the same seeded
# eps_1..eps_S for every image (common random numbers). An image's score then depends on the
# image alone, not on its batch or on which page asks.
ELBO_SAMPLES = 4
ELBO_SEED = 0
ELBO_ESTIMATOR = f"closed-form KL + {ELBO_SAMPLES}-sample Monte Carlo reconstruction (seed {ELBO_SEED})"
# Decoded images per forward pass in the IWAE estimate: bounds memory, keeps batches large.
IWAE_DECODES_PER_PASS = 16384


class ELBOResult(NamedTuple):
    """Negative ELBO and its parts, means over a dataset in nats per image."""

    total: float
    recon: float
    kl: float


def _batches(x: torch.Tensor, batch_size: int, device: torch.device):
    for start in range(0, len(x), batch_size):
        chunk = x[start : start + batch_size].to(device)
        yield to_float(chunk) if chunk.dtype == torch.uint8 else chunk.float()


class ELBOParts(NamedTuple):
    """Per-image negative ELBO and its parts, each float32 (N,) in nats."""

    total: np.ndarray
    recon: np.ndarray
    kl: np.ndarray


@inference
def per_image_elbo(
    model: VAE,
    x: torch.Tensor,
    *,
    samples: int = ELBO_SAMPLES,
    seed: int = ELBO_SEED,
    batch_size: int = 500,
) -> ELBOParts:
    """Return each image's negative ELBO (beta 1) and its parts with the app's one estimator.

    -ELBO(x) = E_q[-log p(x|z)] + KL(q(z|x) || p(z)) (Kingma & Welling 2014, eq. 3): the KL in
    closed form, the expectation as a mean over ``samples`` draws z_s = mu + sigma * eps_s with
    eps_1..eps_S drawn once from ``seed`` and shared by every image, so a score depends on the
    image alone. Lower means more typical of the training data.

    Args:
        model: the VAE.
        x: images (N, C, H, W), uint8 or float in [0, 1].
        samples: Monte Carlo draws of z per image, >= 1.
        seed: seeds eps.
        batch_size: images per forward pass.

    Returns:
        ELBOParts(total, recon, kl), each float32 (N,).
    """
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    device = model.device
    eps = seeded_eps(
        (samples, 1, model.config.latent_dim), generator=torch.Generator().manual_seed(seed), device=device
    )
    recons, kls = [], []
    for xb in _batches(x, batch_size, device):
        mu, logvar = model.encode(xb)
        z = reparameterize(mu, logvar, eps)  # (S, B, D)
        logits = model.decode_logits(z.reshape(-1, z.shape[-1]))
        target = xb.unsqueeze(0).expand(samples, *xb.shape).reshape(-1, *xb.shape[1:])
        nll = reconstruction_nll(
            target, logits, likelihood=model.config.likelihood, log_scale=model.log_scale
        )
        recons.append(nll.view(samples, len(xb)).mean(dim=0).float().cpu())
        kls.append(kl_divergence(mu, logvar).float().cpu())
    if not recons:
        empty = np.zeros(0, np.float32)
        return ELBOParts(empty, empty, empty)
    recon, kl = torch.cat(recons).numpy(), torch.cat(kls).numpy()
    return ELBOParts(recon + kl, recon, kl)


def evaluate_elbo(
    model: VAE, x: torch.Tensor, *, samples: int = ELBO_SAMPLES, seed: int = ELBO_SEED, batch_size: int = 500
) -> ELBOResult:
    """Return the mean negative ELBO (beta 1), reconstruction and KL over images ``x``: ``per_image_elbo`` averaged."""
    parts = per_image_elbo(model, x, samples=samples, seed=seed, batch_size=batch_size)
    return elbo_means(parts.recon, parts.kl)


def elbo_means(recon: np.ndarray, kl: np.ndarray) -> ELBOResult:
    """Return the mean -ELBO, reconstruction and KL of per-image parts, e.g. an atlas's ``recon`` and ``kl``.

    Args:
        recon: -log p(x|z) per image (N,), in nats, from ``per_image_elbo``.
        kl: KL(q(z|x) || p(z)) per image (N,), in nats.

    Returns:
        ELBOResult(total, recon, kl), means in nats per image; zeros for no images.
    """
    recon = np.asarray(recon, dtype=np.float32).reshape(-1)
    kl = np.asarray(kl, dtype=np.float32).reshape(-1)
    if recon.shape != kl.shape:
        raise ValueError(f"got {len(recon)} reconstruction terms but {len(kl)} KL terms")
    if len(recon) == 0:
        return ELBOResult(0.0, 0.0, 0.0)
    return ELBOResult(*(float(np.mean(a, dtype=np.float64)) for a in (recon + kl, recon, kl)))


@inference
def iwae_nll(
    model: VAE,
    x: torch.Tensor,
    *,
    k: int = 1000,
    seed: int = 0,
    batch_size: int | None = None,
    on_progress: Callable[[float], None] | None = None,
) -> float:
    """Return the importance-weighted estimate of -log p(x), a mean over images in nats.

    -log p(x) ~= -log (1/K) sum_k p(x|z_k) p(z_k) / q(z_k|x), z_k ~ q(z|x)
    (Burda et al. 2015, eq. 8). It equals the ELBO in expectation for K = 1 and
    tightens as K grows. Images are processed in batches and the K samples in chunks,
    with a running log-sum-exp, so K = 1000 over 10k images fits in memory.

    Args:
        model: the trained VAE.
        x: images, uint8 or float in [0, 1], (N, C, H, W).
        k: importance samples per image, >= 1.
        seed: seeds the samples.
        batch_size: images per batch; by default sized so one pass decodes about
            ``IWAE_DECODES_PER_PASS`` images.
        on_progress: called with the fraction of images done.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    gen = torch.Generator().manual_seed(seed)
    if batch_size is None:
        batch_size = max(1, min(len(x), IWAE_DECODES_PER_PASS // min(k, IWAE_DECODES_PER_PASS)))
    chunk = max(1, min(k, IWAE_DECODES_PER_PASS // batch_size))
    total, done = 0.0, 0
    for xb in _batches(x, batch_size, model.device):
        mu, logvar = model.encode(xb)
        b, d = mu.shape
        running = torch.full((b,), -math.inf, dtype=torch.float64, device=mu.device)
        for start in range(0, k, chunk):
            s = min(chunk, k - start)
            eps = seeded_eps((s, b, d), generator=gen, device=mu.device)
            z = reparameterize(mu, logvar, eps)  # (s, b, d)
            logits = model.decode_logits(z.reshape(s * b, d))
            target = xb.unsqueeze(0).expand(s, *xb.shape).reshape(s * b, *xb.shape[1:])
            log_px_z = -reconstruction_nll(
                target, logits, likelihood=model.config.likelihood, log_scale=model.log_scale
            ).view(s, b)
            log_w = log_px_z + log_normal(z) - log_normal(z, mu, logvar)
            running = torch.logaddexp(running, torch.logsumexp(log_w.double(), dim=0))
        total += -(running - math.log(k)).sum().item()
        done += b
        if on_progress is not None:
            on_progress(done / len(x))
    return total / max(1, done)


def percentile_of(value: float, reference: np.ndarray) -> float:
    """Return the percentage of ``reference`` values strictly below ``value``, in [0, 100]."""
    reference = np.asarray(reference)
    if reference.size == 0:
        raise ValueError("percentile_of needs at least one reference value")
    return float((reference < value).mean() * 100.0)


class ELBOBreakdown(NamedTuple):
    """One image's trip through the VAE, with every intermediate a display can show.

    ``mu``, ``logvar``, ``eps``, ``z`` are (D,); ``x_hat`` is (C, H, W) in [0, 1];
    ``recon`` is -log p(x|z) for this z and ``kl`` the closed-form KL, both in nats;
    ``elbo`` = -recon - kl (a lower bound on log p(x)).
    """

    mu: np.ndarray
    logvar: np.ndarray
    eps: np.ndarray
    z: np.ndarray
    x_hat: np.ndarray
    recon: float
    kl: float
    elbo: float


@inference
def elbo_breakdown(model: VAE, x: torch.Tensor, *, seed: int = 0) -> ELBOBreakdown:
    """Encode one image (C, H, W), draw z = mu + sigma * eps with a seeded eps, decode, and score it.

    This is one draw of eps, to show the reparameterisation step by step; the image's
    -ELBO as every page reports it is ``per_image_elbo``'s.
    """
    xb = next(_batches(x.unsqueeze(0), 1, model.device))
    mu, logvar = model.encode(xb)
    eps = seeded_eps(tuple(mu.shape), generator=torch.Generator().manual_seed(seed), device=mu.device)
    z = reparameterize(mu, logvar, eps)
    logits = model.decode_logits(z)
    recon = reconstruction_nll(
        xb, logits, likelihood=model.config.likelihood, log_scale=model.log_scale
    ).item()
    kl = kl_divergence(mu, logvar).item()

    def flat(t: torch.Tensor) -> np.ndarray:
        return t[0].float().cpu().numpy()

    return ELBOBreakdown(
        flat(mu), flat(logvar), flat(eps), flat(z), flat(torch.sigmoid(logits)), recon, kl, -recon - kl
    )


class Reference(NamedTuple):
    """A published test NLL to draw beside this model's figures, with the setting it was measured in."""

    label: str
    nats: float
    setting: str


# Burda, Grosse & Salakhutdinov 2015, "Importance Weighted Autoencoders", table 1: one stochastic
# layer, test -log p(x) estimated with k = 5000 importance samples on dynamically binarized MNIST.
_BURDA_SETTING = "dynamically binarized full MNIST (60k train), NLL with k = 5000"
LITERATURE_NLL = (
    Reference("VAE (Burda et al. 2015)", 86.76, _BURDA_SETTING),
    Reference("IWAE (Burda et al. 2015)", 84.78, _BURDA_SETTING),
)


class IWAECost(NamedTuple):
    """What an importance-weighted NLL run costs: decoder passes (images x K) and estimated seconds."""

    decodes: int
    seconds: float


def decode_seconds(model: VAE, x: torch.Tensor, *, decodes: int = 2048, seed: int = 0) -> float:
    """Time ``iwae_nll`` on a small calibration batch and return seconds per decoded sample.

    Args:
        model: the VAE.
        x: a few images (N, C, H, W), uint8 or [0, 1]; up to 16 are used.
        decodes: decoder passes to time (images x K), >= 1.
        seed: seeds the samples.

    Returns:
        Wall-clock seconds per decode, > 0.
    """
    if decodes < 1:
        raise ValueError(f"decodes must be >= 1, got {decodes}")
    if len(x) == 0:
        raise ValueError("timing the NLL needs at least one image")
    images = x[:16]
    k = max(1, decodes // len(images))
    iwae_nll(model, images[:1], k=1, seed=seed)  # warm up lazy initialisation outside the timing
    start = time.perf_counter()
    iwae_nll(model, images, k=k, seed=seed)
    return max(time.perf_counter() - start, 1e-9) / (k * len(images))


def iwae_cost(*, n: int, k: int, seconds_per_decode: float) -> IWAECost:
    """Return the decoder passes (n images x k samples) and the seconds they should take."""
    if n < 0 or k < 1:
        raise ValueError(f"need n >= 0 images and k >= 1 samples, got n={n}, k={k}")
    if seconds_per_decode < 0:
        raise ValueError(f"seconds_per_decode must be >= 0, got {seconds_per_decode}")
    return IWAECost(n * k, n * k * seconds_per_decode)


class TypicalityRanking(NamedTuple):
    """Indices of the most typical (lowest -ELBO first) and least typical (highest first) images."""

    most_typical: np.ndarray
    least_typical: np.ndarray


def rank_typicality(scores: np.ndarray, *, k: int) -> TypicalityRanking:
    """Rank images by their negative ELBO (``per_image_elbo``): low is typical, high is unusual.

    Args:
        scores: -ELBO per image, (N,), in nats.
        k: how many to return at each end, clipped to N.

    Returns:
        TypicalityRanking(most_typical int64 (k,), least_typical int64 (k,)); ties keep index order.
    """
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if scores.size == 0:
        raise ValueError("ranking needs at least one score")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if not np.isfinite(scores).all():
        raise ValueError("scores contain NaN or infinite values; the model may have diverged")
    order = np.argsort(scores, kind="stable")
    k = min(k, scores.size)
    return TypicalityRanking(order[:k].astype(np.int64), order[::-1][:k].astype(np.int64))


class ModelSummary(NamedTuple):
    """Figures that compare two models on the same images: -ELBO parts, active units, size."""

    elbo: ELBOResult
    active: int
    latent_dim: int
    parameters: int


def model_summary_of(
    *, mu: np.ndarray | torch.Tensor, recon: np.ndarray, kl: np.ndarray, parameters: int
) -> ModelSummary:
    """Return the comparison figures from per-image results already computed (an atlas's).

    Args:
        mu: posterior means (N, D).
        recon, kl: the parts of each image's -ELBO (N,), from ``per_image_elbo``.
        parameters: the model's parameter count.
    """
    active = active_units_of(mu)
    return ModelSummary(elbo_means(recon, kl), active.count, len(active.variances), int(parameters))


def model_summary(model: VAE, x: torch.Tensor, *, seed: int = ELBO_SEED) -> ModelSummary:
    """Return the -ELBO parts, active units, latent size and parameter count of ``model`` on ``x``."""
    parts = per_image_elbo(model, x, seed=seed)
    mu = encode(model, x).mu
    return model_summary_of(mu=mu, recon=parts.recon, kl=parts.kl, parameters=model.num_parameters())


# Percentile thresholds of an image's -ELBO among test images for ``anomaly_verdict``.
UNUSUAL_PERCENTILE = 80.0
VERY_UNUSUAL_PERCENTILE = 95.0


class Verdict(NamedTuple):
    """A plain-language reading of a percentile: ``level`` is "typical", "unusual" or "very unusual"."""

    level: str
    message: str


def anomaly_verdict(percentile: float) -> Verdict:
    """Say how unusual an image is from the percentile of its -ELBO among test images (``percentile_of``).

    Above ``VERY_UNUSUAL_PERCENTILE`` it is "very unusual", above ``UNUSUAL_PERCENTILE``
    "unusual", else "typical". A high -ELBO means the model explains the image badly, so a
    high percentile flags an image unlike the training data (an anomaly score).

    Args:
        percentile: the percentage of test images with a lower -ELBO, in [0, 100].

    Returns:
        Verdict(level, message).
    """
    if not 0.0 <= percentile <= 100.0:
        raise ValueError(f"percentile must be in [0, 100], got {percentile}")
    share = "every test image" if percentile >= 100.0 else f"{percentile:.0f}% of the test images"
    if percentile > VERY_UNUSUAL_PERCENTILE:
        return Verdict(
            "very unusual",
            f"Very unusual: the model explains this image worse than {share}. It probably looks unlike "
            "anything the model was trained on (or the preprocessing did not match).",
        )
    if percentile > UNUSUAL_PERCENTILE:
        return Verdict("unusual", f"Unusual: the model explains this image worse than {share}.")
    return Verdict(
        "typical",
        f"Typical: the model explains this image about as well as its test images (worse than {share}).",
    )
