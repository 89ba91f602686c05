"""Latent map: encode test images, project their codes to two dimensions, and inspect a selection."""

import time
from collections import Counter

import numpy as np
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

import ui
from vae_core.geometry import project, selected_indices
from vae_core.inference import decode_latents, projection_cache
from vae_core.metrics import per_sample_elbo

MAX_SELECTED = 32
COLOURS = px.colors.qualitative.T10 + px.colors.qualitative.Alphabet
METHODS = {"direct": "direct", "two chosen dims": "direct", "PCA": "pca", "t-SNE": "tsne"}

ui.ensure_framed(__file__)
st.title("Latent map")
st.caption(
    "Each dot is one test image, placed by the code μ the encoder gives it and coloured by its true class. "
    "Images the model finds alike land close together, so well-separated clusters mean the latent space has "
    "sorted the data without ever seeing a label. Click a dot, or drag a box or lasso (top-right tools), to see "
    "those images next to the model's reconstructions."
)

loaded = ui.require_model()
model, info = loaded.model, loaded.info
d = info.model_config.latent_dim
data = ui.require_eval_data(loaded)
key = ui.model_key(loaded)
available = len(data.images)
if d < 2:
    st.info("This model has a one-dimensional latent space: there is no plane to map it onto.")
    st.stop()

# Another model starts from its own defaults: direct for a 2-D latent, else PCA, and up to 2,000 images.
methods = ["direct", "PCA", "t-SNE"] if d == 2 else ["PCA", "t-SNE", "two chosen dims"]
if st.session_state.get("latent_map_model") != key:
    st.session_state["latent_map_model"] = key
    st.session_state["latent_map_method"] = methods[0]
    st.session_state["latent_map_n"] = min(2000, available)
    st.session_state["latent_map_dim_x"], st.session_state["latent_map_dim_y"] = 0, 1
# Widget values are forgotten when the user visits another page; come back to the same defaults.
for k, default in (
    ("latent_map_method", methods[0]),
    ("latent_map_n", min(2000, available)),
    ("latent_map_dim_x", 0),
    ("latent_map_dim_y", 1),
):
    st.session_state.setdefault(k, default)

c_n, c_method, c_extra, c_colour = st.columns([2, 3, 3, 3])
n = int(
    c_n.number_input(
        "Images",
        min_value=min(10, available),
        max_value=available,
        step=100 if available >= 1000 else 10,
        key="latent_map_n",
        help=f"How many of the {data.source} to encode and show.",
    )
)
method = c_method.radio(
    "Projection",
    methods,
    horizontal=True,
    key="latent_map_method",
    help="PCA keeps the two directions of largest spread; t-SNE keeps neighbours together "
    "but distorts distances between clusters.",
)
perplexity, dims = 30, (0, 1)
if method == "t-SNE":
    perplexity = c_extra.slider(
        "Perplexity",
        5,
        50,
        30,
        key="latent_map_perplexity",
        help="Roughly how many neighbours each point keeps close. Higher means more global.",
    )
elif method == "two chosen dims":
    dx, dy = c_extra.columns(2)
    dims = (
        dx.selectbox("x", range(d), key="latent_map_dim_x", format_func=lambda i: f"z{i}"),
        dy.selectbox("y", range(d), key="latent_map_dim_y", format_func=lambda i: f"z{i}"),
    )
colour = c_colour.radio(
    "Colour by",
    ["class", "−ELBO (anomaly score)"],
    horizontal=True,
    key="latent_map_colour",
    help="−ELBO is how badly the model explains an image; the highest are its oddest images.",
)
if dims[0] == dims[1]:
    st.warning("Pick two different dimensions.")
    st.stop()


@st.cache_data(show_spinner="Scoring images …", max_entries=8)
def elbo_scores(model_key: str, _loaded, _images, n: int) -> np.ndarray:
    return per_sample_elbo(_loaded.model, _images[:n])


def projection(mu: np.ndarray):
    """Return the cached projection of ``mu``, computing it (with progress for t-SNE) on a first view."""
    cache_key = (key, n, METHODS[method], float(perplexity) if method == "t-SNE" else None, dims)
    found = projection_cache.get(cache_key)
    if found is not None:
        return found
    if method != "t-SNE":
        return projection_cache.get_or_compute(
            cache_key, lambda: project(mu, method=METHODS[method], dims=dims)
        )
    with st.status(f"Running t-SNE on {n:,} codes …", expanded=True) as status:
        bar = st.progress(0.0, text="starting")
        started = time.perf_counter()
        result = projection_cache.get_or_compute(
            cache_key,
            lambda: project(
                mu,
                method="tsne",
                perplexity=perplexity,
                on_progress=lambda f, message: bar.progress(f, text=message),
            ),
        )
        status.update(
            label=f"t-SNE of {n:,} codes took {time.perf_counter() - started:.1f} s (now cached)",
            state="complete",
            expanded=False,
        )
    return result


proj = None
with ui.guard("project the codes"):
    mu, _ = ui.encoded(key, loaded, data.images, n)
    proj = projection(mu)
if proj is None:
    st.stop()

labels = data.labels[:n].numpy()
names = np.array([ui.class_name(data.class_names, int(c)) for c in labels])
trace = go.Scattergl if n > 1000 else go.Scatter
fig = go.Figure()
if colour == "class":
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        fig.add_trace(
            trace(
                x=proj.coords[idx, 0],
                y=proj.coords[idx, 1],
                mode="markers",
                name=str(names[idx[0]]),
                customdata=idx,
                marker={"size": 5, "opacity": 0.8, "color": COLOURS[int(c) % len(COLOURS)]},
                hovertemplate=f"{names[idx[0]]}<br>index %{{customdata}}<extra></extra>",
            )
        )
else:
    score = elbo_scores(key, loaded, data.images, n)
    fig.add_trace(
        trace(
            x=proj.coords[:, 0],
            y=proj.coords[:, 1],
            mode="markers",
            customdata=np.arange(n),
            text=names,
            marker={
                "size": 5,
                "opacity": 0.85,
                "color": score,
                "colorscale": "Viridis",
                "colorbar": {"title": {"text": "−ELBO (nats)"}},
            },
            hovertemplate="%{text}<br>index %{customdata}<br>−ELBO %{marker.color:.1f} nats<extra></extra>",
        )
    )
fig.update_layout(
    height=640,
    margin={"l": 50, "r": 10, "t": 40, "b": 50},
    dragmode="lasso",
    legend={
        "title": {"text": "class "},
        "itemsizing": "constant",
        "orientation": "h",
        "y": 1.02,
        "yanchor": "bottom",
    },
    xaxis_title=proj.axis_titles[0],
    yaxis_title=proj.axis_titles[1],
)

chart_col, pick_col = st.columns([3, 2], gap="large")
with chart_col:
    event = st.plotly_chart(
        fig, on_select="rerun", selection_mode=("points", "box", "lasso"), key="latent_map_chart"
    )
    st.caption(f"{n:,} codes from {data.source}, projected with {method}.")
with pick_col:
    points = (event or {}).get("selection", {}).get("points", [])
    picked = selected_indices(points, size=n)
    if len(picked) == 0:
        st.subheader("Selection")
        st.info("Nothing selected yet. Click a dot, or drag a box or lasso around a group of dots.")
    else:
        st.subheader(f"{len(picked):,} selected")
        counts = Counter(names[picked].tolist())
        st.caption("By class: " + " · ".join(f"{name} ×{count}" for name, count in counts.most_common()))
        # Plotly lists the points trace by trace, i.e. class by class: show a spread over the whole selection.
        ordered = np.sort(picked)
        shown = ordered[np.linspace(0, len(ordered) - 1, min(len(ordered), MAX_SELECTED)).round().astype(int)]
        with ui.guard("reconstruct the selection"):
            left, right = st.columns(2)
            with left:
                ui.show_images(data.images[shown], ncols=4, scale=2, caption="Test images")
            with right:
                ui.show_images(decode_latents(model, mu[shown]), ncols=4, scale=2, caption="Reconstructions")
        if len(picked) > MAX_SELECTED:
            st.caption(f"Showing {MAX_SELECTED} of the {len(picked):,}, spread over the selection.")
