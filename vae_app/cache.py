"""Every cached computation of the app, keyed by model identity AND data identity.

Models are ``st.cache_resource`` objects shared by every session: read-only (loaded in eval
mode without gradients); training always builds its own model. Atlases computed in the app
(a model without a stored one, the full test split, model B on model A's images) live in one
thread-safe LRU store keyed by (model key, data key), so the same image always gets the same
numbers and one model's codes are never served for another model's images.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import NamedTuple

import streamlit as st
import torch

from vae_core.atlas import Atlas, images_key
from vae_core.checkpoints import LoadedCheckpoint, list_checkpoints, load_checkpoint
from vae_core.datasets import DatasetUnavailable, load_dataset
from vae_core.preprocess import PreparedImage, prepare_image

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


@st.cache_resource(show_spinner="Loading the uploaded model …", max_entries=4)
def model_bytes(digest: str, _data: bytes) -> LoadedCheckpoint:
    """Load uploaded checkpoint bytes once per content digest; shared read-only."""
    return load_checkpoint(_data)


class TestSplit(NamedTuple):
    """A dataset's test split read from disk: uint8 images, int64 labels, class names, identity."""

    images: torch.Tensor
    labels: torch.Tensor
    class_names: tuple[str, ...]
    key: str


@st.cache_resource(show_spinner="Reading the test split …", max_entries=4)
def test_split(name: str, data_root: str) -> TestSplit | None:
    """Return a dataset's test split on disk (shared read-only), or None when it is not there."""
    try:
        data = load_dataset(name, root=data_root, download=False)
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
