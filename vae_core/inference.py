"""The helpers that call the model: encode, decode, one seeded reparameterisation, one eval-mode convention.

Every helper here runs under ``torch.inference_mode()`` with the model in eval mode (``inference``
restores a model that was training) and returns CPU tensors or numpy arrays ready to display.
Pure latent-space maths (projections, interpolation paths, distances) lives in ``geometry``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Literal, NamedTuple

import numpy as np
import torch

from vae_core.datasets import to_float
from vae_core.geometry import interpolate, log_prior
from vae_core.model import VAE, Posterior, reparameterize

COV_JITTER = 1e-6


class ManifoldGrid(NamedTuple):
    """Images decoded on an n x n grid of latents, and the grid's values along each axis.

    ``images`` is (n * n, C, H, W) in [0, 1], row-major: row r, column c holds
    z[dims[0]] = values[c] and z[dims[1]] = values[n - 1 - r], so y decreases downwards.
    """

    images: torch.Tensor
    values: np.ndarray


def inference(fn):
    """Run ``fn(model, ...)`` under inference mode with the model in eval mode, then restore it.

    The one eval-mode convention of the library: every helper that calls a model for
    display or measurement (here and in ``metrics``) is wrapped in it. A model already in
    eval mode (a cached, shared one) is not touched at all.
    """

    @functools.wraps(fn)
    def wrapper(model: VAE, *args, **kwargs):
        was_training = model.training
        if was_training:
            model.eval()
        try:
            with torch.inference_mode():
                return fn(model, *args, **kwargs)
        finally:
            if was_training:
                model.train()

    return wrapper


def seeded_eps(shape: tuple[int, ...], *, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """Draw eps ~ N(0, I) of ``shape`` from a CPU generator, then move it to ``device``.

    Drawing on the CPU makes a seeded estimate the same on every device.
    """
    return torch.randn(shape, generator=generator).to(device)


def _check_batch_size(batch_size: int) -> None:
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")


@inference
def encode(model: VAE, x: torch.Tensor, *, batch_size: int = 1000) -> Posterior:
    """Encode images in batches and return the posterior parameters on the CPU.

    Args:
        model: the VAE; left in the train/eval mode it had.
        x: images (N, C, H, W), uint8 in [0, 255] or float in [0, 1].
        batch_size: images per forward pass.

    Returns:
        Posterior(mu, logvar), each float32 (N, D) on the CPU.
    """
    _check_batch_size(batch_size)
    if x.ndim != 4 or tuple(x.shape[1:]) != model.config.image_shape:
        raise ValueError(f"expected images (N, *{model.config.image_shape}), got shape {tuple(x.shape)}")
    device = model.device
    mus, logvars = [], []
    for start in range(0, len(x), batch_size):
        chunk = x[start : start + batch_size].to(device)
        chunk = to_float(chunk) if chunk.dtype == torch.uint8 else chunk.float()
        post = model.encode(chunk)
        mus.append(post.mu.float().cpu())
        logvars.append(post.logvar.float().cpu())
    if not mus:
        empty = torch.zeros(0, model.config.latent_dim)
        return Posterior(empty, empty.clone())
    return Posterior(torch.cat(mus), torch.cat(logvars))


def _as_latents(z: np.ndarray | torch.Tensor, latent_dim: int) -> torch.Tensor:
    z = torch.as_tensor(np.asarray(z) if not isinstance(z, torch.Tensor) else z).float()
    if z.ndim == 1:
        z = z.unsqueeze(0)
    if z.ndim != 2 or z.shape[1] != latent_dim:
        raise ValueError(f"expected latents (N, {latent_dim}), got shape {tuple(z.shape)}")
    return z


@inference
def decode_latents(model: VAE, z: np.ndarray | torch.Tensor, *, batch_size: int = 1000) -> torch.Tensor:
    """Decode latents in batches to images.

    Args:
        model: the VAE.
        z: latents (N, D) or a single latent (D,), numpy or torch.
        batch_size: latents per forward pass.

    Returns:
        Decoded means, float32 (N, C, H, W) in [0, 1] on the CPU.
    """
    _check_batch_size(batch_size)
    z = _as_latents(z, model.config.latent_dim)
    device = model.device
    out = [model.decode(z[s : s + batch_size].to(device)).float().cpu() for s in range(0, len(z), batch_size)]
    if not out:
        return torch.zeros(0, *model.config.image_shape)
    return torch.cat(out)


def traversal(
    model: VAE,
    z: np.ndarray | torch.Tensor,
    *,
    dims: Sequence[int],
    values: np.ndarray | Sequence[float],
) -> torch.Tensor:
    """Decode latent traversals: for each dimension, vary it over ``values`` with the others fixed.

    Args:
        model: the VAE.
        z: the latent to start from (D,).
        dims: the dimensions to vary, one row each.
        values: shared values (S,) for every row, or per-row values (len(dims), S).

    Returns:
        Images (len(dims), S, C, H, W) in [0, 1] on the CPU.
    """
    d = model.config.latent_dim
    base = _as_latents(z, d)
    if len(base) != 1:
        raise ValueError(f"z must be a single latent ({d},), got shape {tuple(base.shape)}")
    dims = [int(i) for i in dims]
    if not dims or any(not 0 <= i < d for i in dims):
        raise ValueError(f"dims must be a non-empty list of dimensions in [0, {d - 1}], got {dims}")
    grid = np.asarray(values, dtype=np.float32)
    if grid.ndim == 1:
        grid = np.broadcast_to(grid, (len(dims), len(grid)))
    if grid.ndim != 2 or grid.shape[0] != len(dims) or grid.shape[1] == 0:
        raise ValueError(f"values must be (S,) or ({len(dims)}, S), got shape {np.shape(values)}")
    steps = grid.shape[1]
    batch = base.repeat(len(dims) * steps, 1)
    for row, dim in enumerate(dims):
        batch[row * steps : (row + 1) * steps, dim] = torch.from_numpy(np.array(grid[row]))
    images = decode_latents(model, batch)
    return images.view(len(dims), steps, *images.shape[1:])


def manifold_grid(
    model: VAE,
    *,
    n: int = 15,
    dims: tuple[int, int] = (0, 1),
    base: np.ndarray | torch.Tensor | None = None,
    quantile_span: tuple[float, float] = (0.05, 0.95),
) -> ManifoldGrid:
    """Decode latents on a grid of standard-normal quantiles (Kingma & Welling 2014, fig. 4).

    Args:
        model: the VAE.
        n: grid points per axis, >= 2.
        dims: the latent dimensions along x (columns) and y (rows).
        base: values of the other dimensions (D,); zeros (the prior mean) by default.
        quantile_span: the lowest and highest quantile, within (0, 1).

    Returns:
        ManifoldGrid(images (n * n, C, H, W), values (n,) increasing); see ``ManifoldGrid``.
    """
    d = model.config.latent_dim
    if n < 2:
        raise ValueError(f"n must be >= 2, got {n}")
    lo, hi = quantile_span
    if not 0 < lo < hi < 1:
        raise ValueError(f"quantile_span must satisfy 0 < low < high < 1, got {quantile_span}")
    a, b = dims
    if not (0 <= a < d and 0 <= b < d) or a == b:
        raise ValueError(f"dims must be two different dimensions in [0, {d - 1}], got {tuple(dims)}")
    z = torch.zeros(d) if base is None else _as_latents(base, d)[0]
    values = torch.distributions.Normal(0.0, 1.0).icdf(torch.linspace(lo, hi, n))
    rows = values.flip(0)
    batch = z.repeat(n * n, 1)
    batch[:, a] = values.repeat(n)
    batch[:, b] = rows.repeat_interleave(n)
    return ManifoldGrid(decode_latents(model, batch), values.numpy())


def prior_samples(model: VAE, *, n: int, seed: int) -> torch.Tensor:
    """Decode ``n`` latents drawn from the prior N(0, I) with a fixed seed.

    Returns:
        Images (n, C, H, W) in [0, 1] on the CPU.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    gen = torch.Generator().manual_seed(seed)
    return decode_latents(model, torch.randn(n, model.config.latent_dim, generator=gen))


def sample_aggregate(model: VAE, mean: np.ndarray, cov: np.ndarray, *, n: int, seed: int) -> torch.Tensor:
    """Decode ``n`` latents drawn from N(mean, cov + 1e-6 I), e.g. the fit of ``aggregate_gaussian``.

    Returns:
        Images (n, C, H, W) in [0, 1] on the CPU.
    """
    d = model.config.latent_dim
    mean = np.asarray(mean, dtype=np.float64).reshape(-1)
    cov = np.asarray(cov, dtype=np.float64)
    if mean.shape != (d,) or cov.shape != (d, d):
        raise ValueError(f"expected mean ({d},) and cov ({d}, {d}), got {mean.shape} and {cov.shape}")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    chol = np.linalg.cholesky(cov + COV_JITTER * np.eye(d))
    eps = np.random.default_rng(seed).standard_normal((n, d))
    return decode_latents(model, mean + eps @ chol.T)


def _one_image(x: torch.Tensor, image_shape: tuple[int, int, int]) -> torch.Tensor:
    """Return ``x`` (C, H, W) or (1, C, H, W), uint8 or [0, 1], as float32 (1, C, H, W)."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"expected an image tensor, got {type(x).__name__}")
    if x.ndim == 3:
        x = x.unsqueeze(0)
    if x.ndim != 4 or len(x) != 1 or tuple(x.shape[1:]) != tuple(image_shape):
        raise ValueError(f"expected one image of shape {tuple(image_shape)}, got shape {tuple(x.shape)}")
    return to_float(x.cpu()) if x.dtype == torch.uint8 else x.detach().cpu().float()


class EncodedImage(NamedTuple):
    """Where the encoder puts one image, and what the decoder makes of it.

    ``mu`` and ``std`` = exp(logvar / 2) are float32 (D,); ``x_hat`` is the decoded mean
    (1, C, H, W) in [0, 1]; ``log_prior`` is log N(mu; 0, I) in nats.
    """

    mu: np.ndarray
    std: np.ndarray
    x_hat: torch.Tensor
    log_prior: float


def encode_image(model: VAE, x: torch.Tensor) -> EncodedImage:
    """Encode one image to its posterior q(z|x) = N(mu, diag(std^2)) and decode mu.

    Args:
        model: the VAE.
        x: one image (C, H, W) or (1, C, H, W), uint8 or float in [0, 1].

    Returns:
        EncodedImage(mu (D,), std (D,), x_hat (1, C, H, W), log_prior).
    """
    post = encode(model, _one_image(x, model.config.image_shape))
    mu = post.mu[0]
    return EncodedImage(
        mu.numpy(), torch.exp(0.5 * post.logvar[0]).numpy(), decode_latents(model, mu), log_prior(mu)
    )


class InterpolationPath(NamedTuple):
    """A decoded path between two images' posterior means.

    ``t`` (steps,) runs from 0 to 1; ``z`` is float32 (steps, D) with z[0], z[-1] the two
    means; ``images`` (steps, C, H, W) in [0, 1] decode ``z``; ``log_prior`` (steps,) is
    log N(z; 0, I) and ``norms`` (steps,) is |z|; ``distance`` is |z1 - z0|.
    """

    t: np.ndarray
    z: torch.Tensor
    images: torch.Tensor
    log_prior: np.ndarray
    norms: np.ndarray
    distance: float


def interpolation_path(
    model: VAE,
    x0: torch.Tensor,
    x1: torch.Tensor,
    *,
    steps: int,
    method: Literal["linear", "slerp"] = "linear",
) -> InterpolationPath:
    """Encode two images to their means, interpolate between them (``interpolate``) and decode.

    Args:
        model: the VAE.
        x0: the start image (C, H, W) or (1, C, H, W), uint8 or float in [0, 1].
        x1: the end image, likewise.
        steps: latents on the path, endpoints included, >= 2.
        method: "linear" or "slerp".

    Returns:
        InterpolationPath(t, z (steps, D), images (steps, C, H, W), log_prior, norms, distance).
    """
    shape = model.config.image_shape
    mu = encode(model, torch.cat([_one_image(x0, shape), _one_image(x1, shape)])).mu
    z = interpolate(mu[0], mu[1], steps=steps, method=method)
    return InterpolationPath(
        np.linspace(0.0, 1.0, steps),
        z,
        decode_latents(model, z),
        log_prior(z),
        z.double().norm(dim=1).numpy(),
        float((mu[1] - mu[0]).double().norm()),
    )


def decode_one(model: VAE, z: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Decode a single latent on the calling thread alone, for interactive use.

    One image is too little work to split: on a busy CPU, waiting for a second intra-op
    thread to be scheduled costs more than the decode itself (one conv decode measured
    p90 7 ms on one thread, 75 ms on two, on the shared 2-core machine). PyTorch keeps the
    thread count per thread once it has run an op, so other threads (a training run) keep
    theirs; the caller's count is restored afterwards.

    Args:
        model: the VAE.
        z: one latent (D,) or (1, D).

    Returns:
        The decoded mean, float32 (C, H, W) in [0, 1] on the CPU.
    """
    if len(_as_latents(z, model.config.latent_dim)) != 1:
        raise ValueError(f"decode_one takes a single latent, got shape {tuple(np.shape(z))}")
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return decode_latents(model, z)[0]
    finally:
        torch.set_num_threads(previous)


class EpsDraws(NamedTuple):
    """Codes drawn from one image's posterior with the reparameterisation trick, and their images.

    ``eps`` and ``z`` are float32 (n, D) with z = mu + exp(logvar / 2) * eps; ``images``
    (n, C, H, W) in [0, 1] decode ``z``.
    """

    eps: np.ndarray
    z: np.ndarray
    images: torch.Tensor


def reparameterised_draws(
    model: VAE, mu: np.ndarray | torch.Tensor, logvar: np.ndarray | torch.Tensor, *, n: int, seed: int
) -> EpsDraws:
    """Draw ``n`` codes z = mu + sigma * eps from q(z|x) = N(mu, diag(sigma^2)) and decode them.

    The noise eps ~ N(0, I) comes from ``seeded_eps`` and z from ``vae_core.model.reparameterize``
    (Kingma & Welling 2014, sec. 2.4, eq. 10), the very step training takes, so one seed always
    gives the same draws.

    Args:
        model: the VAE.
        mu: the posterior mean of one image (D,).
        logvar: its log-variance (D,).
        n: how many draws, >= 1.
        seed: seed of the noise.

    Returns:
        EpsDraws(eps (n, D), z (n, D), images (n, C, H, W)).
    """
    d = model.config.latent_dim
    mu_t = _as_latents(mu, d)
    logvar_t = _as_latents(logvar, d)
    if len(mu_t) != 1 or len(logvar_t) != 1:
        raise ValueError(
            f"expected one posterior (D,), got mu {tuple(np.shape(mu))} and logvar {tuple(np.shape(logvar))}"
        )
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    eps = seeded_eps((n, d), generator=torch.Generator().manual_seed(seed), device=torch.device("cpu"))
    z = reparameterize(mu_t, logvar_t, eps)
    return EpsDraws(eps.numpy(), z.numpy(), decode_latents(model, z))


class ManifoldPatch(NamedTuple):
    """Images decoded on an n x n grid of latents centred on one z, and the grid's values per axis.

    ``images`` is (n * n, C, H, W) in [0, 1], row-major: row r, column c holds
    z[dims[0]] = xs[c] and z[dims[1]] = ys[n - 1 - r], so y decreases downwards as on a map.
    """

    images: torch.Tensor
    xs: np.ndarray
    ys: np.ndarray


def manifold_around(
    model: VAE,
    z: np.ndarray | torch.Tensor,
    *,
    half_width: float,
    n: int = 9,
    dims: tuple[int, int] = (0, 1),
) -> ManifoldPatch:
    """Decode the latents on a square grid centred on ``z`` in two dimensions, the others kept at ``z``.

    The local version of ``manifold_grid``: what the decoder draws around one point of the latent plane.

    Args:
        model: the VAE.
        z: the centre (D,).
        half_width: the grid reaches z[dim] +- half_width along each of ``dims``, > 0.
        n: grid points per axis, >= 2 (odd puts z itself in the middle cell).
        dims: the latent dimensions along x (columns) and y (rows).

    Returns:
        ManifoldPatch(images (n * n, C, H, W), xs (n,), ys (n,) increasing).
    """
    d = model.config.latent_dim
    centre = _as_latents(z, d)
    if len(centre) != 1:
        raise ValueError(f"expected one latent (D,), got shape {tuple(np.shape(z))}")
    if n < 2:
        raise ValueError(f"n must be >= 2, got {n}")
    if not half_width > 0 or not np.isfinite(half_width):
        raise ValueError(f"half_width must be a positive number, got {half_width}")
    a, b = dims
    if not (0 <= a < d and 0 <= b < d) or a == b:
        raise ValueError(f"dims must be two different dimensions in [0, {d - 1}], got {tuple(dims)}")
    offsets = torch.linspace(-half_width, half_width, n)
    xs, ys = centre[0, a] + offsets, centre[0, b] + offsets
    batch = centre.repeat(n * n, 1)
    batch[:, a] = xs.repeat(n)
    batch[:, b] = ys.flip(0).repeat_interleave(n)
    return ManifoldPatch(decode_latents(model, batch), xs.numpy(), ys.numpy())
