"""Training timeline: how the latent space and the prior samples changed, epoch by epoch, for a model or a run."""

from __future__ import annotations

import numpy as np
import streamlit as st

from vae_app import cache, figures, state, train_run
from vae_app.escape import md
from vae_app.teaching import export_scale_picker
from vae_app.widgets import show_images
from vae_core.geometry import timeline_projection
from vae_core.timeline import Timeline

SOURCE_KEY = "timeline_source"  # "model", "live" or "run:<i>" (an index into state.session_runs())
MAX_FRAMES = 60  # more epochs than this are thinned evenly (the last one always shown)
NO_TIMELINE = (
    "Start a run on the **Train** page: the timeline records each epoch, you can watch it here while it "
    "trains, and it is saved with the model."
)

st.title("Training timeline")
st.caption(
    "While a model trains, the app records after every epoch where a fixed set of test images lands in the "
    "latent space, and what 16 fixed random latent codes decode to; the record is saved with the model. Play "
    "the animation to watch the classes pull apart and the samples sharpen; drag the slider to any epoch; "
    "download both as GIFs."
)


def thinned(timeline: Timeline) -> Timeline:
    """Return at most MAX_FRAMES frames of ``timeline``, evenly spread, first and last kept."""
    frames = timeline.frames
    if len(frames) <= MAX_FRAMES:
        return timeline
    keep = np.unique(np.linspace(0, len(frames) - 1, MAX_FRAMES).round().astype(int))
    return Timeline(tuple(frames[i] for i in keep), timeline.labels)


def draw(timeline: Timeline, class_names: tuple[str, ...], note: str) -> None:
    """Draw the animated map, the prior samples of a chosen epoch and both GIFs for ``timeline`` (``note``: Markdown)."""
    shown = thinned(timeline)
    frames = shown.frames
    epochs = [f.epoch for f in frames]
    latent_dim = frames[-1].mu.shape[1]
    st.caption(f"{len(timeline)} epochs recorded ({note}).")
    left, right = st.columns([3, 2], gap="large")
    with left:
        st.subheader(f"Latent codes of {len(timeline.labels)} test images")
        fig = figures.timeline_animation(
            epochs, timeline_projection(frames), shown.labels, class_names, latent_dim=latent_dim
        )
        st.plotly_chart(fig, key="timeline_scatter")
        st.caption(
            "Each dot is one test image's mean code μ, coloured by its class."
            + (
                " The axes are the latent dimensions themselves."
                if latent_dim <= 2
                else f" The {latent_dim} dimensions are projected on the two main directions (PCA) of the last "
                "epoch, one fixed projection for all epochs, so movement is real."
            )
        )
    with right:
        st.subheader("Prior samples")
        source = st.session_state[SOURCE_KEY]
        epoch = st.select_slider("Epoch", epochs, value=epochs[-1], key=f"timeline_epoch_{source}")
        show_images(frames[epochs.index(epoch)].samples, ncols=4, scale=3)
        st.caption("The same 16 codes z ~ N(0, I) decoded after each epoch.")
    st.subheader("Animations")
    c_size, _ = st.columns([1, 3])
    with c_size:
        scale = export_scale_picker(key="timeline_export_scale", image_shape=frames[-1].samples.shape[1:])
    scatter_gif, prior_gif = cache.timeline_gifs(cache.timeline_key(shown), shown, class_names, scale)
    a, b = st.columns(2)
    a.image(scatter_gif, caption="Latent codes, epoch by epoch")
    a.download_button(
        "Download latent GIF", scatter_gif, "latent-timeline.gif", "image/gif", key="timeline_dl_latent"
    )
    b.image(prior_gif, caption="Prior samples, epoch by epoch")
    b.download_button(
        "Download samples GIF", prior_gif, "samples-timeline.gif", "image/gif", key="timeline_dl_prior"
    )


def draw_live(was_live: bool) -> None:
    """Draw the running run's timeline so far; rerun the page once when the run ends (it then joins the list)."""
    snap = run.snapshot()
    if was_live and snap.done:
        st.rerun(scope="app")
    if not snap.timeline:
        st.info("Waiting for the first epoch to finish …")
        return
    names = tuple(run.data.class_names) if run.data is not None else ()
    draw(
        Timeline(snap.timeline, snap.timeline_labels),
        names,
        f"live, refreshed every 2 seconds, {md(run_name)}",
    )


loaded = state.current_model()
run = st.session_state.get(train_run.RUN_KEY)
run_name = st.session_state.get(train_run.NAME_KEY, "this session's run")
if run is not None:
    train_run.remember_finished(run)
live = run is not None and not run.snapshot().done
runs = state.session_runs()
sources = {f"run:{i}": f"This session: {r.name} ({len(r.timeline)} epochs)" for i, r in enumerate(runs)}
if live:
    sources["live"] = f"This session: {run_name} (training now)"
if loaded is not None:
    has = f"{len(loaded.timeline)} epochs" if loaded.timeline is not None else "no timeline"
    sources["model"] = f"Current model: {loaded.info.name} ({has})"
if not sources:
    st.info(f"No model is loaded and no training run in this session yet. {NO_TIMELINE}")
    st.page_link("vae_app/views/train.py", label="Go to the Train page", icon=":material/model_training:")
    st.stop()
# The newest run of this session first (what was just trained), else the current model.
default = "live" if live else (f"run:{len(runs) - 1}" if runs else "model")
if st.session_state.get(SOURCE_KEY) not in sources:
    st.session_state[SOURCE_KEY] = default
source = st.selectbox(
    "Timeline of",
    list(sources),
    format_func=sources.get,
    key=SOURCE_KEY,
    help="The current model plays the timeline saved with it; runs of this session are kept until it ends, "
    "saved or not.",
)
if run is not None and run.snapshot().done and (run.timeline() is None or not run.timeline().frames):
    st.caption("This session's last run ended before it completed an epoch, so it recorded nothing.")

if source == "live":
    st.fragment(run_every=2.0)(draw_live)(True)
elif source == "model":
    if loaded.timeline is None:
        st.info(
            f"**{md(loaded.info.name)}** carries no training timeline: it was saved without one (before the app "
            f"recorded timelines, or outside the Train page). {NO_TIMELINE} To record one for this model, tick "
            "*Continue training the current model* there."
        )
        st.page_link("vae_app/views/train.py", label="Go to the Train page", icon=":material/model_training:")
    else:
        draw(loaded.timeline, tuple(loaded.info.class_names), f"saved with {md(loaded.info.name)}")
else:
    chosen = runs[int(source.removeprefix("run:"))]
    draw(chosen.timeline, chosen.class_names, f"{md(chosen.name)}, kept for this session")
