"""Train: configure a VAE, train it in a background thread with live charts, stop it, save it."""

from __future__ import annotations

import numpy as np
import streamlit as st

from vae_app import charts, figures, state, train_form, train_run
from vae_app.escape import code, md
from vae_app.widgets import guard, show_images
from vae_core.datasets import available_offline
from vae_core.geometry import timeline_projection
from vae_core.naming import checkpoint_path, sanitize_name
from vae_core.runs import RunSnapshot, TrainingRun

RUN_KEY, SAVED_KEY = train_run.RUN_KEY, train_run.SAVED_KEY

st.title("Train a VAE")
st.caption(
    "Pick a dataset and a model, then press **Start training**. Training runs in the background: the chart "
    "shows the loss after every epoch (solid: training images, dashed: held-out test images), and the pictures "
    "show how well the model redraws test images, where test images land in the latent space and what it "
    "invents from random latent codes. You can visit other pages or reload the tab meanwhile: the run keeps "
    "going, and the page's address (it ends in ?run=…) finds it again. When it ends, save the model to explore "
    "it on the other pages."
)
st.session_state.setdefault(RUN_KEY, None)
st.session_state.setdefault(SAVED_KEY, None)


def draw_run(run: TrainingRun, was_live: bool) -> None:
    """Draw the run's progress; rerun the whole page once when it ends, so the Save section appears."""
    snap = run.snapshot()
    if was_live and snap.done:
        st.rerun(scope="app")
    if snap.status in ("pending", "loading"):
        text = f"Loading {md(run.train_config.dataset)} …"
    elif snap.done:
        text = f"{len(snap.history)} of {snap.epochs} epochs trained"
    else:
        text = f"Epoch {snap.epoch} of {snap.epochs} · step {snap.step} of {snap.steps_per_epoch} · "
        text += train_run.summary_text(snap)
    # Two containers, so the chart and pictures keep their places whatever the status lines above them say.
    head, body = st.container(), st.container()
    head.progress(snap.progress, text=text)
    if not snap.done and head.button("Stop", key="train_stop", icon=":material/stop:"):
        run.stop()
        head.caption("Stopping at the next step; the model keeps its last complete epoch.")
    with head:
        if snap.epochs_note:
            st.caption(md(snap.epochs_note) + ".")
        train_run.autosave_note(snap)
    if snap.done:
        with head:
            train_run.outcome(snap)
    with body:
        draw_results(snap, tuple(run.data.class_names) if run.data is not None else ())


def draw_results(snap: RunSnapshot, class_names: tuple[str, ...]) -> None:
    """Draw the latest figures, the loss chart, reconstructions, and the map and samples of the latest epoch."""
    if snap.history:
        last = snap.history[-1]
        previous = snap.history[-2]["val_total"] if len(snap.history) > 1 else None
        cols = st.columns(4)
        cols[0].metric("Epoch", int(last["epoch"]))
        delta = None if previous is None else f"{last['val_total'] - previous:+.1f}"
        cols[1].metric("Test −ELBO (nats)", f"{last['val_total']:.1f}", delta=delta, delta_color="inverse")
        cols[2].metric("Test KL (nats)", f"{last['val_kl']:.1f}")
        cols[3].metric("Images per second", f"{last['images_per_second']:,.0f}")
        st.plotly_chart(charts.loss_curves(snap.history), key="train_chart")
    if snap.reconstructions is not None and snap.originals is not None:
        show_images(
            np.concatenate([snap.originals, snap.reconstructions]),
            ncols=len(snap.originals),
            scale=2,
            caption="Top: test images. Bottom: the model's reconstructions after the latest epoch.",
        )
    if snap.timeline:
        # One frame holds both the codes and the decoded prior grid: the map and the samples show the same epoch.
        frame = snap.timeline[-1]
        d = frame.mu.shape[1]
        map_col, grid_col = st.columns([3, 2])
        fig = figures.timeline_map(
            timeline_projection([frame])[0], snap.timeline_labels, class_names, latent_dim=d
        )
        map_col.plotly_chart(fig, key="train_map")
        map_col.caption(f"Where {len(frame.mu)} test images land (their μ) after epoch {frame.epoch}.")
        with grid_col:
            show_images(frame.samples, ncols=4, scale=2)
            st.caption(
                f"16 fixed random codes z ~ N(0, I) decoded after epoch {frame.epoch}: watch them sharpen."
            )
    elif not snap.done:
        st.caption("Reconstructions, the latent map and samples appear after the first epoch.")


def save_section(run: TrainingRun, snap: RunSnapshot) -> None:
    """Offer to save a run that ended with at least one good epoch."""
    good = snap.status in ("finished", "stopped") or "non-finite" in snap.message
    if run.model is None or run.data is None or not snap.history or not good:
        return
    st.subheader("Save this model")
    folder = state.checkpoint_dir()
    name = st.text_input("Name", train_run.suggested_name(run, folder), key="train_save_name")
    try:
        st.caption(
            f"Will be saved as {code(f'{folder.name}/{sanitize_name(name)}.pt')}, with its training timeline."
        )
    except ValueError as exc:
        st.caption(f"Not a usable name: {md(exc)}.")
    # A fresh checkbox after every save, so "replace" never stays ticked for the next name.
    saves = st.session_state.setdefault("train_save_count", 0)
    overwrite = st.checkbox("Replace a model of the same name", key=f"train_save_overwrite_{saves}")
    if not st.button("Save model", key="train_save", type="primary", icon=":material/save:"):
        return
    # A failed attempt must not leave an earlier "Saved to" above its error.
    st.session_state[SAVED_KEY] = None
    path = None
    with guard("save the model"):
        target = checkpoint_path(folder, name, overwrite=overwrite, allow_shipped=False)
        # The name is claimed again when the file is written: another session may take it meanwhile.
        path = train_run.save_run(run, snap, target, overwrite=overwrite)
    if path is not None:
        state.select_model_file(path)
        st.session_state[SAVED_KEY] = str(path)
        st.session_state["train_save_count"] = saves + 1
        st.rerun()  # the sidebar lists the new file and shows it as the current model


offline = available_offline()
loaded = state.current_model()
settings, live = st.columns([1, 2], gap="large")
with settings:
    request = train_form.settings_form(offline, loaded)
    if request is not None and train_form.start(request, loaded, offline):
        st.session_state[SAVED_KEY] = None

with live:
    train_run.interrupted_section()  # runs a killed server or a closed tab left unsaved
    run = st.session_state[RUN_KEY]
    train_run.gone_note()
    if run is None:
        st.info("No run yet. Choose the settings on the left and press **Start training**.")
    else:
        snap = run.snapshot()
        st.fragment(run_every=None if snap.done else 1.0)(draw_run)(run, not snap.done)
        train_run.settings_table(run)
        snap = run.snapshot()
        if snap.done:
            train_run.remember_finished(run)
            save_section(run, snap)
        if st.session_state[SAVED_KEY]:
            st.success(
                f"Saved to {code(st.session_state[SAVED_KEY])}. It is now the current model in the sidebar, "
                "so every page shows it."
            )
            st.page_link(
                "vae_app/views/latent_map.py", label="See its latent map", icon=":material/scatter_plot:"
            )
