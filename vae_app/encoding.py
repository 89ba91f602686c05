"""The Encode page's panels for one image: its code, how typical it is, where it lands and its neighbours.

The page shows them for a drawing (inside the canvas's fragment, so a stroke reruns only that), an upload,
the example drawing or a test image.
"""

from __future__ import annotations

import numpy as np
import streamlit as st
import torch

from vae_app import charts, figures, widgets
from vae_app.state import EvalData
from vae_core.atlas import Atlas
from vae_core.checkpoints import LoadedCheckpoint
from vae_core.inference import decode_latents, encode_image
from vae_core.metrics import anomaly_verdict, per_image_elbo


def show(x: torch.Tensor, row: int | None, *, loaded: LoadedCheckpoint, data: EvalData, atlas: Atlas) -> None:
    """Show the code of ``x`` (1, C, H, W), its score, its place on the map and its neighbours.

    Args:
        x: the model's input, uint8 or float in [0, 1].
        row: the atlas row of a test image (its code, -ELBO and place come from the atlas), or None for a
            new image (encoded, scored with the atlas's estimator and placed on its map here).
        loaded: the current model; ``data`` and ``atlas``: the images the page analyses and their atlas.
    """
    point = None
    with widgets.guard("encode the image"):
        if row is None:  # a new image: scored with the atlas's estimator and placed on its map
            mu, std, x_hat, _ = encode_image(loaded.model, x)
            score, point = float(per_image_elbo(loaded.model, x).total[0]), atlas.place(mu)
        else:  # a test image: the atlas's own code, -ELBO and map position, as on the Latent map
            mu, std, x_hat = atlas.mu[row], atlas.std[row], decode_latents(loaded.model, atlas.mu[row])
            score, point = float(atlas.elbo[row]), atlas.coords[row : row + 1]
    if point is None:
        return
    st.subheader("2 · Its code")
    pics_col, bars_col = st.columns([1, 3], gap="large")
    with pics_col:
        widgets.show_images(torch.cat([x, x_hat]), ncols=2, scale=5)
        st.caption("Left: the model's input. Right: its reconstruction, decoded from μ.")
    with bars_col:
        st.plotly_chart(charts.mu_sigma_bars(mu, std), width="stretch", key="encode_bars")
        st.caption(
            "Each bar is where the encoder puts this image along one latent axis; the error bar is its "
            "uncertainty σ. The grey band is where the prior N(0, I) keeps about two thirds of its mass."
        )

    st.subheader("3 · How typical is it?")
    percentile = atlas.percentile(score)
    score_col, hist_col = st.columns([1, 2], gap="large")
    with score_col:
        st.metric("−ELBO of this image", f"{score:.1f} nats", help=widgets.ELBO_HELP)
        st.metric(
            "Percentile among the test images",
            widgets.ordinal(percentile),
            help="The share of test images the model explains better than this one.",
        )
        widgets.verdict_box(anomaly_verdict(percentile))
    with hist_col:
        st.plotly_chart(
            charts.elbo_histogram(atlas.elbo, value=score), width="stretch", key="encode_histogram"
        )
        st.caption(f"The grey histogram scores the {data.source}; the red line is your image.")

    st.subheader("4 · Where it lands, and its nearest neighbours")
    map_col, nn_col = st.columns([3, 2], gap="large")
    with map_col:
        star = figures.Marker(point, "this image")
        fig = figures.latent_map(atlas, data.class_names, markers=[star], height=460)
        st.plotly_chart(fig, width="stretch", key="encode_map")
        st.caption(f"{widgets.map_caption(atlas, data.source)} The star is your image.")
    with nn_col:
        neighbours(mu, row, data=data, atlas=atlas)


@st.fragment
def neighbours(query: np.ndarray, exclude: int | None, *, data: EvalData, atlas: Atlas) -> None:
    """Show the k atlas images whose means are closest to ``query`` (D,), leaving out row ``exclude``."""
    k = st.slider("Neighbours to show", 1, 24, 8, key="encode_k")
    index, distance = atlas.neighbours(query, k=k + (exclude is not None))
    found = [(i, d) for i, d in zip(index.tolist(), distance.tolist()) if i != exclude][:k]
    widgets.neighbour_grid(data.images, atlas.labels, data.class_names, found)
    st.caption(
        f"The test images whose μ is closest to this image's μ (Euclidean distance d in the latent space), "
        f"searched among the {data.source}."
    )
