"""Attribute vectors: the direction between two groups' mean codes moves any image; analogies a − b + c."""

import numpy as np
import streamlit as st

from vae_app import attributes, cache, charts, figures, state, widgets
from vae_core.directions import Direction, analogy, attribute_direction, move, projections, separation
from vae_core.inference import decode_latents, encode_image
from vae_core.preprocess import model_style

STRIP_T = np.linspace(-2.0, 2.0, 9)
GIF_T, GIF_SCALE = np.linspace(-2.0, 2.0, 21), 8  # 8 x the model's pixels per side: fit for slides

st.title("Attribute vectors")
st.caption(
    "Pick two groups of images. The arrow from the mean code of group 1 to that of group 2 is an attribute "
    "vector (Liu et al., *Latent Space Cartography*, EuroVis 2019): adding it to any image's code moves that "
    "image towards group 2. t = 0 is the image's own code; t = 1 moves it by the whole difference of the means."
)

loaded = state.require_model()
data, atlas = state.require_atlas(loaded)
shape = loaded.info.model_config.image_shape
style = model_style(dataset=loaded.info.dataset, preprocessing=loaded.info.preprocessing)
classes = np.unique(atlas.labels).tolist()


def name(label: int) -> str:
    return figures.class_name(data.class_names, label)


def code_of(x, row: int | None) -> np.ndarray:
    """Return a picked image's μ: the atlas's for a test image (as on every page), else the encoder's."""
    return atlas.mu[row] if row is not None else encode_image(loaded.model, x).mu


@st.fragment
def move_panel(direction: Direction | None, rows: list, names: list[str], colours: list[str]) -> None:
    """Pick an image and move it along ``direction``; its widgets rerun this part of the page alone."""
    pick_col, out_col, hist_col = st.columns([4, 2, 3], gap="medium")  # the canvas needs about 300 px
    with pick_col:
        default = int(atlas.labels[rows[0][0]]) if len(rows[0]) else classes[0]
        x, row = widgets.endpoint_picker(
            "directions_image", data, atlas, default_class=default, image_shape=shape, style=style
        )
    with out_col:
        t = st.slider("How far along the direction, t", -2.0, 2.0, 0.0, 0.1, key="directions_t")
        if direction is None:
            st.caption("The image moves once there is a direction: pick two groups above.")
    if direction is None or x is None:
        return
    z = moved = None
    with widgets.guard("move the image"):
        z = code_of(x, row)
        moved = move(z, direction, t=t)
    if moved is None:
        return
    with out_col:
        x_hat = decode_latents(loaded.model, moved)[0]
        widgets.decoded_picture(x_hat, px=224, key="directions_moved", file_name=f"moved-t{t:+.1f}.png")
    groups = [(n, projections(atlas.mu[r], direction), c) for n, r, c in zip(names, rows, colours)]
    fig = charts.projection_histograms(groups, marker=projections(moved[None], direction)[0])
    hist_col.plotly_chart(fig, width="stretch", key="directions_hist")
    hist_col.caption(
        "Where each group's codes lie along the direction; the dashed line is your image, moved."
    )
    png, gif = cache.attribute_walk(
        state.model_key(loaded),
        data.key,
        loaded.model,
        z,
        direction,
        strip_t=tuple(STRIP_T),
        gif_t=tuple(GIF_T),
        gif_scale=GIF_SCALE,
    )
    st.image(png, caption="t = " + " · ".join(f"{v:+.1f}" for v in STRIP_T), width="stretch")
    st.download_button(
        "Download GIF (t from −2 to 2)",
        gif,
        file_name="attribute-vector.gif",
        mime="image/gif",
        key="directions_gif",
        on_click="ignore",
        icon=":material/animation:",
    )


st.subheader("1 · Two groups")
rows, names, colours = attributes.group_picker(data, atlas, here=[state.model_key(loaded), data.key])
direction = None
if min(len(r) for r in rows) == 0:
    st.info(
        "Both groups need at least one image: select dots on the map and set them as group 1 and group 2."
    )
else:
    with widgets.guard("find the direction between the two groups"):
        direction = attribute_direction(atlas.mu[rows[0]], atlas.mu[rows[1]])
        attributes.separation_panel(separation(atlas.mu[rows[0]], atlas.mu[rows[1]]), direction)

st.subheader("2 · Move an image along it")
move_panel(direction, rows, names, colours)

st.subheader("3 · Analogies: a − b + c")
st.caption(
    "a − b + c is the code that is to c as a is to b: c moved by the step from b to a. With class means, a and b "
    "stand for their whole classes, so the step is an attribute vector between two classes."
)
cols, picks = st.columns(3, gap="large"), []
for col, letter, default in zip(cols, "abc", (classes[-1], classes[0], classes[len(classes) // 2])):
    with col:
        st.markdown(f"**{letter}**")
        picks.append(
            widgets.endpoint_picker(
                f"directions_{letter}", data, atlas, default_class=default, image_shape=shape, style=style
            )
        )
means = st.toggle(
    "Use the mean codes of a's and b's classes",
    key="directions_class_means",
    help="Needs a and b to be test images of two different classes.",
)
if any(x is None for x, _ in picks):
    st.stop()
result = None
with widgets.guard("compute a − b + c"):
    (xa, ra), (xb, rb), (xc, rc) = picks
    if means:
        if ra is None or rb is None:
            raise ValueError("class means need a and b to be test images (an upload or drawing has no class)")
        if atlas.labels[ra] == atlas.labels[rb]:
            raise ValueError("a and b are of one class, so their class means cancel out: pick two classes")
        step = attribute_direction(
            atlas.mu[atlas.labels == atlas.labels[rb]], atlas.mu[atlas.labels == atlas.labels[ra]]
        )
        result = analogy(step.mean_b, step.mean_a, code_of(xc, rc))
    else:
        result = analogy(code_of(xa, ra), code_of(xb, rb), code_of(xc, rc))
if result is None:
    st.stop()
res_col, near_col = st.columns([1, 2], gap="large")
with res_col:
    x_hat = decode_latents(loaded.model, result)[0]
    widgets.decoded_picture(x_hat, px=196, key="directions_analogy", file_name="analogy.png")
with near_col:
    st.markdown("**Nearest test images to a − b + c** (distance between codes)")
    idx, dist = atlas.neighbours(result, k=8)
    found = list(zip(idx.tolist(), dist.tolist()))
    widgets.neighbour_grid(data.images, atlas.labels, data.class_names, found, ncols=4)
st.caption(
    f"Codes μ of {data.source}; a test image keeps its code from the Latent map, an upload or drawing is encoded here."
)
