"""Compare: two checkpoints on the same test images, their latent maps, figures and reconstructions."""

from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from vae_app import cache, charts, figures, state
from vae_app.escape import md
from vae_app.widgets import ELBO_HELP, guard, map_caption
from vae_core.datasets import to_float
from vae_core.export import traversal_sheet
from vae_core.inference import decode_latents
from vae_core.metrics import model_summary_of

RECONSTRUCTIONS = 8
TILE_PX = 84

st.title("Compare")
st.caption(
    "Put two trained models side by side on exactly the same test images: where each one places them in its "
    "latent space, how well each explains them (lower −ELBO is better), how many latent dimensions each "
    "really uses, and how each redraws the same eight inputs."
)

good, _ = state.checkpoint_listing()
if len(good) < 2:
    st.info(
        "Comparing needs at least two checkpoints in the checkpoints folder. Train another model on the "
        "**Train** page and save it."
    )
    st.stop()
paths = [str(info.path) for info in good]
infos = {str(info.path): info for info in good}
current = st.session_state.get(state.MODEL_KEY) or state.default_choice() or {}
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


c_a, c_b = st.columns(2)
path_a = c_a.selectbox("Model A", paths, key="compare_a", format_func=describe)
path_b = c_b.selectbox("Model B", paths, key="compare_b", format_func=describe)
if path_a == path_b:
    st.warning("Pick two different checkpoints.")
    st.stop()

loaded_a = loaded_b = None
with guard("load the two models"):
    loaded_a = cache.model_file(path_a, Path(path_a).stat().st_mtime)
    loaded_b = cache.model_file(path_b, Path(path_b).stat().st_mtime)
if loaded_a is None or loaded_b is None:
    st.stop()
shape_a, shape_b = loaded_a.info.model_config.image_shape, loaded_b.info.model_config.image_shape
if shape_a != shape_b:
    st.error(
        f"These models read different images: {md(loaded_a.info.name)} takes {shape_a[1]}×{shape_a[2]} pixels "
        f"with {shape_a[0]} channel(s), {md(loaded_b.info.name)} {shape_b[1]}×{shape_b[2]} with {shape_b[0]}. Pick two "
        "models trained on the same kind of images."
    )
    st.stop()

# Both models on model A's evaluation images; B's atlas of them is kept under (B, A's images), never B's own.
data = state.require_eval_data(loaded_a)
if loaded_a.info.dataset != loaded_b.info.dataset:
    st.warning(
        f"Model A was trained on {md(loaded_a.info.dataset)} and model B on {md(loaded_b.info.dataset)}; both are "
        f"shown model A's test images, which model B has never seen the like of."
    )
atlases = {}
for column, loaded, tag in zip(st.columns(2, gap="large"), (loaded_a, loaded_b), "AB"):
    with column, guard(f"map model {tag}"):
        st.subheader(f"{tag}: {md(loaded.info.name)}")
        atlas = state.atlas_for(loaded, data, label=f"model {tag} ({md(loaded.info.name)})")
        fig = figures.latent_map(atlas, data.class_names, height=420)
        st.plotly_chart(fig, width="stretch", key=f"compare_map_{tag}")
        st.caption(map_caption(atlas, f"{len(atlas):,} evaluation images of model A"))
        atlases[tag] = atlas

if len(atlases) < 2:
    st.stop()


def stored(info, name: str, digits: int = 2) -> str:
    value = info.metrics.get(name)
    return "—" if value is None else f"{value:.{digits}f}"


st.subheader("Figures")
n = len(atlases["A"])
summaries = {
    tag: model_summary_of(mu=a.mu, recon=a.recon, kl=a.kl, parameters=loaded.model.num_parameters())
    for (tag, a), loaded in zip(atlases.items(), (loaded_a, loaded_b))
}
rows = {
    "dataset": lambda i, s: md(i.dataset),  # st.table renders Markdown in cells
    "architecture": lambda i, s: f"{i.model_config.arch}, {i.model_config.likelihood} decoder",
    "latent dimensions": lambda i, s: str(s.latent_dim),
    "parameters": lambda i, s: f"{s.parameters:,}",
    "epochs trained": lambda i, s: str(i.epochs),
    "KL weight (trained with)": lambda i, s: state.beta_summary(i),
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
        f"{tag}: {md(loaded.info.name)}": [f(loaded.info, summaries[tag]) for f in rows.values()]
        for tag, loaded in zip("AB", (loaded_a, loaded_b))
    },
    index=list(rows),
)
st.table(table)
st.caption(
    f"The −ELBO, its parts and the active units are computed here on the same {n:,} images for both "
    "models (means of the per-image figures each model's map shows); the saved figures come from each "
    f"checkpoint and may use different images. {ELBO_HELP}"
)

st.subheader("How they trained")
histories = {tag: loaded.info.history for tag, loaded in zip("AB", (loaded_a, loaded_b))}
if all(histories.values()):
    st.plotly_chart(charts.loss_overlay(histories), key="compare_history")
    st.caption(
        f"Model A ({md(loaded_a.info.name)}) and model B ({md(loaded_b.info.name)}) as their checkpoints recorded "
        "them, in nats per image: solid on each model's test images, dotted on its training images "
        "(β = 1 figures, whatever β it trained with)."
    )
else:
    st.info("At least one of these checkpoints records no training history.")

st.subheader("The same inputs, reconstructed")
with guard("reconstruct the inputs"):
    pick = np.linspace(0, len(data.images) - 1, RECONSTRUCTIONS).round().astype(int)
    strips = [to_float(data.images[pick])] + [
        decode_latents(loaded.model, atlases[tag].mu[pick]) for tag, loaded in zip("AB", (loaded_a, loaded_b))
    ]
    st.image(
        traversal_sheet(
            np.stack([strip.numpy() for strip in strips]),
            row_labels=["input", f"A: {loaded_a.info.name}", f"B: {loaded_b.info.name}"],
            scale=max(1, round(TILE_PX / max(shape_a[1:]))),
        ),
        output_format="PNG",
    )
    st.caption(
        "Top: test images. Below: each model's decoding of the image's code μ. Sharper, more faithful rows "
        "mean more information passes through the latent space."
    )
