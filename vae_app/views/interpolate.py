"""Interpolate: encode two images, walk the latent space between their means, and decode the path."""

from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st
import torch

import ui
from vae_core.geometry import interpolate, log_prior
from vae_core.imaging import gif_bytes, png_bytes, strip, to_pil, upscale
from vae_core.inference import interpolation_path
from vae_core.preprocess import IMAGE_SUFFIXES, MAX_UPLOAD_BYTES, PreparedImage, prepare_image

METHODS = {"linear": "Linear", "slerp": "Spherical (slerp)"}
UPLOAD_TYPES = [suffix.lstrip(".") for suffix in IMAGE_SUFFIXES]

ui.ensure_framed(__file__)
st.title("Interpolate")
st.caption(
    "Pick two images, A and B. The encoder maps each to the mean of its code, μ; the page then walks "
    "from one code to the other in small steps and decodes every point on the way. A smooth, "
    "plausible morph means the model has learned a continuous latent space; blurry or strange "
    "in-between images show regions of the space the model never learned to use."
)

loaded = ui.require_model()
data = ui.require_eval_data(loaded)
shape = loaded.info.model_config.image_shape
style = "mnist" if shape == (1, 28, 28) else "plain"
classes = sorted({int(v) for v in data.labels.tolist()})


@st.cache_data(show_spinner=False, max_entries=16)
def prepared(content: bytes, image_shape: tuple[int, int, int], style: str) -> PreparedImage:
    """Turn uploaded bytes into a model input once per file, shape and style."""
    return prepare_image(content, image_shape=image_shape, style=style)


def endpoint(side: str, default_class: int) -> torch.Tensor | None:
    """Draw the pickers of endpoint ``side`` ("a" or "b"); return its image (1, C, H, W) or None."""
    key = f"interp_{side}"
    source = st.radio(
        "Source", ["test image", "upload"], key=f"{key}_source", horizontal=True, label_visibility="collapsed"
    )
    if source == "upload":
        upload = st.file_uploader(
            "An image (PNG, JPEG, WebP, BMP or the first frame of a GIF)",
            type=UPLOAD_TYPES,
            key=f"{key}_upload",
            max_upload_size=MAX_UPLOAD_BYTES // (1024 * 1024),  # MiB, as Streamlit counts
        )
        if upload is None:
            st.info("Upload an image to use it as this end of the path.")
            return None
        result = None
        with ui.guard(f"read `{upload.name}`"):
            result = prepared(upload.getvalue(), shape, style)
        if result is None:
            return None
        st.image(upscale(to_pil(result.x[0]), scale=5), caption=f"{upload.name}, as the model sees it")
        return result.x
    if st.session_state.get(f"{key}_class") not in classes:
        st.session_state[f"{key}_class"] = default_class
    label = st.selectbox(
        "Class", classes, key=f"{key}_class", format_func=lambda c: ui.class_name(data.class_names, c)
    )
    members = (data.labels == label).nonzero().flatten().tolist()
    if st.session_state.get(f"{key}_index", 0) >= len(members):
        st.session_state[f"{key}_index"] = 0
    position = 0
    if len(members) > 1:
        position = st.slider(
            f"Which of the {len(members)} images of this class", 0, len(members) - 1, key=f"{key}_index"
        )
    image = data.images[members[position] : members[position] + 1]
    st.image(
        upscale(to_pil(image[0]), scale=5),
        caption=f"test image #{members[position]} · {ui.class_name(data.class_names, label)}",
    )
    return image


left, right = st.columns(2, gap="large")
with left:
    st.subheader("A: start")
    x0 = endpoint("a", classes[0])
with right:
    st.subheader("B: end")
    x1 = endpoint("b", classes[1] if len(classes) > 1 else classes[0])

steps_col, method_col = st.columns([1, 1], gap="large")
with steps_col:
    steps = st.slider("Steps on the path (A and B included)", 3, 20, 10, key="interp_steps")
with method_col:
    method = st.radio("Path", list(METHODS), format_func=METHODS.get, key="interp_method", horizontal=True)
    st.caption(
        "**Linear** walks the straight line from A's code to B's; **spherical** (slerp) follows the arc between "
        "them, which keeps the code's length typical of the prior N(0, I), whose samples in high dimensions "
        "almost all lie on a thin shell, not near its centre."
    )

if x0 is None or x1 is None:
    st.stop()

path = None
with ui.guard("interpolate between the two images"):
    path = interpolation_path(loaded.model, x0, x1, steps=steps, method=method)
if path is None:
    st.stop()

st.subheader("The path from A to B")
tile = 4
# The end columns are a little wider than one tile of the strip, so A and B show at about the same size.
ends_a, middle, ends_b = st.columns([1.15, steps, 1.15], gap="small", vertical_alignment="bottom")
with ends_a:
    st.image(strip(x0, scale=tile), caption="A (input)", width="stretch")
with middle:
    st.image(
        strip(path.images, scale=tile),
        caption=f"decoded: {steps} images, t = 0 (A's code) → 1 (B's code), {METHODS[method].lower()}",
        width="stretch",
    )
with ends_b:
    st.image(strip(x1, scale=tile), caption="B (input)", width="stretch")
st.caption(
    "The outer pictures are the two inputs; the strip between them is decoded. Its first and last pictures "
    "are the reconstructions of A and B, so they are blurrier than the inputs."
)

frames = [upscale(to_pil(image), scale=6) for image in path.images]
gif = gif_bytes(frames, duration_ms=150, boomerang=True)
stem = f"interpolation-{method}-{steps}"
chart_col, anim_col = st.columns([3, 1], gap="large")
with anim_col:
    st.image(gif, caption="The path as an animation (there and back)")
    st.download_button(
        "Download PNG",
        png_bytes(strip(path.images, scale=tile)),
        file_name=f"{stem}.png",
        mime="image/png",
        key="interp_png",
        icon=":material/image:",
        width="stretch",
    )
    st.download_button(
        "Download GIF",
        gif,
        file_name=f"{stem}.gif",
        mime="image/gif",
        key="interp_gif",
        icon=":material/animation:",
        width="stretch",
    )
with chart_col:
    other = "linear" if method == "slerp" else "slerp"
    other_logp = log_prior(interpolate(path.z[0], path.z[-1], steps=steps, method=other))
    fig = go.Figure()
    fig.add_scatter(x=path.t, y=path.log_prior, mode="lines+markers", name=f"{METHODS[method]} (shown)")
    fig.add_scatter(x=path.t, y=other_logp, mode="lines", line={"dash": "dash"}, name=METHODS[other])
    fig.update_layout(
        height=320,
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        legend={"orientation": "h", "y": 1.12},
        xaxis_title="t (0 = A's code, 1 = B's code)",
        yaxis_title="log p(z) under the prior (nats)",
    )
    st.plotly_chart(fig, width="stretch")
    st.metric("Distance between the codes ‖μ_B − μ_A‖", f"{path.distance:.2f}")
    st.caption(
        "log p(z) is how likely each point of the path is under the prior N(0, I); it only depends on the "
        "code's length. The straight line cuts through the inside of the shell where the prior's samples live, "
        "so its log p(z) bulges upwards in the middle: those codes are shorter than any typical code. Slerp "
        "stays near the shell, so its curve stays closer to the endpoints' values."
    )
