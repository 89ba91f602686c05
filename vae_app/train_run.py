"""This session's training run: start it, say how it ended, save it, and keep its timeline for the session."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from vae_app import state
from vae_core.bundle import save_trained, test_metrics
from vae_core.checkpoints import LoadedCheckpoint
from vae_core.datasets import available_offline
from vae_core.runs import RunSnapshot, TrainingRun

RUN_KEY, NAME_KEY, COUNT_KEY = "train_run", "train_run_name", "train_run_count"
NLL_K, NLL_IMAGES = 50, 500


def begin(run: TrainingRun, resumed: LoadedCheckpoint | None) -> None:
    """Make a started ``run`` this session's run, keeping the previous one's timeline first."""
    previous = st.session_state.get(RUN_KEY)
    if previous is not None:
        remember_finished(previous)
    count = st.session_state.get(COUNT_KEY, 0) + 1
    cfg = run.model_config
    what = f"{resumed.info.name} continued" if resumed is not None else run.train_config.dataset
    st.session_state[COUNT_KEY] = count
    st.session_state[NAME_KEY] = f"run {count}: {what} · {cfg.arch.upper()} · z = {cfg.latent_dim}"
    st.session_state[RUN_KEY] = run


def remember_finished(run: TrainingRun) -> None:
    """Keep an ended run's timeline for the session (saved or not), when it recorded at least one epoch."""
    timeline = run.timeline()
    if not run.snapshot().done or timeline is None or not timeline.frames:
        return
    names = tuple(run.data.class_names) if run.data is not None else ()
    state.remember_run(state.SessionRun(st.session_state.get(NAME_KEY, "run"), timeline, names))


def save_run(run: TrainingRun, snap: RunSnapshot, target: Path) -> Path:
    """Measure the run's test figures, then save it with its sample's atlas and its timeline, showing progress."""
    n = len(run.data.test_x)
    with st.status(f"Saving `{target.name}` …", expanded=True) as status:
        bar = st.progress(
            0.0, text=f"Importance-weighted NLL with K = {NLL_K} on {min(n, NLL_IMAGES):,} test images"
        )
        metrics = test_metrics(
            run.model, run.data.test_x, nll_k=NLL_K, nll_images=NLL_IMAGES, on_progress=bar.progress
        )
        bar.progress(0.0, text="Mapping the latent space of the bundled sample")
        path = save_trained(
            target,
            model=run.model,
            data=run.data,
            train_config=run.train_config,
            history=snap.history,
            metrics=metrics,
            timeline=run.timeline(),
            on_progress=lambda f, m: bar.progress(min(max(f, 0.0), 1.0), text=m),
        )
        status.update(label=f"Saved `{path.name}`", state="complete", expanded=False)
    return path


def outcome(snap: RunSnapshot) -> None:
    """Say how an ended run ended, in plain words."""
    epochs, error = len(snap.history), snap.error or "unknown error"
    if snap.status == "finished":
        st.success(f"Finished: {epochs} epochs trained. Save the model below to explore it.")
    elif snap.status == "stopped":
        st.info(f"Stopped. Kept the model after epoch {epochs}, the last complete epoch.")
    elif error.startswith("DatasetUnavailable: "):
        st.error(error.removeprefix("DatasetUnavailable: ").replace("\n", "  \n"))
        st.info(
            f"Datasets that work offline now: **{', '.join(available_offline())}**. Pick one and start again."
        )
    elif "non-finite" in snap.message:
        st.error(f"Training stopped because the loss became infinite or NaN. {error}")
    else:
        st.error(f"Training failed: {error}")
