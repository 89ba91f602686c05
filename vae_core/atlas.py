"""The atlas: one model's picture of its latent space over a set of images, shared by every view.

For each image the atlas holds the posterior mu and logvar, the -ELBO with the library's one
estimator (``metrics.per_image_elbo``), its class label, and a position on a 2-D map that keeps
neighbours together: the latent plane itself for a 2-D latent, else t-SNE. New points (an
upload, a drawing, the Decode page's z, an interpolation path) are placed on the same map by
``Atlas.place``. ``atlas_payload`` and ``parse_atlas`` store an atlas in a checkpoint as plain
tensors and strings, so a shipped model opens on its map without computing anything.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from vae_core.geometry import fit_pca, nearest_neighbours
from vae_core.inference import encode
from vae_core.metrics import ELBO_ESTIMATOR, per_image_elbo
from vae_core.model import VAE

ProgressCallback = Callable[[float, str], None]

# Placement: a new point goes to the kernel-weighted mean of the map positions of its
# PLACE_NEIGHBOURS nearest codes (the initialisation openTSNE's transform starts from).
PLACE_NEIGHBOURS = 10
# Fewer points than this get a PCA map: t-SNE needs a neighbourhood to preserve.
TSNE_MIN_POINTS = 30
TSNE_PERPLEXITY = 30.0
# openTSNE's FFT-accelerated t-SNE (Linderman et al. 2019), chosen by benchmarks/layout_choice/RESULTS.md
# on 10k MNIST codes on 2 shared cores: exact neighbours, 125 exaggerated + 250 normal steps and 2
# interpolation points per interval take about 3.6 s for a 10-NN label accuracy of 0.951 (0.956 in the
# latent itself) and a trustworthiness of 0.976; scikit-learn's Barnes-Hut t-SNE needed 4.8 s for 0.952
# (300 steps) or 8.4 s for 0.977 (500 steps), and umap-learn 25-30 s in a fresh process (numba compiling).
TSNE_EXAGGERATED_STEPS = 125
TSNE_STEPS = 250
TSNE_INTS_IN_INTERVAL = 2
# FFT's cost per step is nearly fixed; below this many points Barnes-Hut is faster (2,000 codes: 1.9 s
# against 4.8 s; 40 codes: 1.0 s against 6.1 s), as openTSNE's documentation advises for small sets.
TSNE_FFT_FROM = 4000
LAYOUT_SEED = 0
PAYLOAD_KEYS = frozenset(
    {"mu", "logvar", "recon", "kl", "coords", "labels", "layout", "data_key", "estimator"}
)
LAYOUT_TITLES = {
    "latent": ("z0", "z1"),
    "t-SNE": ("t-SNE 1", "t-SNE 2"),
    "PCA": ("PC1", "PC2"),
}


@dataclass(frozen=True, eq=False)
class Atlas:
    """A model's stored picture of its latent space over N images.

    ``mu`` and ``logvar`` are float32 (N, D); ``recon`` and ``kl`` float32 (N,) are the parts
    of each image's -ELBO in nats (``elbo`` = recon + kl); ``coords`` float32 (N, 2) the map;
    ``labels`` int64 (N,); ``layout`` names the map ("latent", "t-SNE" or "PCA");
    ``data_key`` identifies the images (``images_key``) and ``estimator`` the -ELBO estimator.
    """

    mu: np.ndarray
    logvar: np.ndarray
    recon: np.ndarray
    kl: np.ndarray
    coords: np.ndarray
    labels: np.ndarray
    layout: str
    data_key: str
    estimator: str = ELBO_ESTIMATOR

    def __len__(self) -> int:
        return len(self.mu)

    @property
    def elbo(self) -> np.ndarray:
        """Return each image's -ELBO in nats, float32 (N,)."""
        return self.recon + self.kl

    @property
    def std(self) -> np.ndarray:
        """Return the posterior standard deviations exp(logvar / 2), float32 (N, D)."""
        return np.exp(0.5 * self.logvar)

    @property
    def axis_titles(self) -> tuple[str, str]:
        """Return the map's axis titles."""
        return LAYOUT_TITLES.get(self.layout, ("map 1", "map 2"))

    def place(self, z: np.ndarray | torch.Tensor) -> np.ndarray:
        """Place latents on this atlas's map; deterministic, about a millisecond per point.

        On a latent-plane map the position is the code itself. Otherwise each point goes to
        the mean of its ``PLACE_NEIGHBOURS`` nearest codes' positions, weighted by
        exp(-(d^2 - d_min^2) / (2 s^2)) with s^2 the median of their squared distances d^2, so a point
        close to one code lands next to it and a point between clusters lands between them.

        Args:
            z: latents (M, D) or one latent (D,).

        Returns:
            float32 (M, 2).
        """
        z = z.detach().cpu().numpy() if isinstance(z, torch.Tensor) else np.asarray(z)
        z = np.atleast_2d(z.astype(np.float64))
        d = self.mu.shape[1]
        if z.ndim != 2 or z.shape[1] != d:
            raise ValueError(f"expected latents (M, {d}), got shape {z.shape}")
        if not np.isfinite(z).all():
            raise ValueError("latents to place contain NaN or inf")
        if self.layout == "latent":
            return (z[:, :2] if d >= 2 else np.column_stack([z[:, 0], np.zeros(len(z))])).astype(np.float32)
        ref = self.mu.astype(np.float64)
        k = min(PLACE_NEIGHBOURS, len(ref))
        # |z - m|^2 = |z|^2 - 2 z.m + |m|^2 for all pairs at once: (M, N).
        sq = (z**2).sum(1)[:, None] - 2 * z @ ref.T + (ref**2).sum(1)[None, :]
        sq = np.maximum(sq, 0.0)
        idx = np.argpartition(sq, k - 1, axis=1)[:, :k]
        near = np.take_along_axis(sq, idx, axis=1)
        scale = np.maximum(np.median(near, axis=1, keepdims=True), 1e-12)
        w = np.exp(-(near - near.min(axis=1, keepdims=True)) / (2 * scale))
        coords = (w[:, :, None] * self.coords[idx].astype(np.float64)).sum(1) / w.sum(1, keepdims=True)
        return coords.astype(np.float32)

    def neighbours(self, z: np.ndarray, *, k: int = 8) -> tuple[np.ndarray, np.ndarray]:
        """Return the ``k`` images whose mu is closest to ``z`` (D,): (indices int64 (k,), distances (k,))."""
        return nearest_neighbours(z, self.mu, k=k)

    def percentile(self, elbo: float) -> float:
        """Return the percentage of this atlas's images with a lower -ELBO than ``elbo``, in [0, 100]."""
        return float((self.elbo < elbo).mean() * 100.0) if len(self) else 0.0


def images_key(images: torch.Tensor) -> str:
    """Return a short digest that identifies a set of uint8 images (their shape and bytes)."""
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8:
        raise ValueError("images_key takes a uint8 image tensor")
    digest = hashlib.sha256(str(tuple(images.shape)).encode())
    digest.update(images.contiguous().numpy().tobytes())
    return digest.hexdigest()[:20]


def build_atlas(
    model: VAE,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    seed: int = LAYOUT_SEED,
    on_progress: ProgressCallback | None = None,
) -> Atlas:
    """Encode and score every image and lay the codes out on a neighbour-preserving 2-D map.

    Args:
        model: the VAE.
        images: uint8 (N, C, H, W), N >= 1.
        labels: integer class labels (N,).
        seed: the layout's random state.
        on_progress: called with (fraction in [0, 1], message) between phases.

    Returns:
        The ``Atlas``.
    """
    if images.dtype != torch.uint8 or images.ndim != 4 or len(images) == 0:
        raise ValueError("build_atlas takes a non-empty uint8 image tensor (N, C, H, W)")
    if labels.shape != (len(images),):
        raise ValueError(f"labels must be ({len(images)},), got {tuple(labels.shape)}")
    report = on_progress or (lambda fraction, message: None)
    n = len(images)
    report(0.0, f"encoding {n:,} images")
    post = encode(model, images)
    mu, logvar = post.mu.numpy(), post.logvar.numpy()
    report(0.1, f"scoring {n:,} images ({ELBO_ESTIMATOR})")
    parts = per_image_elbo(model, images)
    report(0.35, "laying out the map")
    coords, layout = layout_codes(mu, seed=seed, on_progress=lambda f, m: report(0.35 + 0.65 * f, m))
    report(1.0, "done")
    return Atlas(
        mu=mu.astype(np.float32),
        logvar=logvar.astype(np.float32),
        recon=parts.recon,
        kl=parts.kl,
        coords=coords,
        labels=labels.numpy().astype(np.int64),
        layout=layout,
        data_key=images_key(images),
    )


def layout_codes(
    mu: np.ndarray, *, seed: int = LAYOUT_SEED, on_progress: ProgressCallback | None = None
) -> tuple[np.ndarray, str]:
    """Return a neighbour-preserving 2-D map of codes (float32 (N, 2)) and the layout's name.

    A 1- or 2-D latent is its own map ("latent"); fewer than ``TSNE_MIN_POINTS`` codes get
    their first two principal components ("PCA"); anything else gets t-SNE ("t-SNE").
    """
    mu = np.asarray(mu, dtype=np.float64)
    if mu.ndim != 2 or len(mu) == 0:
        raise ValueError(f"codes must be a non-empty (N, D) array, got shape {mu.shape}")
    if not np.isfinite(mu).all():
        raise ValueError("codes contain NaN or infinite values; the model may have diverged")
    n, d = mu.shape
    if d <= 2:
        coords = mu if d == 2 else np.column_stack([mu[:, 0], np.zeros(n)])
        return coords.astype(np.float32), "latent"
    if n < TSNE_MIN_POINTS:
        if n < 2:
            return np.zeros((n, 2), np.float32), "PCA"
        return fit_pca(mu).transform(mu), "PCA"
    return tsne_layout(mu, seed=seed, on_progress=on_progress), "t-SNE"


def tsne_layout(
    mu: np.ndarray, *, seed: int = LAYOUT_SEED, on_progress: ProgressCallback | None = None
) -> np.ndarray:
    """Run t-SNE (van der Maaten & Hinton 2008) on codes (N, D); return float32 (N, 2)."""
    report = on_progress or (lambda fraction, message: None)
    perplexity = min(TSNE_PERPLEXITY, (len(mu) - 1) / 3)
    report(0.0, f"t-SNE of {len(mu):,} codes (perplexity {perplexity:.0f})")
    started = time.perf_counter()
    coords = _tsne(mu, perplexity=perplexity, seed=seed)
    report(1.0, f"t-SNE took {time.perf_counter() - started:.1f} s")
    return coords.astype(np.float32)


def _tsne(mu: np.ndarray, *, perplexity: float, seed: int) -> np.ndarray:
    from openTSNE import TSNE

    # PCA initialisation keeps the global arrangement stable and converges in few steps
    # (Kobak & Berens 2019); openTSNE's default learning rate is N / 12 (Belkina et al. 2019).
    return np.asarray(
        TSNE(
            perplexity=perplexity,
            neighbors="exact",
            initialization="pca",
            early_exaggeration_iter=TSNE_EXAGGERATED_STEPS,
            n_iter=TSNE_STEPS,
            negative_gradient_method="fft" if len(mu) >= TSNE_FFT_FROM else "bh",
            ints_in_interval=TSNE_INTS_IN_INTERVAL,
            n_jobs=-1,
            random_state=seed,
            verbose=False,
        ).fit(mu)
    )


def knn_accuracy(coords: np.ndarray, labels: np.ndarray, *, k: int = 10) -> float:
    """Return leave-one-out k-NN label accuracy on a map: how often a point's k nearest agree with its class."""
    from sklearn.neighbors import NearestNeighbors

    coords, labels = np.asarray(coords), np.asarray(labels)
    k = min(k, len(coords) - 1)
    if k < 1:
        raise ValueError("k-NN accuracy needs at least 2 points")
    index = NearestNeighbors(n_neighbors=k + 1).fit(coords).kneighbors(coords, return_distance=False)[:, 1:]
    votes = labels[index]
    predicted = np.array([np.bincount(row).argmax() for row in votes])
    return float((predicted == labels).mean())


def atlas_payload(atlas: Atlas | None) -> dict[str, Any] | None:
    """Return the atlas as plain tensors and strings for a checkpoint, or None."""
    if atlas is None:
        return None
    return {
        "mu": torch.from_numpy(np.ascontiguousarray(atlas.mu, dtype=np.float32)),
        "logvar": torch.from_numpy(np.ascontiguousarray(atlas.logvar, dtype=np.float32)),
        "recon": torch.from_numpy(np.ascontiguousarray(atlas.recon, dtype=np.float32)),
        "kl": torch.from_numpy(np.ascontiguousarray(atlas.kl, dtype=np.float32)),
        "coords": torch.from_numpy(np.ascontiguousarray(atlas.coords, dtype=np.float32)),
        "labels": torch.from_numpy(np.ascontiguousarray(atlas.labels, dtype=np.int64)),
        "layout": atlas.layout,
        "data_key": atlas.data_key,
        "estimator": atlas.estimator,
    }


def parse_atlas(raw: Any, *, n: int, latent_dim: int, fail: Callable[[str], Exception]) -> Atlas | None:
    """Rebuild an ``Atlas`` of ``n`` images from ``atlas_payload``'s dict, checking every field.

    Args:
        raw: the stored dict, or None.
        n: the number of bundled images the atlas must describe.
        latent_dim: the model's D.
        fail: makes the exception to raise, given a reason.
    """
    if raw is None:
        return None
    if not isinstance(raw, dict) or set(raw) != PAYLOAD_KEYS:
        raise fail(f"the atlas must hold exactly {sorted(PAYLOAD_KEYS)}")
    shapes = {
        "mu": ((n, latent_dim), torch.float32),
        "logvar": ((n, latent_dim), torch.float32),
        "recon": ((n,), torch.float32),
        "kl": ((n,), torch.float32),
        "coords": ((n, 2), torch.float32),
        "labels": ((n,), torch.int64),
    }
    arrays = {}
    for key, (shape, dtype) in shapes.items():
        value = raw[key]
        if not isinstance(value, torch.Tensor) or value.dtype != dtype or tuple(value.shape) != shape:
            raise fail(f"the atlas's {key} must be {str(dtype).removeprefix('torch.')} {shape}")
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise fail(f"the atlas's {key} contains NaN or inf")
        arrays[key] = value.numpy()
    texts = {key: raw[key] for key in ("layout", "data_key", "estimator")}
    if not all(isinstance(v, str) and len(v) <= 200 for v in texts.values()):
        raise fail("the atlas's layout, data_key and estimator must be short strings")
    return Atlas(**arrays, **texts)
