"""Session state and the current model: which checkpoint, which images, and their atlas.

Every view asks here for the model (``require_model``), the images it analyses
(``require_eval_data``: the bundled sample, or the full test split when it is on disk and
the user chose it) and the atlas of that pair (``require_atlas``), so all pages show one
picture of the latent space with the same numbers.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import streamlit as st
import torch

from vae_app import cache, own_images
from vae_app.escape import md
from vae_core import autosave, limits
from vae_core.atlas import Atlas, build_atlas
from vae_core.checkpoints import LoadedCheckpoint, load_checkpoint
from vae_core.datasets import default_data_root
from vae_core.metrics import ELBO_ESTIMATOR
from vae_core.objective import beta_text, objective_text
from vae_core.safeload import CheckpointError
from vae_core.timeline import Timeline

ROOT = Path(__file__).resolve().parents[1]
PREFERRED_DEFAULT = "mnist-conv-16"
MODEL_KEY = "app_model"  # {"kind": "file", "path": str} or {"kind": "upload", "digest": str, "name": str}
# digest -> (name, LoadedCheckpoint) of the checkpoints uploaded in this session. They live in the
# session's own state, not a shared cache, so they are freed when the session ends.
UPLOADS_KEY = "app_uploads"
SCOPE_KEY = "app_scope"  # "sample" (bundled) or "test" (the dataset's full test split on disk)
RUNS_KEY = "app_session_runs"  # finished training runs of this session, newest last
MAX_CHECKPOINT_UPLOAD_MB = 200
RECONNECT_MARGIN_S = 10.0  # beyond Streamlit's reconnect window: a run notices a drop up to 2 s late
# This session's training run (a TrainingRun), its registry id (also the URL's ?run=) and its label.
TRAIN_RUN_KEY, TRAIN_RUN_ID_KEY, TRAIN_RUN_NAME_KEY = "train_run", "train_run_id", "train_run_name"
TRAIN_RUN_GONE_KEY = "train_run_gone"  # the URL named a run the server no longer holds
RUN_PARAM = "run"


class EvalData(NamedTuple):
    """Images a page analyses: uint8 (N, C, H, W), int64 labels, class names, a description, an identity.

    ``source`` is Markdown, its names from files already escaped; ``class_names`` are raw text.
    """

    images: torch.Tensor
    labels: torch.Tensor
    class_names: tuple[str, ...]
    source: str
    key: str
    bundled: bool


class SessionRun(NamedTuple):
    """A training run of this session, kept for the Training timeline page until the session ends."""

    name: str
    timeline: Timeline
    class_names: tuple[str, ...]


class SessionWatch:
    """Say, from any thread, whether a browser session may still come back for its training run.

    A dropped websocket is not a closed tab: Streamlit keeps a disconnected session for
    ``server.disconnectedSessionTTL`` seconds (two minutes by default) and the browser
    reconnects to it. So a session counts as gone only once it has stayed disconnected for
    longer than ``grace_s``, which covers that window. ``is_active_session`` is the one
    question about a session that Streamlit answers safely on any thread (its store of
    disconnected sessions is not thread-safe), so the disconnection is timed here.
    """

    def __init__(
        self, runtime, session_id: str, *, grace_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._runtime, self._session_id, self._grace_s, self._clock = runtime, session_id, grace_s, clock
        self._disconnected_since: float | None = None

    def __call__(self) -> bool:
        if self._runtime.is_active_session(self._session_id):
            self._disconnected_since = None
            return True
        now = self._clock()
        if self._disconnected_since is None:
            self._disconnected_since = now
        return now - self._disconnected_since <= self._grace_s


def session_alive_check() -> Callable[[], bool]:
    """Return a thread-safe check of whether this browser session is still there (see ``SessionWatch``).

    A training run that asks this stops once its session is really gone instead of training for
    nobody, and keeps going through a dropped connection. Outside a server it always says yes.
    """
    from streamlit.runtime import Runtime
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    if ctx is None or not Runtime.exists():
        return lambda: True
    ttl = float(st.get_option("server.disconnectedSessionTTL"))
    return SessionWatch(Runtime.instance(), ctx.session_id, grace_s=ttl + RECONNECT_MARGIN_S)


def session_key() -> str:
    """Return this browser session's id (``"local"`` outside a server), to key what it watches."""
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    return "local" if ctx is None else ctx.session_id


def watch_run(run_id: str, run, *, label: str) -> None:
    """Register a run about to start in the server's registry, watched by this session.

    The run belongs to the registry from now on: a reloaded or reopened tab with ``?run=<id>`` finds
    it again (``follow_run``), and the run stops only once no session watches it any more.
    """
    cache.run_registry().add(
        run_id, run, label=label, watcher_key=session_key(), watcher=session_alive_check()
    )


def own_run(run_id: str, run, *, label: str) -> None:
    """Make a started run this session's run and name it in the URL."""
    st.session_state[TRAIN_RUN_KEY] = run
    st.session_state[TRAIN_RUN_ID_KEY] = run_id
    st.session_state[TRAIN_RUN_NAME_KEY] = label
    st.session_state[TRAIN_RUN_GONE_KEY] = False
    st.query_params[RUN_PARAM] = run_id


def run_wanted(run_id: str) -> Callable[[], bool]:
    """Return the check a run asks every few seconds: does any session still watch ``run_id``?"""
    registry = cache.run_registry()
    return lambda: registry.wanted(run_id)


def follow_run() -> None:
    """Keep this session's run and the URL's ``?run=`` in step, on every page.

    A new session (a reloaded or reopened tab) whose URL names a run the server still holds
    watches that run and makes it its own; the URL of a session with a run names it, so a reload
    on any page finds it again.
    """
    named = st.query_params.get(RUN_PARAM)
    mine = st.session_state.get(TRAIN_RUN_ID_KEY)
    if named and named != mine:
        found = cache.run_registry().attach(named, watcher_key=session_key(), watcher=session_alive_check())
        if found is None:
            st.session_state[TRAIN_RUN_GONE_KEY] = True
            if mine:
                st.query_params[RUN_PARAM] = mine
            else:
                del st.query_params[RUN_PARAM]
            return
        own_run(found.run_id, found.run, label=found.label)
    elif mine and not named:
        st.query_params[RUN_PARAM] = mine


def autosave_dir() -> Path:
    """Return the folder of training autosaves: ``$VAE_AUTOSAVE_DIR`` or ``.autosave/`` in the checkpoint folder."""
    return autosave.autosave_dir(checkpoint_dir())


def checkpoint_dir() -> Path:
    """Return the folder of checkpoints: ``$VAE_CHECKPOINT_DIR`` or ``checkpoints/`` beside app.py."""
    return Path(os.environ.get("VAE_CHECKPOINT_DIR") or ROOT / "checkpoints")


def checkpoint_listing() -> tuple[list, list]:
    """Return (good infos, bad (path, reason)) for the checkpoint folder, re-read whenever a file changes."""
    folder = checkpoint_dir()
    signature = ()
    if folder.is_dir():
        signature = tuple(sorted((p.name, p.stat().st_mtime, p.stat().st_size) for p in folder.glob("*.pt")))
    return cache.listing(str(folder), signature)


def remember_upload(name: str, data: bytes) -> str:
    """Load an uploaded checkpoint into this session (freed when it ends); select it; return its digest.

    Raises:
        LimitError: The session already holds ``limits.MAX_SESSION_UPLOADS`` uploaded checkpoints,
            or this one would take it past ``limits.MAX_SESSION_UPLOAD_MB``; checked before loading.
        CheckpointError: The file is not a vae-explorer checkpoint, or is not one this machine loads.
    """
    digest = hashlib.sha256(data).hexdigest()[:16]
    uploads = st.session_state.setdefault(UPLOADS_KEY, {})
    if digest not in uploads:
        held = sum(loaded.info.size_bytes for _, loaded in uploads.values())
        limits.MAX_SESSION_UPLOADS.check(len(uploads) + 1, "this session", verb="would hold")
        limits.MAX_SESSION_UPLOAD_MB.check(held + len(data), "this session's uploads", verb="would take")
        uploads[digest] = (name, load_checkpoint(data))
    st.session_state[MODEL_KEY] = {"kind": "upload", "digest": digest, "name": name}
    return digest


def forget_uploads() -> None:
    """Drop this session's uploaded checkpoints (the selection falls back to a file)."""
    st.session_state.pop(UPLOADS_KEY, None)
    if (st.session_state.get(MODEL_KEY) or {}).get("kind") == "upload":
        st.session_state.pop(MODEL_KEY, None)


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
            return st.session_state.get(UPLOADS_KEY, {})[choice["digest"]][1]
        path = Path(choice["path"])
        return cache.model_file(str(path), path.stat().st_mtime)
    except (KeyError, FileNotFoundError):
        st.session_state.pop(MODEL_KEY, None)
        return None
    except CheckpointError as exc:
        st.session_state.pop(MODEL_KEY, None)
        st.error(f"The selected model could not be loaded: {md(exc)}")
        return None
    except Exception as exc:  # a hostile file must not reach Streamlit's error page
        st.session_state.pop(MODEL_KEY, None)
        st.error(f"The selected model could not be loaded: {type(exc).__name__}: {md(exc)}")
        return None


def beta_summary(info) -> str:
    """Return a checkpoint's β and KL warm-up as a short phrase (``CheckpointInfo``), e.g. "β = 4"."""
    warmup = info.train_config.kl_warmup_epochs if info.train_config is not None else 0
    return beta_text(beta=info.model_config.beta, warmup_epochs=warmup)


def objective_summary(info) -> str:
    """Return, in Markdown, the loss a checkpoint's model was trained on, as it was optimised."""
    warmup = info.train_config.kl_warmup_epochs if info.train_config is not None else 0
    return objective_text(beta=info.model_config.beta, warmup_epochs=warmup)


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


def bundled_data(loaded: LoadedCheckpoint) -> EvalData | None:
    """Return the checkpoint's bundled test images, or None when it carries none."""
    if loaded.sample is None:
        return None
    images, labels = loaded.sample
    key = loaded.atlas.data_key if loaded.atlas is not None else cache.sample_key(model_key(loaded), images)
    source = f"{len(images):,} test images bundled with the model"
    return EvalData(images, labels, tuple(loaded.info.class_names), source, key, True)


def test_split_data(loaded: LoadedCheckpoint) -> EvalData | None:
    """Return the model's dataset's full test split when it is on disk and larger than the bundled sample."""
    roots = tuple(str(r) for r in own_images.folder_roots())
    split = cache.test_split(loaded.info.dataset, str(default_data_root()), roots)
    if split is None or split.images.shape[1:] != loaded.info.model_config.image_shape:
        return None
    if loaded.sample is not None and len(split.images) <= len(loaded.sample.images):
        return None
    source = f"all {len(split.images):,} images of the {md(loaded.info.dataset)} test split"
    names = split.class_names or tuple(loaded.info.class_names)
    return EvalData(split.images, split.labels, names, source, split.key, False)


def eval_data(loaded: LoadedCheckpoint) -> EvalData | None:
    """Return the images to analyse: the full test split when chosen and on disk, else the bundled sample."""
    bundled = bundled_data(loaded)
    if st.session_state.get(SCOPE_KEY) == "test" or bundled is None:
        full = test_split_data(loaded)
        if full is not None:
            return full
    return bundled


def require_eval_data(loaded: LoadedCheckpoint) -> EvalData:
    """Return evaluation images or explain why there are none and stop the page."""
    data = eval_data(loaded)
    if data is None:
        st.warning(
            f"This model carries no sample of its data and the **{md(loaded.info.dataset)}** test split is not on "
            "disk. Point `VAE_DATA_DIR` at a folder that has it, or pick a model that bundles a sample "
            "(every shipped model and every model saved from the Train page does)."
        )
        st.stop()
    return data


def atlas_for(loaded: LoadedCheckpoint, data: EvalData, *, label: str = "") -> Atlas:
    """Return the atlas of ``loaded`` on ``data``: the stored one, else computed once (with progress) and kept.

    A stored atlas is used only when it describes exactly these images with the app's current
    -ELBO estimator; any other pair (model B on model A's images, the full test split) is
    computed under its own (model, data) key. ``label`` is Markdown (escape names from files).
    """
    stored = loaded.atlas
    if stored is not None and stored.data_key == data.key and stored.estimator == ELBO_ESTIMATOR:
        return stored
    store = cache.atlas_store()
    key = (model_key(loaded), data.key)
    found = store.get(key)
    if found is not None:
        return found
    name = label or md(loaded.info.name)
    with st.status(f"Mapping the latent space of {name} on {data.source} …", expanded=True) as status:
        bar = st.progress(0.0, text="starting")
        result = store.get_or_compute(
            key,
            lambda: build_atlas(
                loaded.model,
                data.images,
                data.labels,
                on_progress=lambda f, m: bar.progress(min(f, 1.0), text=m),
            ),
        )
        status.update(
            label=f"Mapped {len(result):,} images of {name} (kept for this server)",
            state="complete",
            expanded=False,
        )
    return result


def require_atlas(loaded: LoadedCheckpoint) -> tuple[EvalData, Atlas]:
    """Return the current evaluation images and their atlas, or explain the failure and stop the page."""
    data = require_eval_data(loaded)
    try:
        return data, atlas_for(loaded, data)
    except ValueError as exc:
        st.error(f"Could not map the latent space: {md(exc)}")
        st.stop()


def remember_run(run: SessionRun) -> None:
    """Keep a finished run's timeline for the rest of the session (a later run does not replace it)."""
    runs = st.session_state.setdefault(RUNS_KEY, [])
    if not any(r.name == run.name and len(r.timeline) == len(run.timeline) for r in runs):
        runs.append(run)


def session_runs() -> list[SessionRun]:
    """Return this session's finished runs, oldest first."""
    return list(st.session_state.get(RUNS_KEY, []))
