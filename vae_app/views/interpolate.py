"""Interpolate: encode two images, walk the latent space between their means, decode the path, and map it."""

import numpy as np
import streamlit as st

from vae_app import charts, figures, state, widgets
from vae_core.geometry import interpolate, log_prior
from vae_core.imaging import SLIDE_SCALE, animation_gif, png_bytes, strip
from vae_core.inference import interpolation_path

METHODS = {"linear": "Linear", "slerp": "Spherical (slerp)"}

st.title("Interpolate")
st.caption(
    "Pick two images, A and B: test images, uploads or your own drawings. The encoder maps each to the mean "
    "of its code, μ; the page then walks from one code to the other in small steps and decodes every point on "
    "the way. A smooth, "
    "plausible morph means the model has learned a continuous latent space; blurry or strange "
    "in-between images show regions of the space the model never learned to use."
)

loaded = state.require_model()
data, atlas = state.require_atlas(loaded)
shape = loaded.info.model_config.image_shape
classes = np.unique(atlas.labels).tolist()
with st.columns([2, 3])[0]:
    style = widgets.style_toggle("interp_mnist_style", loaded)
    st.caption("For uploads and drawings; test images are already in the model's format.")

left, right = st.columns(2, gap="large")
with left:
    st.subheader("A: start")
    x0, row0 = widgets.endpoint_picker(
        "interp_a", data, atlas, default_class=classes[0], image_shape=shape, style=style
    )
with right:
    st.subheader("B: end")
    default_b = classes[min(1, len(classes) - 1)]
    x1, row1 = widgets.endpoint_picker(
        "interp_b", data, atlas, default_class=default_b, image_shape=shape, style=style
    )

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
with widgets.guard("interpolate between the two images"):
    path = interpolation_path(loaded.model, x0, x1, steps=steps, method=method)
if path is None:
    st.stop()

st.subheader("The path from A to B")
tile = 4
# The end columns are a little wider than one tile of the strip, so A and B show at about the same size.
ends_a, middle, ends_b = st.columns([1.15, steps, 1.15], gap="small", vertical_alignment="bottom")
ends_a.image(strip(x0, scale=tile), caption="A (input)", width="stretch")
middle.image(
    strip(path.images, scale=tile),
    caption=f"decoded: {steps} images, t = 0 (A's code) → 1 (B's code), {METHODS[method].lower()}",
    width="stretch",
)
ends_b.image(strip(x1, scale=tile), caption="B (input)", width="stretch")
st.caption(
    "The outer pictures are the two inputs; the strip between them is decoded. Its first and last pictures "
    "are the reconstructions of A and B, so they are blurrier than the inputs."
)

gif = animation_gif(path.images, scale=SLIDE_SCALE, duration_ms=150, boomerang=True)
stem = f"interpolation-{method}-{steps}"
map_col, anim_col = st.columns([3, 1], gap="large")
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
with map_col:
    coords = atlas.place(path.z)
    for end, row in ((0, row0), (-1, row1)):
        if row is not None:  # a test image sits exactly where the Latent map shows it
            coords[end] = atlas.coords[row]
    markers = [
        figures.Marker(
            coords, "path", symbol="circle", size=7, line=True, text=[f"t = {t:.2f}" for t in path.t]
        ),
        figures.Marker(coords[[0, -1]], "A and B", size=22, text=["A (start)", "B (end)"]),
    ]
    st.plotly_chart(
        figures.latent_map(atlas, data.class_names, markers=markers, height=480),
        width="stretch",
        key="interp_map",
    )
    st.caption(f"{widgets.map_caption(atlas, data.source)} The line is the path, the stars its ends A and B.")

logp_col, info_col = st.columns([2, 1], gap="large")
with logp_col:
    other = "linear" if method == "slerp" else "slerp"
    other_logp = log_prior(interpolate(path.z[0], path.z[-1], steps=steps, method=other))
    fig = charts.path_log_prior(path.t, path.log_prior, other_logp, names=(METHODS[method], METHODS[other]))
    st.plotly_chart(fig, width="stretch", key="interp_log_prior")
with info_col:
    st.metric("Distance between the codes ‖μ_B − μ_A‖", f"{path.distance:.2f}")
    st.caption(
        "log p(z) is how likely each point of the path is under the prior N(0, I); it only depends on the "
        "code's length. The straight line cuts through the inside of the shell where the prior's samples live, "
        "so its log p(z) bulges upwards in the middle: those codes are shorter than any typical code. Slerp "
        "stays near the shell, so its curve stays closer to the endpoints' values."
    )
