"""Encode: turn an image into a model input, show its code, its anomaly score and where it lands on the map."""

import numpy as np
import streamlit as st
import torch

from vae_app import cache, charts, figures, state, widgets
from vae_app.escape import code
from vae_core.datasets import to_float
from vae_core.inference import decode_latents, encode_image
from vae_core.metrics import anomaly_verdict, per_image_elbo
from vae_core.preprocess import IMAGE_SUFFIXES, MAX_UPLOAD_BYTES

DRAWING = -1
UPLOAD_TYPES = [suffix.lstrip(".") for suffix in IMAGE_SUFFIXES]
MB = 1024 * 1024  # Streamlit's upload limit counts in MiB

st.title("Encode")
st.caption(
    "Give the model an image of your own and see what it makes of it: how the picture is turned into the "
    "kind of input the model was trained on, where the encoder places it in the latent space (μ, with its "
    "uncertainty σ), how well the decoder can rebuild it, how unusual it is compared with the test images, "
    "and which test images the model considers most similar."
)

loaded = state.require_model()
data, atlas = state.require_atlas(loaded)
shape = loaded.info.model_config.image_shape

_, first_of_class = np.unique(atlas.labels, return_index=True)
examples = [DRAWING] + first_of_class[:12].tolist()
st.session_state.setdefault("encode_sample", DRAWING)
if st.session_state["encode_sample"] not in examples:
    st.session_state["encode_sample"] = DRAWING


def example_label(choice: int) -> str:
    if choice == DRAWING:
        return "An example drawing: a 7 in black ink on white paper"
    return f"Test image #{choice} ({figures.class_name(data.class_names, int(atlas.labels[choice]))})"


upload_col, example_col = st.columns([3, 2], gap="large")
with upload_col:
    upload = st.file_uploader(
        "Upload an image (PNG, JPEG, WebP, BMP, or the first frame of a GIF)",
        type=UPLOAD_TYPES,
        key="encode_upload",
        max_upload_size=MAX_UPLOAD_BYTES // MB,
        help=f"At most {MAX_UPLOAD_BYTES // MB} MB. A photo of a digit on paper works.",
    )
with example_col:
    choice = st.selectbox(
        "…or try an example",
        examples,
        key="encode_sample",
        format_func=example_label,
        disabled=upload is not None,
    )
    mnist_style = st.toggle(
        "Centre and scale like MNIST",
        value=shape == (1, 28, 28),
        key="encode_mnist_style",
        help="On: invert a light background, crop to the ink, scale it into a 20x20 box and centre it by "
        "its centre of mass, as MNIST digits were made. Off: crop the middle to the model's aspect and resize.",
    )
    if upload is not None:
        st.caption("Using your upload; remove it to try the examples.")

content, name, row = None, None, None  # row: the atlas row of a test image, whose numbers the atlas holds
if upload is not None:
    if upload.size > MAX_UPLOAD_BYTES:
        st.error(
            f"{code(upload.name)} is {upload.size / MB:.1f} MB; the limit is {MAX_UPLOAD_BYTES // MB} MB. "
            "Upload a smaller image: a digit needs only a few hundred pixels a side."
        )
        st.stop()
    content, name = upload.getvalue(), code(upload.name)  # Markdown: a file name is data
elif choice == DRAWING:
    content, name = cache.example_drawing(), "the example drawing"
else:
    row = int(choice)

st.subheader("1 · From your picture to the model's input")
if content is not None:
    result = None
    with widgets.guard(f"read {name}"):
        result = cache.prepared_image(content, shape, "mnist" if mnist_style else "plain")
    if result is None:
        st.stop()
    x = result.x
    widgets.preparation_steps(result, name)
else:
    x = to_float(data.images[row : row + 1])
    st.caption("Test images are already in the model's format: no preprocessing needed.")

point = None
with widgets.guard("encode the image"):
    if row is None:  # a new image: scored with the atlas's estimator and placed on its map
        mu, std, x_hat, _ = encode_image(loaded.model, x)
        score, point = float(per_image_elbo(loaded.model, x).total[0]), atlas.place(mu)
    else:  # a test image: the atlas's own code, -ELBO and map position, as on the Latent map
        mu, std, x_hat = atlas.mu[row], atlas.std[row], decode_latents(loaded.model, atlas.mu[row])
        score, point = float(atlas.elbo[row]), atlas.coords[row : row + 1]
if point is None:
    st.stop()

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
    st.plotly_chart(charts.elbo_histogram(atlas.elbo, value=score), width="stretch", key="encode_histogram")
    st.caption(f"The grey histogram scores the {data.source}; the red line is your image.")

st.subheader("4 · Where it lands, and its nearest neighbours")
map_col, nn_col = st.columns([3, 2], gap="large")
with map_col:
    star = figures.Marker(point, "this image")
    fig = figures.latent_map(atlas, data.class_names, markers=[star], height=460)
    st.plotly_chart(fig, width="stretch", key="encode_map")
    st.caption(f"{widgets.map_caption(atlas, data.source)} The star is your image.")


@st.fragment
def neighbours(query, exclude: int | None) -> None:
    """Show the k atlas images whose means are closest to ``query`` (D,), leaving out row ``exclude``."""
    k = st.slider("Neighbours to show", 1, 24, 8, key="encode_k")
    index, distance = atlas.neighbours(query, k=k + (exclude is not None))
    found = [(i, d) for i, d in zip(index.tolist(), distance.tolist()) if i != exclude][:k]
    widgets.neighbour_grid(data.images, atlas.labels, data.class_names, found)
    st.caption(
        f"The test images whose μ is closest to this image's μ (Euclidean distance d in the latent space), "
        f"searched among the {data.source}."
    )


with nn_col:
    neighbours(mu, row)
