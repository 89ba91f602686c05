"""Encode: draw or give an image, show its code, its anomaly score and where it lands on the map."""

import numpy as np
import streamlit as st

from vae_app import cache, canvas, encoding, figures, state, widgets
from vae_app.escape import code
from vae_core.datasets import to_float
from vae_core.preprocess import IMAGE_SUFFIXES, MAX_UPLOAD_BYTES, canvas_colours, prepare_drawing

DRAWING = -1
SOURCES = {"draw": "Draw", "upload": "Upload", "example": "Example"}
UPLOAD_TYPES = [suffix.lstrip(".") for suffix in IMAGE_SUFFIXES]
MB = 1024 * 1024  # Streamlit's upload limit counts in MiB

st.title("Encode")
st.caption(
    "Draw an image, or give the model one of your own, and see what it makes of it: how the picture is turned "
    "into the kind of input the model was trained on, where the encoder places it in the latent space (μ, with "
    "its uncertainty σ), how well the decoder can rebuild it, how unusual it is compared with the test images, "
    "and which test images the model considers most similar."
)

loaded = state.require_model()
data, atlas = state.require_atlas(loaded)
shape = loaded.info.model_config.image_shape
colours = canvas_colours(data.images[: widgets.CANVAS_COLOUR_SAMPLE])

_, first_of_class = np.unique(atlas.labels, return_index=True)
examples = [DRAWING] + first_of_class[:12].tolist()
if st.session_state.get("encode_sample", DRAWING) not in examples:
    st.session_state["encode_sample"] = DRAWING


def example_label(choice: int) -> str:
    if choice == DRAWING:
        return "A drawing on paper: a 7 in black ink on white"
    return f"Test image #{choice} ({figures.class_name(data.class_names, int(atlas.labels[choice]))})"


source_col, style_col = st.columns([3, 2], gap="large", vertical_alignment="bottom")
with source_col:
    source = st.radio(
        "Image to encode", list(SOURCES), format_func=SOURCES.get, key="encode_source", horizontal=True
    )
with style_col:
    style = widgets.style_toggle("encode_mnist_style", loaded)


@st.fragment
def drawn_encoding() -> None:
    """Draw the canvas and everything that follows from it: a stroke reruns only this fragment."""
    st.subheader("1 · Draw, and see the model's input")
    draw_col, steps_col = st.columns([1, 2], gap="large")
    with draw_col:
        drawing = canvas.drawing_canvas(key="encode_canvas", image_shape=shape, colours=colours)
        canvas.drawing_help(colours)
    if drawing.rgba is None:
        steps_col.info(
            "Draw on the canvas: the encoding appears after your first stroke and follows every other."
        )
        return
    result = None
    with steps_col, widgets.guard("read the drawing"):
        result = prepare_drawing(drawing.rgba, image_shape=shape, style=style)
        widgets.preparation_steps(result, "your drawing", columns=3)
    if result is not None:
        encoding.show(result.x, None, loaded=loaded, data=data, atlas=atlas)


if source == "draw":
    drawn_encoding()
    st.stop()

content, name, row = None, None, None  # row: the atlas row of a test image, whose numbers the atlas holds
if source == "upload":
    upload = st.file_uploader(
        "Upload an image (PNG, JPEG, WebP, BMP, or the first frame of a GIF)",
        type=UPLOAD_TYPES,
        key="encode_upload",
        max_upload_size=MAX_UPLOAD_BYTES // MB,
        help=f"At most {MAX_UPLOAD_BYTES // MB} MB. A photo of a digit on paper works.",
    )
    if upload is None:
        st.info("Upload an image to encode it.")
        st.stop()
    if upload.size > MAX_UPLOAD_BYTES:
        st.error(
            f"{code(upload.name)} is {upload.size / MB:.1f} MB; the limit is {MAX_UPLOAD_BYTES // MB} MB. "
            "Upload a smaller image: a digit needs only a few hundred pixels a side."
        )
        st.stop()
    content, name = upload.getvalue(), code(upload.name)  # Markdown: a file name is data
else:
    choice = st.selectbox("Example", examples, key="encode_sample", format_func=example_label)
    if choice == DRAWING:
        content, name = cache.example_drawing(), "the drawing"
    else:
        row = int(choice)

st.subheader("1 · From your picture to the model's input")
if content is not None:
    result = None
    with widgets.guard(f"read {name}"):
        result = cache.prepared_image(content, shape, style)
    if result is None:
        st.stop()
    x = result.x
    widgets.preparation_steps(result, name)
else:
    x = to_float(data.images[row : row + 1])
    st.caption("Test images are already in the model's format: no preprocessing needed.")
encoding.show(x, row, loaded=loaded, data=data, atlas=atlas)
