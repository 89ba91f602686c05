"""Encode: turn an uploaded image into a model input, show its code, its anomaly score and its neighbours."""

from __future__ import annotations

import io
import math

import numpy as np
import plotly.graph_objects as go
import streamlit as st
import torch
from PIL import Image, ImageDraw

import ui
from vae_core.datasets import to_float
from vae_core.geometry import PCAProjector, fit_pca, nearest_neighbours
from vae_core.imaging import to_pil, upscale
from vae_core.inference import encode_image
from vae_core.metrics import anomaly_verdict, per_sample_elbo, percentile_of
from vae_core.preprocess import IMAGE_SUFFIXES, MAX_UPLOAD_BYTES, PreparedImage, prepare_image

DRAWING = -1
UPLOAD_TYPES = [suffix.lstrip(".") for suffix in IMAGE_SUFFIXES]
PREVIEW_PX = 224
QUERY_SAMPLES = 16
NEIGHBOUR_COLUMNS = 4
NBSP = "\u00a0"
MB = 1024 * 1024  # Streamlit's upload limit counts in MiB

ui.ensure_framed(__file__)
st.title("Encode")
st.caption(
    "Give the model an image of your own and see what it makes of it: how the picture is turned into the "
    "kind of input the model was trained on, where the encoder places it in the latent space (μ, with its "
    "uncertainty σ), how well the decoder can rebuild it, how unusual it is compared with the test images, "
    "and which test images the model considers most similar."
)

loaded = ui.require_model()
data = ui.require_eval_data(loaded)
shape = loaded.info.model_config.image_shape
latent_dim = loaded.info.model_config.latent_dim
key = ui.model_key(loaded)


@st.cache_data(show_spinner=False, max_entries=16)
def prepared(content: bytes, image_shape: tuple[int, int, int], style: str) -> PreparedImage:
    """Turn uploaded bytes into a model input once per file, shape and style."""
    return prepare_image(content, image_shape=image_shape, style=style)


@st.cache_data(show_spinner=False)
def example_drawing() -> bytes:
    """Return a PNG of a thick black 7 on white paper, as someone might draw one."""
    img = Image.new("RGB", (240, 240), "white")
    ImageDraw.Draw(img).line([(60, 55), (180, 55), (105, 200)], fill=(20, 20, 30), width=20, joint="curve")
    buffer = io.BytesIO()
    img.save(buffer, format="PNG")
    return buffer.getvalue()


@st.cache_data(show_spinner="Scoring the test images …", max_entries=8)
def reference_scores(model_key: str, _loaded, _images: torch.Tensor, n: int) -> np.ndarray:
    """Return the -ELBO of the first ``n`` evaluation images, cached per model.

    One draw of z per image keeps this to seconds for 2,000 images; each estimate is unbiased,
    and the single image on the page averages QUERY_SAMPLES draws so its own noise is small.
    """
    return per_sample_elbo(_loaded.model, _images[:n], samples=1)


@st.cache_data(show_spinner=False, max_entries=8)
def reference_pca(model_key: str, n: int, _mu: np.ndarray) -> PCAProjector:
    """Return the PCA of the evaluation images' means, cached per model."""
    return fit_pca(_mu)


def enlarge(img: Image.Image) -> Image.Image:
    """Upscale a small preview crisply so it is about PREVIEW_PX wide."""
    return upscale(img, scale=max(1, math.ceil(PREVIEW_PX / max(img.size))))


def ordinal(value: float) -> str:
    n = round(value)
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


# ------------------------------------------------------------------------------------------ the input
first_of_class = {}
for index, label in enumerate(data.labels.tolist()):
    first_of_class.setdefault(int(label), index)
examples = [DRAWING] + [first_of_class[c] for c in sorted(first_of_class)][:12]
if st.session_state.get("encode_sample") not in examples:
    st.session_state["encode_sample"] = DRAWING


def example_label(choice: int) -> str:
    if choice == DRAWING:
        return "An example drawing: a 7 in black ink on white paper"
    return f"Test image #{choice} ({ui.class_name(data.class_names, int(data.labels[choice]))})"


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

content, name = None, None
if upload is not None:
    if upload.size > MAX_UPLOAD_BYTES:
        st.error(
            f"`{upload.name}` is {upload.size / MB:.1f} MB; the limit is {MAX_UPLOAD_BYTES // MB} MB. "
            "Upload a smaller image: a digit needs only a few hundred pixels a side."
        )
        st.stop()
    content, name = upload.getvalue(), f"`{upload.name}`"
elif choice == DRAWING:
    content, name = example_drawing(), "the example drawing"

st.subheader("1 · From your picture to the model's input")
if content is not None:
    result = None
    with ui.guard(f"read {name}"):
        result = prepared(content, shape, "mnist" if mnist_style else "plain")
    if result is None:
        st.stop()
    x = result.x
    step_cols = st.columns(max(len(result.steps), 4))
    for col, (label, img) in zip(step_cols, result.steps):
        col.image(enlarge(img), caption=label, width="stretch")
    notes = "\n".join(f"- {note}" for note in result.notes) or "- nothing needed changing"
    st.markdown(f"What was done to {name}:\n{notes}")
else:
    x = to_float(data.images[choice : choice + 1])
    st.caption("Test images are already in the model's format: no preprocessing needed.")

# -------------------------------------------------------------------------------------------- the code
encoded = None
with ui.guard("encode the image"):
    encoded = encode_image(loaded.model, x)
if encoded is None:
    st.stop()

st.subheader("2 · Its code")
pics_col, bars_col = st.columns([1, 3], gap="large")
with pics_col:
    ui.show_images(torch.cat([x, encoded.x_hat]), ncols=2, scale=5)
    st.caption("Left: the model's input. Right: its reconstruction, decoded from μ.")
with bars_col:
    dims = [f"z{i}" for i in range(latent_dim)]
    fig = go.Figure(
        go.Bar(
            x=dims,
            y=encoded.mu,
            error_y={"type": "data", "array": encoded.std, "visible": True},
            marker_color="#4f46e5",
            name="μ ± σ",
            hovertemplate="%{x}: μ = %{y:.2f}<extra></extra>",
        )
    )
    fig.add_hrect(
        y0=-1,
        y1=1,
        fillcolor="#94a3b8",
        opacity=0.18,
        line_width=0,
        annotation_text="prior N(0, 1): ±1",
        annotation_position="top left",
    )
    fig.update_layout(
        height=300,
        margin={"l": 10, "r": 10, "t": 20, "b": 10},
        xaxis_title="latent dimension",
        yaxis_title="μ (error bar: σ)",
        showlegend=False,
    )
    st.plotly_chart(fig, width="stretch")
    st.caption(
        "Each bar is where the encoder puts this image along one latent axis; the error bar is its "
        "uncertainty σ. The grey band is where the prior N(0, I) keeps about two thirds of its mass."
    )

# --------------------------------------------------------------------------------- how typical is it?
st.subheader("3 · How typical is it?")
reference = reference_scores(key, loaded, data.images, len(data.images))
score = float(per_sample_elbo(loaded.model, x, samples=QUERY_SAMPLES)[0])
percentile = percentile_of(score, reference)
verdict = anomaly_verdict(percentile)
score_col, hist_col = st.columns([1, 2], gap="large")
with score_col:
    st.metric("−ELBO of this image", f"{score:.1f} nats", help="Lower means the model explains it better.")
    st.metric(
        "Percentile among the test images",
        ordinal(percentile),
        help="The share of test images the model explains better than this one.",
    )
    show = st.success if verdict.level == "typical" else st.warning
    show(
        verdict.message,
        icon=":material/check_circle:" if verdict.level == "typical" else ":material/warning:",
    )
with hist_col:
    hist = go.Figure(go.Histogram(x=reference, nbinsx=40, marker_color="#94a3b8", name="test images"))
    hist.add_vline(
        x=score, line_color="#dc2626", line_width=3, annotation_text="this image", annotation_position="top"
    )
    hist.update_layout(
        height=280,
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        showlegend=False,
        bargap=0.05,
        xaxis_title="−ELBO (nats; lower = better explained)",
        yaxis_title="test images",
    )
    st.plotly_chart(hist, width="stretch")
    st.caption(f"The grey histogram scores the {data.source}; the red line is your image.")

# -------------------------------------------------------------------- where it lands, and its neighbours
st.subheader("4 · Where it lands, and its nearest neighbours")
mu_ref, _ = ui.encoded(key, loaded, data.images, len(data.images))
if latent_dim == 2:
    coords, point, titles = mu_ref, encoded.mu[None], ("z0", "z1")
else:
    projector = reference_pca(key, len(mu_ref), mu_ref)
    coords, point, titles = (
        projector.transform(mu_ref),
        projector.transform(encoded.mu),
        projector.axis_titles,
    )
labels = data.labels.numpy()
map_col, nn_col = st.columns([3, 2], gap="large")
with map_col:
    fig = go.Figure()
    for label in np.unique(labels):
        mask = labels == label
        fig.add_scatter(
            x=coords[mask, 0],
            y=coords[mask, 1],
            mode="markers",
            marker={"size": 5, "opacity": 0.55},
            name=ui.class_name(data.class_names, int(label)),
        )
    fig.add_scatter(
        x=point[:, 0],
        y=point[:, 1],
        mode="markers",
        name="this image",
        marker={"symbol": "star", "size": 24, "color": "#111827", "line": {"color": "white", "width": 2}},
    )
    fig.update_layout(
        height=460,
        margin={"l": 10, "r": 10, "t": 20, "b": 10},
        xaxis_title=titles[0],
        yaxis_title=titles[1],
        legend={"title": "class"},
    )
    st.plotly_chart(fig, width="stretch")
    how = "the two latent dimensions" if latent_dim == 2 else "their first two principal components (PCA)"
    st.caption(f"The means μ of the {data.source}, drawn by {how}; the star is your image.")


@st.fragment
def neighbours(query: np.ndarray, exclude: int | None) -> None:
    """Show the k evaluation images whose means are closest to ``query``."""
    k = st.slider("Neighbours to show", 1, 24, 8, key="encode_k")
    index, distance = nearest_neighbours(query, mu_ref, k=k + (exclude is not None))
    keep = [(i, d) for i, d in zip(index.tolist(), distance.tolist()) if i != exclude][:k]
    for row in range(0, len(keep), NEIGHBOUR_COLUMNS):
        for col, (i, d) in zip(st.columns(NEIGHBOUR_COLUMNS), keep[row : row + NEIGHBOUR_COLUMNS]):
            # No-break spaces: a narrow caption wraps only before "d = ...".
            cls = ui.class_name(data.class_names, int(data.labels[i])).replace(" ", NBSP)
            caption = f"#{i}{NBSP}·{NBSP}{cls}, d{NBSP}={NBSP}{d:.2f}"
            col.image(upscale(to_pil(data.images[i]), scale=4), caption=caption, width="stretch")
    st.caption(
        f"The test images whose μ is closest to this image's μ (Euclidean distance d in the latent space), "
        f"searched among the {data.source}."
    )


with nn_col:
    neighbours(encoded.mu, None if content is not None else int(choice))
