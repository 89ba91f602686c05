"""Every cached computation of the app, keyed by model identity AND data identity.

Models of the checkpoint folder are ``st.cache_resource`` objects shared by every session:
read-only (loaded in eval mode without gradients); training always builds its own model.
Uploaded models are not cached here: each lives in its session's state (``state.remember_upload``)
and is freed with it. Atlases computed in the app (a model without a stored one, the full test
split, model B on model A's images) live in one thread-safe LRU store keyed by (model key,
data key), so the same image always gets the same numbers and one model's codes are never served
for another model's images.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import streamlit as st
import torch
from PIL import Image, ImageDraw

from vae_core.atlas import Atlas, images_key
from vae_core.checkpoints import LoadedCheckpoint, list_checkpoints, load_checkpoint
from vae_core.datasets import DatasetUnavailable, load_dataset
from vae_core.directions import Direction, walk
from vae_core.export import export_zip, latents_csv, projector_payload, traversal_gif, traversal_sheet
from vae_core.generation import (
    ClassMixture,
    CodeClassifier,
    fit_class_mixtures,
    fit_code_classifier,
    sample_mixture,
    sample_prior,
)
from vae_core.geometry import dims_by_kl, timeline_projection, traversal_ranges
from vae_core.health import kl_per_dimension_of
from vae_core.imaging import MIN_EXPORT_SCALE, animation_gif, gif_bytes, image_grid, png_bytes, scatter_frames
from vae_core.inference import decode_latents, manifold_grid, traversal
from vae_core.metrics import decode_seconds
from vae_core.model import VAE
from vae_core.preprocess import PreparedImage, prepare_image
from vae_core.registry import RunRegistry
from vae_core.timeline import Timeline

ATLAS_STORE_SIZE = 16


@st.cache_data(show_spinner=False, max_entries=8)
def listing(folder: str, signature: tuple) -> tuple[list, list]:
    """Return (good infos, bad (path, reason)) of a checkpoint folder; ``signature`` changes with its files."""
    found = list_checkpoints(Path(folder))
    return found.good, found.bad


@st.cache_resource(show_spinner="Loading the model …", max_entries=8)
def model_file(path: str, mtime: float) -> LoadedCheckpoint:
    """Load a checkpoint file once per path and modification time; shared read-only."""
    return load_checkpoint(path)


class TestSplit(NamedTuple):
    """A dataset's test split read from disk: uint8 images, int64 labels, class names, identity."""

    images: torch.Tensor
    labels: torch.Tensor
    class_names: tuple[str, ...]
    key: str


@st.cache_resource(show_spinner="Reading the test split …", max_entries=4)
def test_split(name: str, data_root: str, folder_roots: tuple[str, ...] = ()) -> TestSplit | None:
    """Return a dataset's test split on disk (shared read-only), or None when it is not there.

    A folder dataset is read only below ``folder_roots`` (``own_images.folder_roots()``): a checkpoint
    that names any other folder gets None, whatever is there.
    """
    try:
        data = load_dataset(
            name, root=data_root, download=False, folder_roots=tuple(Path(r) for r in folder_roots)
        )
    except (DatasetUnavailable, ValueError, OSError):
        return None
    return TestSplit(data.test_x, data.test_y, tuple(data.class_names), images_key(data.test_x))


@st.cache_data(show_spinner=False, max_entries=16)
def sample_key(model_key: str, _images: torch.Tensor) -> str:
    """Return the identity of a checkpoint's bundled images; they are part of the file ``model_key`` names."""
    return images_key(_images)


@st.cache_data(show_spinner=False, max_entries=16)
def prepared_image(content: bytes, image_shape: tuple[int, int, int], style: str) -> PreparedImage:
    """Turn uploaded bytes into a model input once per file, shape and style."""
    return prepare_image(content, image_shape=image_shape, style=style)


class AtlasStore:
    """A thread-safe, size-bounded LRU of atlases keyed by (model key, data key).

    Two sessions asking for the same missing atlas compute it once: the second waits.
    """

    def __init__(self, maxsize: int = ATLAS_STORE_SIZE) -> None:
        self.maxsize = maxsize
        self._items: OrderedDict[Hashable, Atlas] = OrderedDict()
        self._lock = threading.Lock()
        self._pending: dict[Hashable, threading.Lock] = {}

    def get(self, key: Hashable) -> Atlas | None:
        """Return the atlas under ``key`` (marking it recently used), or None."""
        with self._lock:
            if key not in self._items:
                return None
            self._items.move_to_end(key)
            return self._items[key]

    def get_or_compute(self, key: Hashable, compute: Callable[[], Atlas]) -> Atlas:
        """Return the atlas under ``key``, computing and storing it first when missing."""
        found = self.get(key)
        if found is not None:
            return found
        with self._lock:
            key_lock = self._pending.setdefault(key, threading.Lock())
        with key_lock:
            found = self.get(key)
            if found is None:
                found = compute()
                with self._lock:
                    self._items[key] = found
                    while len(self._items) > self.maxsize:
                        self._items.popitem(last=False)
        with self._lock:
            self._pending.pop(key, None)
        return found


@st.cache_resource(show_spinner=False)
def atlas_store() -> AtlasStore:
    """Return the server's one atlas store."""
    return AtlasStore()


@st.cache_data(show_spinner="Timing the decoder …", max_entries=8)
def decode_rate(model_key: str, data_key: str, _loaded: LoadedCheckpoint, _images: torch.Tensor) -> float:
    """Return the model's seconds per decoded sample, timed once on the first images of ``data_key``."""
    return decode_seconds(_loaded.model, _images[:16])


@st.cache_data(show_spinner="Decoding the traversal …", max_entries=32)
def traversal_files(
    model_key: str,
    data_key: str,
    _loaded: LoadedCheckpoint,
    _atlas: Atlas,
    *,
    index: int,
    rows: int,
    steps: int,
    width: float,
    scale: int,
) -> tuple[bytes, bytes]:
    """Return (PNG sheet, GIF) of the ``rows`` highest-KL dimensions swept around atlas image ``index``.

    KL per dimension and the ranges (``width`` standard deviations of each dimension's mu) come
    from the atlas of (``model_key``, ``data_key``).
    """
    mu = _atlas.mu
    kl = kl_per_dimension_of(mu, _atlas.logvar)
    dims = dims_by_kl(kl, top=rows)
    values = traversal_ranges(mu, mu[index], steps=steps, width=width)[dims]
    images = traversal(_loaded.model, mu[index], dims=dims, values=values)
    offsets = np.linspace(-width, width, steps)
    columns = ["μ" if abs(o) < 1e-9 else f"{o:+.2g}σ".replace("-", "−") for o in offsets]
    sheet = traversal_sheet(
        images,
        row_labels=[f"z{i} · KL {kl[i]:.2f} nats" for i in dims],
        column_labels=columns,
        scale=scale,
        font_size=max(14, 4 * scale),
    )
    return png_bytes(sheet), traversal_gif(images, labels=[f"z{i}" for i in dims], scale=scale)


@st.cache_data(show_spinner="Preparing the files …", max_entries=8)
def export_files(
    model_key: str,
    data_key: str,
    n: int,
    _atlas: Atlas,
    _images: torch.Tensor,
    class_names: tuple[str, ...],
    tensor_name: str,
) -> tuple[dict[str, bytes], bytes, str]:
    """Return (projector files, their zip, CSV) of the first ``n`` images of the atlas of (model, data).

    The vectors are the atlas's codes mu; the CSV adds each image's -ELBO and its position on the map.
    """
    mu, labels = _atlas.mu[:n], _atlas.labels[:n]
    common = dict(
        latents=mu, labels=labels, images=_images[:n], class_names=class_names, tensor_name=tensor_name
    )
    columns = {"neg_elbo": _atlas.elbo[:n], "map_x": _atlas.coords[:n, 0], "map_y": _atlas.coords[:n, 1]}
    return projector_payload(**common), export_zip(**common), latents_csv(mu, labels, extra_columns=columns)


def timeline_key(timeline: Timeline) -> str:
    """Return a digest of a timeline's epochs, codes and labels: its identity, whoever recorded it."""
    digest = hashlib.sha256(np.ascontiguousarray(timeline.labels, dtype=np.int64).tobytes())
    for frame in timeline.frames:
        digest.update(np.int64(frame.epoch).tobytes())
        digest.update(np.ascontiguousarray(frame.mu, dtype=np.float32).tobytes())
    return digest.hexdigest()[:24]


@st.cache_data(show_spinner="Drawing the animations …", max_entries=8)
def timeline_gifs(
    key: str, _timeline: Timeline, class_names: tuple[str, ...], scale: int = MIN_EXPORT_SCALE
) -> tuple[bytes, bytes]:
    """Return (latent map GIF, prior samples GIF) of the timeline whose ``timeline_key`` is ``key``.

    The map uses ``geometry.timeline_projection`` and the class palette, like the page's animation;
    it is 320 pixels square, 640 from ``scale`` 6 up (slides). The samples are enlarged ``scale`` times.
    """
    frames = _timeline.frames
    titles = [f"epoch {f.epoch}" for f in frames]
    coords = timeline_projection(frames)
    zoom = 2 if scale >= 6 else 1
    scatter = scatter_frames(coords, _timeline.labels, titles=titles, class_names=class_names, zoom=zoom)
    prior = animation_gif(np.stack([f.samples for f in frames]), scale=scale, ncols=4, duration_ms=400)
    return gif_bytes(scatter, duration_ms=400), prior


@st.cache_data(show_spinner=False)
def example_drawing() -> bytes:
    """Return a PNG of a thick black 7 on white paper, as someone might draw one."""
    img = Image.new("RGB", (240, 240), "white")
    ImageDraw.Draw(img).line([(60, 55), (180, 55), (105, 200)], fill=(20, 20, 30), width=20, joint="curve")
    return png_bytes(img)


@st.cache_data(show_spinner=False, max_entries=32)
def manifold_picture(
    model_key: str, _model: VAE, *, n: int, dims: tuple[int, int], base: tuple[float, ...]
) -> tuple[bytes, np.ndarray]:
    """Return the decoded n x n manifold grid over ``dims`` as one PNG, and its z values (n,) along each axis.

    ``base`` holds the other dimensions' values; the model is named by ``model_key``.
    """
    grid = manifold_grid(_model, n=n, dims=dims, base=np.array(base))
    return png_bytes(image_grid(grid.images, ncols=n, pad=0)), grid.values


@st.cache_resource(show_spinner=False)
def run_registry() -> RunRegistry:
    """Return the server's one registry of training runs (shared by every session; thread-safe)."""
    return RunRegistry()


@st.cache_data(show_spinner="Counting the training images …", max_entries=16)
def train_size(name: str, data_root: str) -> int | None:
    """Return how many training images the named dataset has on disk, or None when it is not there."""
    try:
        return len(load_dataset(name, root=data_root, download=False).train_x)
    except DatasetUnavailable:
        return None


class ClassSamples(NamedTuple):
    """Decoded samples of one class from its mixture, beside prior samples, and what a classifier makes of them.

    ``mixture`` and ``prior`` are PNG grids; ``*_shares`` float (K,) the share of each batch the
    classifier on the codes assigns to each class of ``classes``; ``accuracy`` the classifier's
    held-out accuracy on the atlas codes; ``covariance`` and ``components`` describe the mixture.
    """

    mixture: bytes
    prior: bytes
    mixture_shares: np.ndarray
    prior_shares: np.ndarray
    classes: tuple[int, ...]
    accuracy: float
    covariance: str
    components: int
    codes: int


@st.cache_resource(show_spinner="Fitting a Gaussian mixture per class …", max_entries=8)
def class_generators(
    model_key: str, data_key: str, _atlas: Atlas, *, components: int, seed: int
) -> tuple[dict[int, ClassMixture], CodeClassifier]:
    """Return one Gaussian mixture per class fitted to the atlas codes of (model, data), and a classifier on them.

    Shared read-only between sessions (scikit-learn estimators are not copied per call).
    """
    mixtures = fit_class_mixtures(_atlas.mu, _atlas.labels, components=components, seed=seed)
    return mixtures, fit_code_classifier(_atlas.mu, _atlas.labels, seed=seed)


@st.cache_data(show_spinner="Sampling and decoding …", max_entries=32)
def class_samples(
    model_key: str,
    data_key: str,
    _model: VAE,
    _atlas: Atlas,
    *,
    label: int,
    n: int,
    seed: int,
    components: int,
    temperature: float,
    ncols: int,
    scale: int,
) -> ClassSamples:
    """Decode ``n`` seeded samples of class ``label``'s mixture and ``n`` prior samples, and classify their codes.

    Both are drawn at ``temperature`` (their spreads scaled by it), so they compare fairly.
    """
    mixtures, classifier = class_generators(model_key, data_key, _atlas, components=components, seed=0)
    if label not in mixtures:
        raise ValueError(f"class {label} has fewer than 2 images in the atlas: nothing to fit a mixture to")
    mixture = mixtures[label]
    z_mix = sample_mixture(mixture, n=n, seed=seed, temperature=temperature)
    z_prior = sample_prior(_atlas.mu.shape[1], n=n, seed=seed, temperature=temperature)
    grids = [
        png_bytes(image_grid(decode_latents(_model, z), ncols=ncols, scale=scale)) for z in (z_mix, z_prior)
    ]
    return ClassSamples(
        *grids,
        classifier.shares(z_mix),
        classifier.shares(z_prior),
        classifier.classes,
        classifier.held_out_accuracy,
        mixture.covariance,
        len(mixture.weights),
        mixture.n,
    )


@st.cache_data(show_spinner=False, max_entries=32)
def attribute_walk(
    model_key: str,
    data_key: str,
    _model: VAE,
    z: np.ndarray,
    direction: Direction,
    *,
    strip_t: tuple[float, ...],
    gif_t: tuple[float, ...],
    gif_scale: int,
) -> tuple[bytes, bytes]:
    """Return (PNG strip at ``strip_t``, GIF at ``gif_t`` enlarged ``gif_scale`` times) of ``z`` moved along ``direction``.

    ``z`` and ``direction`` come from the atlas of (``model_key``, ``data_key``) or an image encoded by
    that model; neither depends on the slider, so moving it does not redraw them.
    """
    images = decode_latents(_model, walk(z, direction, ts=np.array(strip_t)))
    frames = decode_latents(_model, walk(z, direction, ts=np.array(gif_t)))
    gif = animation_gif(frames, scale=gif_scale, duration_ms=120, boomerang=True)
    return png_bytes(image_grid(images, ncols=len(images), scale=4)), gif
