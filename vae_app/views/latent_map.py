"""Latent map: the model's atlas of its test images, coloured by class or -ELBO, with a selection view."""

import dataclasses
from collections import Counter

import numpy as np
import streamlit as st

from vae_app import figures, map_parts, state
from vae_app.escape import md
from vae_app.widgets import ELBO_HELP, guard, show_images
from vae_core.geometry import plane_grid, project, selected_indices
from vae_core.inference import decode_latents

MAX_SELECTED = 32

st.title("Latent map")
st.caption(
    "Each dot is one test image, placed by the code μ the encoder gives it and coloured by its true class. "
    "Images the model finds alike land close together, so well-separated clusters mean the latent space has "
    "sorted the data without ever seeing a label. Click a dot to open it in Decode or Interpolate, or drag a box "
    "or lasso (top-right tools) to see a group next to the model's reconstructions. Every page draws this same map."
)

loaded = state.require_model()
data, atlas = state.require_atlas(loaded)
d = loaded.info.model_config.latent_dim
# Radio options render Markdown; the layout's name comes from the checkpoint file.
layout_name = "latent plane" if atlas.layout == "latent" else f"{md(atlas.layout)} (neighbours kept)"
views = [layout_name, "PCA"] + (["two chosen dims"] if d > 2 else [])
st.session_state.setdefault("latent_map_view", views[0])
if st.session_state["latent_map_view"] not in views:
    st.session_state["latent_map_view"] = views[0]

c_view, c_dims, c_colour = st.columns([4, 2, 3])
view = c_view.radio(
    "Map",
    views,
    horizontal=True,
    key="latent_map_view",
    help="The atlas layout keeps each image's neighbours together and is the map every page shares; PCA "
    "shows the two directions of largest spread; two chosen dimensions show the code as it is.",
)
shown = atlas
if view == "PCA" and d >= 2:
    proj = project(atlas.mu, method="pca")
    shown = dataclasses.replace(atlas, coords=proj.coords, layout="PCA")
    c_dims.caption(f"PC1 {proj.explained[0]:.0%} and PC2 {proj.explained[1]:.0%} of the variance of μ.")
elif view == "two chosen dims":
    dx, dy = c_dims.columns(2)
    dims = (
        dx.selectbox("x", range(d), key="latent_map_dim_x", format_func=lambda i: f"z{i}"),
        dy.selectbox("y", range(d), index=1, key="latent_map_dim_y", format_func=lambda i: f"z{i}"),
    )
    if dims[0] == dims[1]:
        st.warning("Pick two different dimensions.")
        st.stop()
    shown = dataclasses.replace(
        atlas, coords=project(atlas.mu, method="direct", dims=dims).coords, layout="latent"
    )
colour = c_colour.radio(
    "Colour by",
    ["class", "−ELBO (anomaly score)"],
    horizontal=True,
    key="latent_map_colour",
    help=ELBO_HELP,
)

# On the latent plane itself (a 2-D latent) every point of the map is a z: invisible targets make it clickable.
on_plane = shown.layout == "latent" and d == 2
fig = figures.latent_map(
    shown,
    data.class_names,
    colour_by="class" if colour == "class" else "elbo",
    height=640,
    click_grid=plane_grid(shown.coords, n=map_parts.PLANE_N) if on_plane else None,
)
plane_curve = next((i for i, t in enumerate(fig.data) if t.name == figures.PLANE_TRACE), None)
if view == "two chosen dims":
    fig.update_layout(xaxis_title=f"z{dims[0]}", yaxis_title=f"z{dims[1]}")
# Streamlit turns click-to-select off while the drag tool is a box or lasso: start on pan, so a click picks.
fig.update_layout(dragmode="pan")
chart_col, pick_col = st.columns([3, 2], gap="large")
with chart_col:
    event = st.plotly_chart(
        fig, on_select="rerun", selection_mode=("points", "box", "lasso"), key="latent_map_chart"
    )
    st.caption(f"{len(atlas):,} codes of {data.source}, drawn by {view}.")
with pick_col:
    points = (event or {}).get("selection", {}).get("points", [])
    picked = selected_indices(points, size=len(atlas))
    clicked_z = map_parts.plane_click(points, plane_curve)
    if clicked_z is not None:
        map_parts.plane_panel(loaded, atlas, clicked_z)
    elif len(picked) == 1:
        map_parts.point_panel(loaded, data, atlas, int(picked[0]))
    elif len(picked) == 0:
        st.subheader("Selection")
        hint = " On this latent plane, click anywhere to decode that z." if on_plane else ""
        st.info(f"Nothing selected yet. Click a dot, or drag a box or lasso around a group of dots.{hint}")
    else:
        st.subheader(f"{len(picked):,} selected")
        names = [figures.class_name(data.class_names, int(atlas.labels[i])) for i in picked]
        st.caption("By class: " + " · ".join(f"{md(n)} ×{c}" for n, c in Counter(names).most_common()))
        # Plotly lists the points trace by trace, i.e. class by class: show a spread over the whole selection.
        ordered = np.sort(picked)
        few = ordered[np.linspace(0, len(ordered) - 1, min(len(ordered), MAX_SELECTED)).round().astype(int)]
        with guard("reconstruct the selection"):
            left, right = st.columns(2)
            with left:
                show_images(data.images[few], ncols=4, scale=2, caption="Test images")
            with right:
                show_images(
                    decode_latents(loaded.model, atlas.mu[few]), ncols=4, scale=2, caption="Reconstructions"
                )
        st.caption(f"Mean −ELBO of the selection: {atlas.elbo[picked].mean():.1f} nats.")
        if len(picked) > MAX_SELECTED:
            st.caption(f"Showing {MAX_SELECTED} of the {len(picked):,}, spread over the selection.")
