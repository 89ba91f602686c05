"""Pure latent-space geometry: one PCA, interpolation paths, distances, ranges, densities.

Nothing here calls a model; every function takes and returns arrays. The helpers that
encode and decode live in ``inference``, the model's stored map of its latent space in ``atlas``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal, NamedTuple

import numpy as np
import torch

if TYPE_CHECKING:
    from vae_core.timeline import TimelineFrame

ProjectionMethod = Literal["direct", "pca"]
STD_FLOOR = 1e-3


class Projection(NamedTuple):
    """Two-dimensional coordinates of latents, ready to plot.

    ``coords`` is float32 (N, 2); ``explained`` holds PCA's explained variance ratios of
    the two axes and is None for the other methods.
    """

    coords: np.ndarray
    method: str
    axis_titles: tuple[str, str]
    explained: tuple[float, float] | None


def _check_latents(latents: np.ndarray) -> np.ndarray:
    latents = np.asarray(latents, dtype=np.float64)
    if latents.ndim != 2 or len(latents) == 0:
        raise ValueError(f"latents must be a non-empty (N, D) array, got shape {latents.shape}")
    if not np.isfinite(latents).all():
        raise ValueError("latents contain NaN or infinite values; the model may have diverged")
    return latents


def project(
    latents: np.ndarray,
    *,
    method: ProjectionMethod,
    seed: int = 0,
    dims: tuple[int, int] = (0, 1),
) -> Projection:
    """Project latents linearly to two dimensions for a scatter plot.

    ``direct`` takes two latent dimensions as they are; ``pca`` the first two principal
    components (``fit_pca``). The neighbour-preserving layout every page shares is the
    atlas's (``atlas.build_atlas``); these two are the readable, linear alternatives.

    Args:
        latents: (N, D) latents, usually the posterior means.
        method: "direct" or "pca".
        seed: the PCA's random state.
        dims: the two latent dimensions ``direct`` shows.

    Returns:
        Projection(coords float32 (N, 2), method, axis_titles, explained).
    """
    latents = _check_latents(latents)
    n, d = latents.shape
    if method == "direct":
        a, b = dims
        if not (0 <= a < d and 0 <= b < d) or a == b:
            raise ValueError(f"dims must be two different dimensions in [0, {d - 1}], got {tuple(dims)}")
        return Projection(latents[:, [a, b]].astype(np.float32), method, (f"z{a}", f"z{b}"), None)
    if method == "pca":
        if d < 2 or n < 2:
            raise ValueError(f"PCA needs at least 2 points and 2 latent dimensions, got {n} x {d}")
        pca = fit_pca(latents, seed=seed)
        return Projection(pca.transform(latents), method, pca.axis_titles, pca.explained)
    raise ValueError(f"method must be 'direct' or 'pca', got {method!r}")


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
    # One PCA, fitted on the last frame and applied to every frame, so the axes stay put.
    pca = fit_pca(mus[-1])
    return [pca.transform(m) for m in mus]


def dims_by_kl(kl: np.ndarray, *, top: int | None = None) -> np.ndarray:
    """Return latent dimensions ordered by KL, most informative first (ties keep index order).

    Args:
        kl: KL per dimension (D,), e.g. from ``health.kl_per_dimension``.
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


def ellipse_outline(
    centre: Sequence[float] | np.ndarray,
    radii: Sequence[float] | np.ndarray,
    *,
    k: float = 1.0,
    points: int = 96,
) -> np.ndarray:
    """Return the closed outline of the axis-aligned ellipse centre + k * radii * (cos t, sin t).

    In two chosen dimensions of a diagonal Gaussian N(mu, diag(std^2)) this is the contour at
    k standard deviations (Mahalanobis distance k); for N(0, I) it is the circle of radius k.

    Args:
        centre: the centre (2,), e.g. mu of the two dimensions.
        radii: the semi-axes (2,), > 0, e.g. std of the two dimensions.
        k: how many standard deviations out, > 0.
        points: points on the outline, >= 8 (the first is repeated at the end to close it).

    Returns:
        float64 (points + 1, 2).
    """
    centre = np.asarray(centre, dtype=np.float64).reshape(-1)
    radii = np.asarray(radii, dtype=np.float64).reshape(-1)
    if centre.shape != (2,) or radii.shape != (2,):
        raise ValueError(
            f"centre and radii must each hold 2 numbers, got shapes {centre.shape} and {radii.shape}"
        )
    if not np.all(radii > 0) or not k > 0:
        raise ValueError(f"radii and k must be > 0, got radii {radii.tolist()} and k {k}")
    if points < 8:
        raise ValueError(f"points must be >= 8, got {points}")
    t = np.linspace(0.0, 2.0 * math.pi, points + 1)
    return centre + k * radii * np.stack([np.cos(t), np.sin(t)], axis=1)


def plane_grid(coords: np.ndarray, *, n: int, margin: float = 0.05) -> np.ndarray:
    """Return an n x n grid of points covering the bounding box of ``coords``, widened by ``margin``.

    A map drawn with these points as invisible targets reports a click anywhere on the plane as
    the nearest grid point: on a latent-plane map, a z.

    Args:
        coords: points on the plane (N, 2), N >= 1, finite.
        n: grid points per axis, >= 2.
        margin: how far the grid reaches beyond the points, as a fraction of their extent per axis, >= 0.

    Returns:
        float64 (n * n, 2), row-major: x varies fastest, y increases row by row.
    """
    coords = np.asarray(coords, dtype=np.float64)
    if coords.ndim != 2 or coords.shape[1] != 2 or len(coords) == 0:
        raise ValueError(f"coords must be (N, 2) with N >= 1, got shape {coords.shape}")
    if not np.isfinite(coords).all():
        raise ValueError("coords contain NaN or inf")
    if n < 2:
        raise ValueError(f"n must be >= 2, got {n}")
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    lo, hi = coords.min(axis=0), coords.max(axis=0)
    pad = np.maximum(hi - lo, 1e-6) * margin + (hi == lo) * 0.5  # a single point still gets a plane around it
    xs = np.linspace(lo[0] - pad[0], hi[0] + pad[0], n)
    ys = np.linspace(lo[1] - pad[1], hi[1] + pad[1], n)
    gx, gy = np.meshgrid(xs, ys)
    return np.column_stack([gx.ravel(), gy.ravel()])
