"""Streamlit glue shared by app.py and the pages: the current model, cached loaders, display helpers.

Models are cached with ``st.cache_resource`` and shared by every session: they are
read-only here (``load_checkpoint`` returns them in eval mode without gradients) and
training always builds its own model.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import numpy as np
import streamlit as st
import torch

from vae_core.checkpoints import CheckpointError, LoadedCheckpoint, list_checkpoints, load_checkpoint
from vae_core.data import DatasetUnavailable, ImageError, load_dataset
from vae_core.imaging import image_grid, to_uint8  # noqa: F401  (pages use ui.to_uint8)
from vae_core.latent import encode

ROOT = Path(__file__).resolve().parent
PREFERRED_DEFAULT = "mnist-conv-16"
MODEL_KEY = "app_model"  # {"kind": "file", "path": str} or {"kind": "upload", "digest": str, "name": str}
UPLOADS_KEY = "app_uploads"  # digest -> (name, bytes) of checkpoints uploaded in this session
MAX_CHECKPOINT_UPLOAD_MB = 200
FRAMED_KEY = "app_framed"  # set by app.py before it runs a page
WANTED_PAGE_KEY = "app_wanted_page"  # a deep-linked page to open once app.py has run


def ensure_framed(page_file: str) -> None:
    """Send a page that Streamlit ran without app.py through app.py, then back to this page.

    Until some session has run app.py (and so ``st.navigation``), Streamlit serves the
    ``pages/`` folder as a classic multipage app: a direct link such as ``/train`` on a
    freshly started server would run the page alone, without the sidebar or the layout.
    """
    if not st.session_state.get(FRAMED_KEY):
        st.session_state[WANTED_PAGE_KEY] = Path(page_file).resolve().relative_to(ROOT).as_posix()
        st.switch_page("app.py")


def session_alive_check() -> Callable[[], bool]:
    """Return a thread-safe check of whether this browser session is still open.

    Streamlit closes a session some time after its tab disconnects; a training run that
    asks this stops then instead of training for nobody. Outside a server it always says yes.
    """
    from streamlit.runtime import Runtime
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    if ctx is None or not Runtime.exists():
        return lambda: True
    session_id, runtime = ctx.session_id, Runtime.instance()
    return lambda: runtime.is_active_session(session_id)


class EvalData(NamedTuple):
    """Images a page can analyse: uint8 (N, C, H, W), int64 labels, where they came from."""

    images: torch.Tensor
    labels: torch.Tensor
    class_names: tuple[str, ...]
    source: str


def _folder_signature(folder: Path) -> tuple[tuple[str, float, int], ...]:
    if not folder.is_dir():
        return ()
    return tuple(sorted((p.name, p.stat().st_mtime, p.stat().st_size) for p in folder.glob("*.pt")))


@st.cache_data(show_spinner=False, max_entries=8)
def _listing(folder: str, signature: tuple) -> tuple[list, list]:
    listing = list_checkpoints(Path(folder))
    return listing.good, listing.bad


def checkpoint_dir() -> Path:
    """Return the folder of checkpoints: ``$VAE_CHECKPOINT_DIR`` or ``checkpoints/`` beside app.py."""
    return Path(os.environ.get("VAE_CHECKPOINT_DIR") or ROOT / "checkpoints")


def checkpoint_listing() -> tuple[list, list]:
    """Return (good infos, bad (path, reason)) for the checkpoint folder, re-read whenever a file changes."""
    folder = checkpoint_dir()
    return _listing(str(folder), _folder_signature(folder))


@st.cache_resource(show_spinner="Loading the model …", max_entries=8)
def load_model_file(path: str, mtime: float) -> LoadedCheckpoint:
    """Load a checkpoint file once per path and modification time; shared read-only."""
    return load_checkpoint(path)


@st.cache_resource(show_spinner="Loading the uploaded model …", max_entries=4)
def load_model_bytes(digest: str, _data: bytes) -> LoadedCheckpoint:
    """Load uploaded checkpoint bytes once per content digest; shared read-only."""
    return load_checkpoint(_data)


def remember_upload(name: str, data: bytes) -> str:
    """Validate and keep an uploaded checkpoint in this session; select it; return its digest."""
    digest = hashlib.sha256(data).hexdigest()[:16]
    load_model_bytes(digest, data)  # raises CheckpointError for anything that is not ours
    st.session_state.setdefault(UPLOADS_KEY, {})[digest] = (name, data)
    st.session_state[MODEL_KEY] = {"kind": "upload", "digest": digest, "name": name}
    return digest


def select_model_file(path: Path) -> None:
    """Make the checkpoint at ``path`` the current model (the sidebar follows on the next run)."""
    st.session_state[MODEL_KEY] = {"kind": "file", "path": str(path)}


def default_choice() -> dict | None:
    """Return the model selection used before the user picks one: the shipped conv model if present."""
    good, _ = checkpoint_listing()
    if not good:
        return None
    preferred = [i for i in good if i.name == PREFERRED_DEFAULT] or good
    return {"kind": "file", "path": str(preferred[0].path)}


def current_model() -> LoadedCheckpoint | None:
    """Return the selected model, falling back to the default; None when there is none."""
    choice = st.session_state.get(MODEL_KEY) or default_choice()
    if choice is None:
        return None
    try:
        if choice["kind"] == "upload":
            name, data = st.session_state.get(UPLOADS_KEY, {})[choice["digest"]]
            return load_model_bytes(choice["digest"], data)
        path = Path(choice["path"])
        return load_model_file(str(path), path.stat().st_mtime)
    except (KeyError, FileNotFoundError):
        st.session_state.pop(MODEL_KEY, None)
        return None
    except CheckpointError as exc:
        st.session_state.pop(MODEL_KEY, None)
        st.error(f"The selected model could not be loaded: {exc}")
        return None


def model_key(loaded: LoadedCheckpoint) -> str:
    """Return a string that identifies the model's weights, for keying cached results."""
    info = loaded.info
    if info.path is not None:
        return f"{info.path}:{info.mtime}"
    return f"upload:{info.name}:{info.created}:{info.size_bytes}"


def require_model() -> LoadedCheckpoint:
    """Return the current model, or explain how to get one and stop the page."""
    loaded = current_model()
    if loaded is None:
        st.info(
            "No model is loaded yet. Train one on the **Train** page, or upload a checkpoint (.pt) in the sidebar."
        )
        st.stop()
    return loaded


@st.cache_data(show_spinner="Reading the evaluation data …", max_entries=8)
def _dataset_test_split(name: str) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]] | None:
    try:
        data = load_dataset(name, download=False)
    except (DatasetUnavailable, ValueError, OSError):
        return None
    return data.test_x.numpy(), data.test_y.numpy(), tuple(data.class_names)


def eval_data(loaded: LoadedCheckpoint) -> EvalData | None:
    """Return images to analyse: the checkpoint's bundled test sample, else its dataset's test split on disk."""
    info = loaded.info
    if loaded.sample is not None:
        return EvalData(
            loaded.sample.images,
            loaded.sample.labels,
            tuple(info.class_names),
            f"{len(loaded.sample.images):,} test images bundled with the model",
        )
    split = _dataset_test_split(info.dataset)
    if split is None:
        return None
    images, labels, class_names = split
    return EvalData(
        torch.from_numpy(images),
        torch.from_numpy(labels),
        class_names or tuple(info.class_names),
        f"{len(images):,} images of the {info.dataset} test split",
    )


def require_eval_data(loaded: LoadedCheckpoint) -> EvalData:
    """Return evaluation images or explain why there are none and stop the page."""
    data = eval_data(loaded)
    if data is None:
        st.warning(
            f"This model carries no sample of its data and the **{loaded.info.dataset}** test split is not on "
            "disk. Point `VAE_DATA_DIR` at a folder that has it, or pick a model that bundles a sample "
            "(every shipped model and every model saved from the Train page does)."
        )
        st.stop()
    return data


@st.cache_data(show_spinner="Encoding images …", max_entries=16)
def encoded(
    key: str, _loaded: LoadedCheckpoint, _images: torch.Tensor, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """Return (mu, logvar) as numpy (n, D) for the first ``n`` images; cached per model key and n."""
    posterior = encode(_loaded.model, _images[:n])
    return posterior.mu.numpy(), posterior.logvar.numpy()


def show_images(
    images, *, ncols: int, caption: str | None = None, scale: int = 3, width: str = "content"
) -> None:
    """Draw uint8 or [0, 1] images (N, C, H, W) as one crisp grid."""
    # PNG: the default (JPEG for greyscale) blurs crisp pixel grids.
    st.image(image_grid(images, ncols=ncols, scale=scale), caption=caption, width=width, output_format="PNG")


def class_name(class_names: tuple[str, ...], label: int) -> str:
    """Return a readable class name for an integer label."""
    return class_names[label] if 0 <= label < len(class_names) else str(label)


@contextmanager
def guard(action: str) -> Iterator[None]:
    """Show any failure inside the block as a one-line message instead of a traceback."""
    try:
        yield
    except (CheckpointError, DatasetUnavailable, ImageError, ValueError) as exc:
        st.error(f"Could not {action}: {exc}")
    except Exception as exc:  # a page must never show a traceback
        st.error(f"Could not {action}: {type(exc).__name__}: {exc}")
