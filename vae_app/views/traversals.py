"""Traversals: vary one latent dimension at a time around a real example and watch what changes."""

import numpy as np
import streamlit as st

from vae_app import cache, figures, state
from vae_app.escape import md
from vae_app.teaching import export_scale_picker
from vae_app.widgets import guard
from vae_core.imaging import to_pil, upscale

MAX_ROWS = 16
TILE_PX = 84  # target on-screen size of one decoded image

st.title("Traversals")
st.caption(
    "Start from the code of one real image and move a single latent dimension from low to high while keeping the "
    "others fixed: each row is one dimension, each column one step. The sweep covers the range the data actually "
    "uses (the spread of μ over the test images, around this example), so every picture is one the decoder has "
    "learned to draw. Rows are sorted by KL: the top rows carry the most information; a row that does not change "
    "is an unused dimension."
)

loaded = state.require_model()
info = loaded.info
d = info.model_config.latent_dim
data, atlas = state.require_atlas(loaded)
key = state.model_key(loaded)
n = len(atlas)
labels = atlas.labels
classes = [int(c) for c in np.unique(labels)]


# Widget defaults, repaired when another model makes the old values invalid.
if st.session_state.get("traversals_class") not in classes:
    st.session_state["traversals_class"] = classes[0]
st.session_state.setdefault("traversals_steps", 9)
st.session_state.setdefault("traversals_width", 2.0)
if st.session_state.get("traversals_model") != (key, data.key):
    st.session_state["traversals_model"] = (key, data.key)
    st.session_state["traversals_rows"] = min(d, MAX_ROWS)
    st.session_state["traversals_index"] = 0

c_class, c_index, c_rows, c_steps, c_width = st.columns([2, 2, 3, 3, 3])
label = c_class.selectbox(
    "Class",
    classes,
    key="traversals_class",
    format_func=lambda c: figures.class_name(data.class_names, c),
    help="The class of the example to start from.",
)
members = np.flatnonzero(labels == label)
st.session_state["traversals_index"] = min(int(st.session_state["traversals_index"]), len(members) - 1)
nth = int(
    c_index.number_input(
        "Example",
        min_value=0,
        max_value=len(members) - 1,
        step=1,
        key="traversals_index",
        help=f"Which of the {len(members)} test images of this class to start from.",
    )
)
if d > 1:
    rows = c_rows.slider(
        "Dimensions shown",
        1,
        min(d, MAX_ROWS),
        key="traversals_rows",
        help="The most informative dimensions (highest KL) come first.",
    )
else:
    rows = 1
    c_rows.caption("One latent dimension: one row.")
steps = c_steps.slider("Steps", 3, 15, key="traversals_steps", help="Pictures per row.")
width = c_width.slider(
    "Range ± (std of μ)",
    0.5,
    4.0,
    step=0.5,
    key="traversals_width",
    help="How far each sweep goes either side of the example, in standard deviations of that dimension's "
    "codes over the test images.",
)

index = int(members[nth])
tile = max(1, round(TILE_PX / max(info.model_config.image_shape[1:])))
left, right = st.columns([1.4, 4], gap="large")
with left:
    scale = export_scale_picker(
        key="traversals_export_scale", image_shape=info.model_config.image_shape, label="Picture size"
    )
sheet = gif = None
with guard("draw the traversal"):
    sheet, gif = cache.traversal_files(
        key, data.key, loaded, atlas, index=index, rows=rows, steps=steps, width=float(width), scale=scale
    )
if sheet is None:
    st.stop()

with left:
    st.image(
        upscale(to_pil(data.images[index]), scale=tile),
        caption=f"The example: test image #{index} ({md(figures.class_name(data.class_names, label))})",
        width=TILE_PX,
        output_format="PNG",
    )
    st.image(gif, caption="Every row at once, animated: each tile is one dimension sweeping its range")
    st.download_button(
        "Download PNG",
        sheet,
        file_name=f"{info.name}-traversal-{index}.png",
        mime="image/png",
        icon=":material/download:",
        key="traversals_png",
    )
    st.download_button(
        "Download GIF",
        gif,
        file_name=f"{info.name}-traversal-{index}.gif",
        mime="image/gif",
        icon=":material/animation:",
        key="traversals_gif",
    )
with right:
    st.image(sheet, output_format="PNG")
    st.caption(
        f"{rows} of {d} dimensions × {steps} steps. The column marked μ is the example's own code; "
        f"columns step from −{width:g} to +{width:g} standard deviations of each dimension's codes over the "
        f"{n:,} test images, so a dimension the encoder barely uses moves only a little."
    )
