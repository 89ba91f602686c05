"""Compare: two checkpoints on the same test images, their latent maps, figures and reconstructions."""

from pathlib import Path

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

import ui
from vae_core.datasets import to_float
from vae_core.export import traversal_sheet
from vae_core.geometry import project
from vae_core.inference import decode_latents, encode
from vae_core.metrics import model_summary

COLOURS = px.colors.qualitative.T10 + px.colors.qualitative.Alphabet
RECONSTRUCTIONS = 8
TILE_PX = 84

ui.ensure_framed(__file__)
st.title("Compare")
st.caption(
    "Put two trained models side by side on exactly the same test images: where each one places them in its "
    "latent space, how well each explains them (lower −ELBO is better), how many latent dimensions each "
    "really uses, and how each redraws the same eight inputs."
)

good, _ = ui.checkpoint_listing()
if len(good) < 2:
    st.info(
        "Comparing needs at least two checkpoints in the checkpoints folder. Train another model on the "
        "**Train** page and save it."
    )
    st.stop()
paths = [str(info.path) for info in good]
infos = {str(info.path): info for info in good}
current = st.session_state.get(ui.MODEL_KEY) or ui.default_choice() or {}
if st.session_state.get("compare_a") not in paths:
    st.session_state["compare_a"] = current.get("path") if current.get("path") in paths else paths[0]
if st.session_state.get("compare_b") not in paths:
    # Prefer a partner trained on the same data as A.
    others = [p for p in paths if p != st.session_state["compare_a"]]
    same_data = [p for p in others if infos[p].dataset == infos[st.session_state["compare_a"]].dataset]
    st.session_state["compare_b"] = (same_data or others)[0]


def describe(path: str) -> str:
    info = infos[path]
    return f"{info.name} ({info.dataset}, {info.model_config.arch}, z = {info.model_config.latent_dim})"


c_a, c_b, c_n = st.columns([4, 4, 2])
path_a = c_a.selectbox("Model A", paths, key="compare_a", format_func=describe)
path_b = c_b.selectbox("Model B", paths, key="compare_b", format_func=describe)
if path_a == path_b:
    st.warning("Pick two different checkpoints.")
    st.stop()

loaded_a = loaded_b = None
with ui.guard("load the two models"):
    loaded_a = ui.load_model_file(path_a, Path(path_a).stat().st_mtime)
    loaded_b = ui.load_model_file(path_b, Path(path_b).stat().st_mtime)
if loaded_a is None or loaded_b is None:
    st.stop()
shape_a, shape_b = loaded_a.info.model_config.image_shape, loaded_b.info.model_config.image_shape
if shape_a != shape_b:
    st.error(
        f"These models read different images: {loaded_a.info.name} takes {shape_a[1]}×{shape_a[2]} pixels with "
        f"{shape_a[0]} channel(s), {loaded_b.info.name} {shape_b[1]}×{shape_b[2]} with {shape_b[0]}. Pick two "
        "models trained on the same kind of images."
    )
    st.stop()

data = ui.require_eval_data(loaded_a)
available = len(data.images)
st.session_state["compare_n"] = min(int(st.session_state.get("compare_n", 1000)), available)
n = int(
    c_n.number_input(
        "Test images",
        min_value=min(10, available),
        max_value=available,
        step=100 if available >= 1000 else 10,
        key="compare_n",
        help=f"Both models see the same images: the first ones of {data.source} (from model A).",
    )
)
if loaded_a.info.dataset != loaded_b.info.dataset:
    st.warning(
        f"Model A was trained on {loaded_a.info.dataset} and model B on {loaded_b.info.dataset}; both are "
        f"shown model A's test images, which model B has never seen the like of."
    )
key_a, key_b = ui.model_key(loaded_a), ui.model_key(loaded_b)


@st.cache_data(show_spinner="Evaluating …", max_entries=16)
def summary_of(model_key: str, _loaded, _images, n: int):
    return model_summary(_loaded.model, _images[:n])


@st.cache_data(show_spinner="Projecting the codes …", max_entries=16)
def map_of(model_key: str, mu: np.ndarray):
    return project(mu, method="direct" if mu.shape[1] == 2 else "pca")


labels = data.labels[:n].numpy()
names = np.array([ui.class_name(data.class_names, int(c)) for c in labels])
summaries = {}
for column, loaded, key, tag in zip(st.columns(2, gap="large"), (loaded_a, loaded_b), (key_a, key_b), "AB"):
    with column, ui.guard(f"map model {tag}"):
        st.subheader(f"{tag}: {loaded.info.name}")
        mu, _ = ui.encoded(key, loaded, data.images, n)
        summaries[tag] = summary_of(key, loaded, data.images, n)
        if mu.shape[1] < 2:
            st.info("A one-dimensional latent space has no plane to map.")
            continue
        proj = map_of(key, mu)
        fig = go.Figure()
        for c in np.unique(labels):
            idx = np.flatnonzero(labels == c)
            fig.add_trace(
                go.Scattergl(
                    x=proj.coords[idx, 0],
                    y=proj.coords[idx, 1],
                    mode="markers",
                    name=str(names[idx[0]]),
                    marker={"size": 4, "opacity": 0.8, "color": COLOURS[int(c) % len(COLOURS)]},
                    hovertemplate=f"{names[idx[0]]}<extra></extra>",
                )
            )
        fig.update_layout(
            height=420,
            margin={"l": 50, "r": 10, "t": 10, "b": 50},
            legend={"title": {"text": "class"}, "itemsizing": "constant"},
            xaxis_title=proj.axis_titles[0],
            yaxis_title=proj.axis_titles[1],
        )
        st.plotly_chart(fig, width="stretch", key=f"compare_map_{tag}")
        st.caption(
            "Its two latent dimensions as they are."
            if proj.method == "direct"
            else "First two principal components of μ."
        )

st.subheader("Figures")


def stored(info, name: str, digits: int = 2) -> str:
    value = info.metrics.get(name)
    return "—" if value is None else f"{value:.{digits}f}"


if len(summaries) == 2:
    rows = {
        "dataset": lambda i, s: i.dataset,
        "architecture": lambda i, s: f"{i.model_config.arch}, {i.model_config.likelihood} decoder",
        "latent dimensions": lambda i, s: str(s.latent_dim),
        "parameters": lambda i, s: f"{s.parameters:,}",
        "epochs trained": lambda i, s: str(i.epochs),
        f"−ELBO on these {n:,} images (nats)": lambda i, s: f"{s.elbo.total:.2f}",
        "of which reconstruction (nats)": lambda i, s: f"{s.elbo.recon:.2f}",
        "of which KL (nats)": lambda i, s: f"{s.elbo.kl:.2f}",
        "active units": lambda i, s: f"{s.active} of {s.latent_dim}",
        "saved test −ELBO (nats)": lambda i, s: stored(i, "test_total"),
        "saved test NLL (nats)": lambda i, s: (
            stored(i, "test_nll") + (f" (K = {int(i.metrics['nll_k'])})" if "nll_k" in i.metrics else "")
        ),
    }
    table = pd.DataFrame(
        {
            f"A: {loaded_a.info.name}": [f(loaded_a.info, summaries["A"]) for f in rows.values()],
            f"B: {loaded_b.info.name}": [f(loaded_b.info, summaries["B"]) for f in rows.values()],
        },
        index=list(rows),
    )
    st.table(table)
    st.caption(
        "The −ELBO, its parts and the active units are computed here on the same test images for both models; "
        "the saved figures come from each checkpoint and may use different images."
    )

st.subheader("The same inputs, reconstructed")
with ui.guard("reconstruct the inputs"):
    pick = np.linspace(0, n - 1, RECONSTRUCTIONS).round().astype(int)
    x = data.images[pick]
    strips = [to_float(x)]
    for loaded in (loaded_a, loaded_b):
        strips.append(decode_latents(loaded.model, encode(loaded.model, x).mu))
    scale = max(1, round(TILE_PX / max(shape_a[1:])))
    st.image(
        traversal_sheet(
            np.stack([strip.numpy() for strip in strips]),
            row_labels=["input", f"A: {loaded_a.info.name}", f"B: {loaded_b.info.name}"],
            scale=scale,
        ),
        output_format="PNG",
    )
    st.caption(
        "Top: test images. Below: each model's decoding of the image's code μ. Sharper, more faithful rows "
        "mean more information passes through the latent space."
    )
