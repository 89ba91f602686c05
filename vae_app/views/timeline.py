"""Training timeline: how the latent space and the prior samples changed, epoch by epoch, in this session's run."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import streamlit as st

import ui
from vae_core.geometry import timeline_projection
from vae_core.imaging import gif_bytes, image_grid, label_colour, scatter_frames
from vae_core.runs import RunSnapshot, TrainingRun

GIF_KEY = "timeline_gifs"
MAX_FRAMES = 60  # more epochs than this are thinned evenly (the last one always shown)

ui.ensure_framed(__file__)
st.title("Training timeline")
st.caption(
    "While a model trains, the app records after every epoch where a fixed set of test images lands in the "
    "latent space, and what 16 fixed random latent codes decode to. Play the animations to watch the classes pull "
    "apart and the samples sharpen; drag the slider to any epoch; download both as GIFs."
)

run: TrainingRun | None = st.session_state.get("train_run")
if run is None:
    st.info(
        "No training run in this session yet. Start a run on the **Train** page; the timeline records each "
        "epoch, and you can watch it here while it trains."
    )
    st.page_link("pages/train.py", label="Go to the Train page", icon=":material/model_training:")
    st.stop()


def scatter_figure(epochs: list[int], coords: list[np.ndarray], labels: np.ndarray, names, axes) -> go.Figure:
    """An animated scatter: one frame per epoch, one trace per class, fixed axes, slider and play button."""
    classes = sorted({int(v) for v in labels})

    def traces(xy: np.ndarray) -> list[go.Scatter]:
        return [
            go.Scatter(
                x=xy[labels == c, 0],
                y=xy[labels == c, 1],
                mode="markers",
                name=ui.class_name(names, c),
                marker={"color": "rgb({},{},{})".format(*label_colour(c)), "size": 6, "opacity": 0.8},
            )
            for c in classes
        ]

    fig = go.Figure(
        data=traces(coords[-1]),
        frames=[go.Frame(data=traces(xy), name=str(e)) for e, xy in zip(epochs, coords)],
    )
    stacked = np.concatenate(coords)
    lo, hi = stacked.min(axis=0), stacked.max(axis=0)
    margin = np.maximum(hi - lo, 1e-3) * 0.05
    fig.update_xaxes(range=[lo[0] - margin[0], hi[0] + margin[0]], title_text=axes[0], zeroline=False)
    fig.update_yaxes(range=[lo[1] - margin[1], hi[1] + margin[1]], title_text=axes[1], zeroline=False)
    still = {"frame": {"duration": 0, "redraw": False}, "mode": "immediate", "transition": {"duration": 0}}
    play = {
        "frame": {"duration": 500, "redraw": False},
        "fromcurrent": False,
        "transition": {"duration": 300},
    }
    fig.update_layout(
        height=520,
        margin={"l": 10, "r": 10, "t": 50, "b": 10},
        legend={"title": {"text": "class"}},
        sliders=[
            {
                "active": len(epochs) - 1,
                "currentvalue": {"prefix": "epoch "},
                "pad": {"t": 50},
                "steps": [{"label": str(e), "method": "animate", "args": [[str(e)], still]} for e in epochs],
            }
        ],
        updatemenus=[
            {
                "type": "buttons",
                "direction": "left",
                "x": 0,
                "y": 1.02,
                "xanchor": "left",
                "yanchor": "bottom",
                "showactive": False,
                "buttons": [
                    {"label": "▶ Play", "method": "animate", "args": [None, play]},
                    {"label": "❚❚ Pause", "method": "animate", "args": [[None], still]},
                ],
            }
        ],
    )
    return fig


def gifs(snap: RunSnapshot, frames, coords: list[np.ndarray], names) -> tuple[bytes, bytes]:
    """Return (latent scatter GIF, prior samples GIF), rebuilt only when a new epoch arrives."""
    cached = st.session_state.get(GIF_KEY)
    if cached is not None and cached[0] is run and cached[1] == len(snap.timeline):
        return cached[2], cached[3]
    titles = [f"epoch {f.epoch}" for f in frames]
    scatter = gif_bytes(
        scatter_frames(coords, snap.timeline_labels, titles=titles, class_names=names), duration_ms=400
    )
    prior = gif_bytes([image_grid(f.samples, ncols=4, scale=3) for f in frames], duration_ms=400)
    st.session_state[GIF_KEY] = (run, len(snap.timeline), scatter, prior)
    return scatter, prior


def draw(was_live: bool) -> None:
    """Draw both animations for the run's timeline so far; rerun the page once when the run ends."""
    snap = run.snapshot()
    if was_live and snap.done:
        st.rerun(scope="app")
    if not snap.timeline:
        st.info(
            "Waiting for the first epoch to finish …"
            if not snap.done
            else "This run ended before it completed an epoch, so there is nothing to show. Start another one."
        )
        return
    frames = snap.timeline
    if len(frames) > MAX_FRAMES:
        keep = np.unique(np.linspace(0, len(frames) - 1, MAX_FRAMES).round().astype(int))
        frames = tuple(frames[i] for i in keep)
    epochs = [f.epoch for f in frames]
    state = "live, refreshed every 2 seconds" if not snap.done else snap.status
    st.caption(f"{len(snap.timeline)} epochs recorded ({state}) for {run.train_config.dataset}.")
    names = tuple(run.data.class_names) if run.data is not None else ()
    latent_dim = frames[-1].mu.shape[1]
    axes = ("z0", "z1") if latent_dim <= 2 else ("PC 1", "PC 2")
    coords = timeline_projection(frames)
    left, right = st.columns([3, 2], gap="large")
    with left:
        st.subheader(f"Latent codes of {len(snap.timeline_labels)} test images")
        st.plotly_chart(
            scatter_figure(epochs, coords, snap.timeline_labels, names, axes), key="timeline_scatter"
        )
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
        epoch = st.select_slider("Epoch", epochs, value=epochs[-1], key="timeline_epoch")
        ui.show_images(frames[epochs.index(epoch)].samples, ncols=4, scale=3)
        st.caption("The same 16 codes z ~ N(0, I) decoded after each epoch.")
    scatter_gif, prior_gif = gifs(snap, frames, coords, names)
    st.subheader("Animations")
    a, b = st.columns(2)
    a.image(scatter_gif, caption="Latent codes, epoch by epoch")
    a.download_button(
        "Download latent GIF", scatter_gif, "latent-timeline.gif", "image/gif", key="timeline_dl_latent"
    )
    b.image(prior_gif, caption="Prior samples, epoch by epoch")
    b.download_button(
        "Download samples GIF", prior_gif, "samples-timeline.gif", "image/gif", key="timeline_dl_prior"
    )


live = not run.snapshot().done
st.fragment(run_every=2.0 if live else None)(draw)(live)
