"""Analyse a trained VAE's latent space: encode a dataset, project it, interpolate, traverse, sample."""

from __future__ import annotations

import functools
import inspect
import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from typing import TYPE_CHECKING, Literal, NamedTuple

import numpy as np
import torch

from vae_core.data import to_float
from vae_core.model import VAE, Posterior

if TYPE_CHECKING:
    from vae_core.training import TimelineFrame

ProjectionMethod = Literal["direct", "pca", "tsne"]
ProgressCallback = Callable[[float, str], None]

# t-SNE settings, from benchmarks/latent_map.py on 10k MNIST latents (D=16), 2 shared cores:
# 300 steps (250 of them scikit-learn's fixed early-exaggeration phase) take ~14 s and keep 10-NN
# label accuracy at 0.947; 500 steps take ~25 s for 0.952 and finer local structure.
# A Barnes-Hut angle of 1.0 instead of 0.8 cuts 300 steps from 15.1 to 12.7 s with the same 10-NN
# label accuracy (0.947) and the same share of latent 10-NN kept in 2-D (0.250).
TSNE_MAX_ITER = 300
TSNE_MIN_ITER = 250
TSNE_ANGLE = 1.0
TSNE_MIN_POINTS = 5
STD_FLOOR = 1e-3
COV_JITTER = 1e-6
PROJECTION_CACHE_SIZE = 32


class Projection(NamedTuple):
    """Two-dimensional coordinates of latents, ready to plot.

    ``coords`` is float32 (N, 2); ``explained`` holds PCA's explained variance ratios of
    the two axes and is None for the other methods.
    """

    coords: np.ndarray
    method: str
    axis_titles: tuple[str, str]
    explained: tuple[float, float] | None


class ManifoldGrid(NamedTuple):
    """Images decoded on an n x n grid of latents, and the grid's values along each axis.

    ``images`` is (n * n, C, H, W) in [0, 1], row-major: row r, column c holds
    z[dims[0]] = values[c] and z[dims[1]] = values[n - 1 - r], so y decreases downwards.
    """

    images: torch.Tensor
    values: np.ndarray


def _inference(fn):
    """Run ``fn(model, ...)`` under inference mode with the model in eval mode, then restore it.

    A model already in eval mode (a cached, shared one) is not touched at all.
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


def _check_batch_size(batch_size: int) -> None:
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")


@_inference
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


@_inference
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


def _check_latents(latents: np.ndarray) -> np.ndarray:
    latents = np.asarray(latents, dtype=np.float64)
    if latents.ndim != 2 or len(latents) == 0:
        raise ValueError(f"latents must be a non-empty (N, D) array, got shape {latents.shape}")
    if not np.isfinite(latents).all():
        raise ValueError("latents contain NaN or infinite values; the model may have diverged")
    return latents


def _tsne(latents: np.ndarray, *, perplexity: float, seed: int, max_iter: int):
    from sklearn.manifold import TSNE

    # scikit-learn 1.5 renamed n_iter to max_iter (and removed n_iter in 1.7).
    iter_name = "max_iter" if "max_iter" in inspect.signature(TSNE).parameters else "n_iter"
    return TSNE(
        n_components=2,
        perplexity=perplexity,
        init="pca",
        learning_rate="auto",
        method="barnes_hut",
        angle=TSNE_ANGLE,
        random_state=seed,
        n_jobs=-1,
        **{iter_name: max_iter},
    )


def project(
    latents: np.ndarray,
    *,
    method: ProjectionMethod,
    perplexity: float = 30.0,
    seed: int = 0,
    dims: tuple[int, int] = (0, 1),
    on_progress: ProgressCallback | None = None,
    tsne_max_iter: int = TSNE_MAX_ITER,
) -> Projection:
    """Project latents to two dimensions for a scatter plot.

    ``direct`` takes two latent dimensions as they are; ``pca`` the first two principal
    components; ``tsne`` runs Barnes-Hut t-SNE (van der Maaten 2014) initialised with PCA
    and the learning rate N / 12 (Belkina et al. 2019), with the perplexity clamped to
    (N - 1) / 3 so small sets work.

    Args:
        latents: (N, D) latents, usually the posterior means.
        method: "direct", "pca" or "tsne".
        perplexity: t-SNE's effective number of neighbours.
        seed: t-SNE's random state.
        dims: the two latent dimensions ``direct`` shows.
        tsne_max_iter: t-SNE's gradient steps, >= 250 (its early-exaggeration phase).
        on_progress: called with (fraction in [0, 1], message) at the start, between
            phases and at the end.

    Returns:
        Projection(coords float32 (N, 2), method, axis_titles, explained).
    """
    latents = _check_latents(latents)
    n, d = latents.shape
    report = on_progress or (lambda fraction, message: None)
    if method == "direct":
        a, b = dims
        if not (0 <= a < d and 0 <= b < d) or a == b:
            raise ValueError(f"dims must be two different dimensions in [0, {d - 1}], got {tuple(dims)}")
        report(0.0, "taking two latent dimensions")
        coords = latents[:, [a, b]]
        report(1.0, "done")
        return Projection(coords.astype(np.float32), method, (f"z{a}", f"z{b}"), None)
    if method == "pca":
        if d < 2 or n < 2:
            raise ValueError(f"PCA needs at least 2 points and 2 latent dimensions, got {n} x {d}")
        from sklearn.decomposition import PCA

        report(0.0, "fitting PCA")
        pca = PCA(n_components=2, random_state=seed)
        coords = pca.fit_transform(latents)
        ratios = pca.explained_variance_ratio_ if latents.var(axis=0).sum() > 0 else np.zeros(2)
        explained = (float(ratios[0]), float(ratios[1]))
        titles = (f"PC1 ({explained[0]:.0%} of variance)", f"PC2 ({explained[1]:.0%} of variance)")
        report(1.0, "done")
        return Projection(coords.astype(np.float32), method, titles, explained)
    if method == "tsne":
        if n < TSNE_MIN_POINTS:
            raise ValueError(f"t-SNE needs at least {TSNE_MIN_POINTS} points, got {n}")
        if perplexity <= 0:
            raise ValueError(f"perplexity must be > 0, got {perplexity}")
        if tsne_max_iter < TSNE_MIN_ITER:
            raise ValueError(f"tsne_max_iter must be >= {TSNE_MIN_ITER}, got {tsne_max_iter}")
        perplexity = min(float(perplexity), (n - 1) / 3)
        report(0.0, f"running t-SNE on {n:,} points (perplexity {perplexity:.0f})")
        coords = _tsne(latents, perplexity=perplexity, seed=seed, max_iter=tsne_max_iter).fit_transform(
            latents
        )
        report(1.0, "done")
        return Projection(coords.astype(np.float32), method, ("t-SNE 1", "t-SNE 2"), None)
    raise ValueError(f"method must be 'direct', 'pca' or 'tsne', got {method!r}")


def interpolate(
    z0: np.ndarray | torch.Tensor,
    z1: np.ndarray | torch.Tensor,
    *,
    steps: int,
    method: Literal["linear", "slerp"] = "linear",
) -> torch.Tensor:
    """Return ``steps`` latents on the path from z0 to z1, endpoints included exactly.

    ``slerp`` follows the great circle (Shoemake 1985; White 2016, "Sampling generative
    networks", sec. 2.1): z(t) = sin((1-t) w) / sin(w) z0 + sin(t w) / sin(w) z1 with
    cos(w) = z0.z1 / (|z0| |z1|). It falls back to the straight line when the vectors are
    (anti)parallel or either is about zero, where the great circle is undefined.

    Args:
        z0: start latent (D,).
        z1: end latent (D,).
        steps: number of latents, >= 2.
        method: "linear" or "slerp".

    Returns:
        float32 (steps, D); row 0 equals z0 and row -1 equals z1.
    """
    if steps < 2:
        raise ValueError(f"steps must be >= 2, got {steps}")
    if method not in ("linear", "slerp"):
        raise ValueError(f"method must be 'linear' or 'slerp', got {method!r}")
    a = torch.as_tensor(np.asarray(z0) if not isinstance(z0, torch.Tensor) else z0).detach().cpu().float()
    b = torch.as_tensor(np.asarray(z1) if not isinstance(z1, torch.Tensor) else z1).detach().cpu().float()
    if a.ndim != 1 or a.shape != b.shape:
        raise ValueError(
            f"z0 and z1 must be vectors of one length, got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    t = torch.linspace(0, 1, steps, dtype=torch.float64)[:, None]
    a64, b64 = a.double(), b.double()
    out = (1 - t) * a64 + t * b64
    if method == "slerp":
        na, nb = a64.norm(), b64.norm()
        if na > 1e-8 and nb > 1e-8:
            cos = torch.clamp(a64 @ b64 / (na * nb), -1.0, 1.0)
            omega = torch.arccos(cos)
            sin = torch.sin(omega)
            if sin > 1e-6:
                out = (torch.sin((1 - t) * omega) * a64 + torch.sin(t * omega) * b64) / sin
    out = out.float()
    out[0], out[-1] = a, b
    return out


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


def traversal_ranges(
    mu_data: np.ndarray, center: np.ndarray, *, steps: int = 9, width: float = 2.0
) -> np.ndarray:
    """Return per-dimension traversal values: center +- width standard deviations of the data's mu.

    The spread is that of the aggregate posterior the decoder was trained on, not of
    the prior, so a collapsed dimension gets a small range (floored at 1e-3).

    Args:
        mu_data: posterior means over a dataset (N, D).
        center: the latent to traverse around (D,).
        steps: values per dimension.
        width: half-width in standard deviations.

    Returns:
        float32 (D, steps), row i linearly spaced from center[i] - width * std_i to center[i] + width * std_i.
    """
    mu_data = _check_latents(mu_data)
    center = np.asarray(center, dtype=np.float64).reshape(-1)
    if center.shape[0] != mu_data.shape[1]:
        raise ValueError(f"center has {center.shape[0]} dimensions, mu_data has {mu_data.shape[1]}")
    if steps < 2:
        raise ValueError(f"steps must be >= 2, got {steps}")
    half = width * np.maximum(mu_data.std(axis=0), STD_FLOOR)
    return np.linspace(center - half, center + half, steps, axis=1).astype(np.float32)


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


def log_prior(z: np.ndarray | torch.Tensor) -> float | np.ndarray:
    """Return log N(z; 0, I) = -1/2 sum_d (z_d^2 + log 2 pi), in nats.

    Args:
        z: one latent (D,) or latents (N, D).

    Returns:
        A float for one latent, else float64 (N,).
    """
    z = z.detach().cpu().double().numpy() if isinstance(z, torch.Tensor) else np.asarray(z, dtype=np.float64)
    if z.ndim not in (1, 2):
        raise ValueError(f"z must be (D,) or (N, D), got shape {z.shape}")
    logp = -0.5 * (z**2 + math.log(2 * math.pi)).sum(axis=-1)
    return float(logp) if z.ndim == 1 else logp


def nearest_neighbours(
    query: np.ndarray, latents: np.ndarray, *, k: int = 8
) -> tuple[np.ndarray, np.ndarray]:
    """Return the ``k`` latents closest to ``query`` in Euclidean distance, nearest first.

    A query that is itself in ``latents`` comes back first, at distance 0.

    Args:
        query: (D,).
        latents: (N, D).
        k: number of neighbours, clipped to N.

    Returns:
        (indices int64 (k,), distances float64 (k,)).
    """
    latents = _check_latents(latents)
    query = np.asarray(query, dtype=np.float64).reshape(-1)
    if query.shape[0] != latents.shape[1]:
        raise ValueError(f"query has {query.shape[0]} dimensions, latents have {latents.shape[1]}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    distances = np.sqrt(((latents - query) ** 2).sum(axis=1))
    order = np.argsort(distances, kind="stable")[: min(k, len(latents))]
    return order.astype(np.int64), distances[order]


def aggregate_gaussian(mu: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fit one Gaussian to the aggregate posterior's means.

    Args:
        mu: posterior means over a dataset (N, D), N >= 2.

    Returns:
        (mean (D,), covariance (D, D)), float64.
    """
    mu = _check_latents(mu)
    if len(mu) < 2:
        raise ValueError(f"fitting a Gaussian needs at least 2 latents, got {len(mu)}")
    return mu.mean(axis=0), np.atleast_2d(np.cov(mu, rowvar=False))


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


def timeline_projection(
    frames: Sequence[TimelineFrame], *, method: Literal["pca", "direct"] = "pca"
) -> list[np.ndarray]:
    """Project every frame's mu with one fixed map, so an animation over epochs does not flip.

    Two-dimensional latents (or ``method="direct"``) are shown as z0, z1; otherwise PCA is
    fitted on the last frame's mu and applied to all frames.

    Args:
        frames: the training timeline; every ``mu`` is (n, D) for the same n points.
        method: "pca" or "direct".

    Returns:
        One float32 (n, 2) array per frame.
    """
    if method not in ("pca", "direct"):
        raise ValueError(f"method must be 'pca' or 'direct', got {method!r}")
    if not frames:
        return []
    mus = [np.asarray(f.mu, dtype=np.float64) for f in frames]
    d = mus[-1].shape[1]
    if any(m.ndim != 2 or m.shape[1] != d for m in mus):
        raise ValueError("every timeline frame must hold mu of the same latent dimension")
    if d == 1:
        return [np.column_stack([m[:, 0], np.zeros(len(m))]).astype(np.float32) for m in mus]
    if method == "direct" or d == 2:
        return [m[:, :2].astype(np.float32) for m in mus]
    last = mus[-1]
    center = last.mean(axis=0)
    # Principal axes of the last frame from its SVD; the sign makes each axis's largest loading positive.
    _, _, vt = np.linalg.svd(last - center, full_matrices=False)
    basis = vt[:2]
    signs = np.sign(basis[np.arange(len(basis)), np.abs(basis).argmax(axis=1)])
    basis = basis * np.where(signs == 0, 1.0, signs)[:, None]
    if len(basis) < 2:
        basis = np.vstack([basis, np.zeros((2 - len(basis), d))])
    return [((m - center) @ basis.T).astype(np.float32) for m in mus]


class ProjectionCache:
    """A thread-safe, size-bounded LRU memo of projections.

    Keys are hashable tuples such as (checkpoint, n, method, perplexity, seed). Two
    threads asking for the same missing key compute it once: the second waits for the first.
    """

    def __init__(self, maxsize: int = PROJECTION_CACHE_SIZE) -> None:
        if maxsize < 1:
            raise ValueError(f"maxsize must be >= 1, got {maxsize}")
        self.maxsize = maxsize
        self._items: OrderedDict[Hashable, Projection] = OrderedDict()
        self._lock = threading.Lock()
        self._pending: dict[Hashable, threading.Lock] = {}

    def get(self, key: Hashable) -> Projection | None:
        """Return the projection stored under ``key`` (marking it recently used), or None."""
        with self._lock:
            if key not in self._items:
                return None
            self._items.move_to_end(key)
            return self._items[key]

    def put(self, key: Hashable, value: Projection) -> None:
        """Store ``value`` under ``key``, evicting the least recently used entry when full."""
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.maxsize:
                self._items.popitem(last=False)

    def get_or_compute(self, key: Hashable, compute: Callable[[], Projection]) -> Projection:
        """Return the projection under ``key``, calling ``compute()`` and storing its result if missing."""
        found = self.get(key)
        if found is not None:
            return found
        with self._lock:
            key_lock = self._pending.setdefault(key, threading.Lock())
        with key_lock:
            found = self.get(key)
            if found is None:
                found = compute()
                self.put(key, found)
        with self._lock:
            self._pending.pop(key, None)
        return found

    def clear(self) -> None:
        """Forget every stored projection."""
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._items


projection_cache = ProjectionCache()


def dims_by_kl(kl: np.ndarray, *, top: int | None = None) -> np.ndarray:
    """Return latent dimensions ordered by KL, most informative first (ties keep index order).

    Args:
        kl: KL per dimension (D,), e.g. from ``metrics.kl_per_dimension``.
        top: keep only this many (None: all).

    Returns:
        int64 (min(top, D),) dimension indices.
    """
    kl = np.asarray(kl, dtype=np.float64).reshape(-1)
    if kl.size == 0:
        raise ValueError("kl must hold at least one dimension")
    if top is not None and top < 1:
        raise ValueError(f"top must be >= 1, got {top}")
    order = np.argsort(-kl, kind="stable").astype(np.int64)
    return order if top is None else order[:top]


def standard_normal_pdf(z: np.ndarray) -> np.ndarray:
    """Return the N(0, 1) density exp(-z^2 / 2) / sqrt(2 pi) elementwise, float64."""
    z = np.asarray(z, dtype=np.float64)
    return np.exp(-0.5 * z**2) / math.sqrt(2 * math.pi)


class MuHistogram(NamedTuple):
    """A density histogram of one dimension's posterior means beside the prior N(0, 1).

    ``edges`` (bins + 1,) and ``density`` (bins,) integrate to 1 over the data in range;
    ``prior_z`` and ``prior_pdf`` (P,) draw the prior's density curve over the same span.
    """

    dim: int
    edges: np.ndarray
    density: np.ndarray
    prior_z: np.ndarray
    prior_pdf: np.ndarray
    mean: float
    std: float


def mu_histograms(
    mu: np.ndarray, *, dims: Sequence[int], bins: int = 40, span: float = 4.0
) -> list[MuHistogram]:
    """Histogram the aggregate posterior's means per dimension against the prior's density.

    The span covers [-span, span] (where the prior lives) widened to the data's 0.5 and
    99.5 percentiles, so both a spike at 0 (an unused dimension) and a far-off cluster show.

    Args:
        mu: posterior means over a dataset (N, D).
        dims: the dimensions to histogram.
        bins: bins per histogram, >= 2.
        span: half-width in prior standard deviations the axis always covers, > 0.

    Returns:
        One MuHistogram per entry of ``dims``, in that order.
    """
    mu = _check_latents(mu)
    if bins < 2:
        raise ValueError(f"bins must be >= 2, got {bins}")
    if span <= 0:
        raise ValueError(f"span must be > 0, got {span}")
    out = []
    for dim in dims:
        dim = int(dim)
        if not 0 <= dim < mu.shape[1]:
            raise ValueError(f"dimension {dim} is outside [0, {mu.shape[1] - 1}]")
        values = mu[:, dim]
        lo = min(-span, float(np.percentile(values, 0.5)))
        hi = max(span, float(np.percentile(values, 99.5)))
        density, edges = np.histogram(values, bins=bins, range=(lo, hi), density=True)
        prior_z = np.linspace(lo, hi, 200)
        pdf = standard_normal_pdf(prior_z)
        out.append(MuHistogram(dim, edges, density, prior_z, pdf, float(values.mean()), float(values.std())))
    return out


class PCAProjector(NamedTuple):
    """A fitted two-component PCA that maps any latents onto one fixed plane.

    ``mean`` is (D,) and ``components`` (2, D), float64; ``transform`` projects new points
    (an uploaded image's mu) onto the same axes the reference set was drawn on.
    """

    mean: np.ndarray
    components: np.ndarray
    explained: tuple[float, float]
    axis_titles: tuple[str, str]

    def transform(self, z: np.ndarray | torch.Tensor) -> np.ndarray:
        """Project latents (N, D) or one latent (D,) to float32 coordinates (N, 2)."""
        z = z.detach().cpu().numpy() if isinstance(z, torch.Tensor) else np.asarray(z)
        z = np.atleast_2d(z.astype(np.float64))
        if z.ndim != 2 or z.shape[1] != self.mean.shape[0]:
            raise ValueError(f"expected latents (N, {self.mean.shape[0]}), got shape {z.shape}")
        return ((z - self.mean) @ self.components.T).astype(np.float32)


def fit_pca(latents: np.ndarray, *, seed: int = 0) -> PCAProjector:
    """Fit the two-component PCA of ``project(method="pca")`` and keep it for new points.

    ``fit_pca(latents).transform(latents)`` equals ``project(latents, method="pca").coords``.
    A one-dimensional latent maps to (z0, 0).

    Args:
        latents: reference latents (N, D), N >= 2, usually the posterior means of a dataset.
        seed: the PCA's random state.

    Returns:
        PCAProjector(mean (D,), components (2, D), explained ratios, axis titles).
    """
    latents = _check_latents(latents)
    n, d = latents.shape
    if n < 2:
        raise ValueError(f"PCA needs at least 2 points, got {n}")
    if d == 1:
        return PCAProjector(latents.mean(axis=0), np.array([[1.0], [0.0]]), (1.0, 0.0), ("z0", ""))
    from sklearn.decomposition import PCA

    pca = PCA(n_components=2, random_state=seed).fit(latents)
    ratios = pca.explained_variance_ratio_ if latents.var(axis=0).sum() > 0 else np.zeros(2)
    explained = (float(ratios[0]), float(ratios[1]))
    titles = (f"PC1 ({explained[0]:.0%} of variance)", f"PC2 ({explained[1]:.0%} of variance)")
    return PCAProjector(pca.mean_.astype(np.float64), pca.components_.astype(np.float64), explained, titles)


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


def selected_indices(points: Sequence[object], *, size: int | None = None) -> np.ndarray:
    """Return the global indices carried in the ``customdata`` of Plotly's selected points.

    Plotly numbers points per trace, so a chart with one trace per class puts each
    point's index into the whole dataset in ``customdata``; Streamlit hands that back as
    a scalar or a one-element list, depending on how the trace stored it.

    Args:
        points: the selection's points, dicts with a "customdata" entry (others are skipped).
        size: when given, drop indices outside [0, size), e.g. left over from a larger N.

    Returns:
        int64 (K,) unique indices in the order they were selected.
    """
    found: dict[int, None] = {}
    for point in points:
        value = point.get("customdata") if isinstance(point, dict) else None
        if isinstance(value, (list, tuple, np.ndarray)):
            value = value[0] if len(value) else None
        if value is None:
            continue
        try:
            index = int(value)
        except (TypeError, ValueError):
            continue
        if index >= 0 and (size is None or index < size):
            found.setdefault(index, None)
    return np.fromiter(found, dtype=np.int64, count=len(found))


def prior_latent(latent_dim: int, *, seed: int) -> np.ndarray:
    """Draw one latent from the prior N(0, I) with a fixed seed.

    Returns:
        float64 (latent_dim,).
    """
    if latent_dim < 1:
        raise ValueError(f"latent_dim must be >= 1, got {latent_dim}")
    return np.random.default_rng(seed).standard_normal(latent_dim)


def grid_position(values: np.ndarray, z: float) -> float:
    """Return where ``z`` falls along a manifold grid's axis, in cells.

    Cell c spans [c, c + 1] and shows ``values[c]`` at its centre c + 0.5; between
    centres the position is linear in z, beyond the ends it extends the end cells'
    spacing and is clipped to the grid's edges [0, n].

    Args:
        values: the grid's increasing values along the axis (n,), n >= 2.
        z: a latent coordinate.

    Returns:
        The position in [0, n].
    """
    values = np.asarray(values, dtype=np.float64)
    n = len(values)
    if values.ndim != 1 or n < 2 or not np.all(np.diff(values) > 0):
        raise ValueError(f"values must be increasing (n,) with n >= 2, got shape {values.shape}")
    centres = np.arange(n) + 0.5
    if z < values[0]:
        pos = 0.5 - (values[0] - z) / (values[1] - values[0])
    elif z > values[-1]:
        pos = n - 0.5 + (z - values[-1]) / (values[-1] - values[-2])
    else:
        pos = float(np.interp(z, values, centres))
    return float(np.clip(pos, 0.0, n))


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
