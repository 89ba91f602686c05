"""Parts of the Latent map page: what a click on one image, or on the empty latent plane, offers.

One image clicked: it beside its reconstruction, with "Open in Decode" (contract 4: ``decode_pick``)
and "Use as A / B in Interpolate" (contract 3: ``interp_a_pick`` / ``interp_b_pick``). On a
latent-plane map (a 2-D latent) a click anywhere decodes that z at once, with the decoded
neighbourhood as a PNG.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import streamlit as st

from vae_app import figures, state
from vae_app.decode_parts import open_in_decode
from vae_app.escape import md
from vae_app.widgets import decoded_picture, guard, ordinal, show_images
from vae_core.atlas import Atlas
from vae_core.imaging import image_grid, png_bytes, upscale
from vae_core.inference import decode_latents, decode_one, manifold_around

PLANE_N = 60  # click targets per axis: a click lands at most half a cell (under 1% of the plane) away
PATCH_N = 9
PATCH_SCALE = 2
IMAGE_PX = 224
INTERPOLATE_PAGE = "vae_app/views/interpolate.py"


def plane_click(points: Sequence[dict], curve: int | None) -> np.ndarray | None:
    """Return the z (2,) of a click on the plane's click targets (trace number ``curve``), or None."""
    if curve is None or len(points) != 1 or points[0].get("curve_number") != curve:
        return None
    x, y = points[0].get("x"), points[0].get("y")
    return None if x is None or y is None else np.array([float(x), float(y)])


def use_in_interpolate(row: int, end: str) -> None:
    """Open Interpolate with atlas row ``row`` as its end ``end`` ("a" or "b"), as contract 3 says."""
    st.session_state[f"interp_{end}_pick"] = int(row)
    st.switch_page(INTERPOLATE_PAGE)


def point_panel(loaded, data: state.EvalData, atlas: Atlas, row: int) -> None:
    """Show one clicked image, its reconstruction and -ELBO, and the pages it can be taken to."""
    name = figures.class_name(data.class_names, int(atlas.labels[row]))
    st.subheader(f"Image #{row} · {md(name)}")
    with guard("reconstruct the image"):
        left, right = st.columns(2)
        with left:
            show_images(data.images[row : row + 1], ncols=1, scale=6, caption="Test image")
        with right:
            recon = decode_latents(loaded.model, atlas.mu[row : row + 1])
            show_images(recon, ncols=1, scale=6, caption="Reconstruction from μ")
    elbo = float(atlas.elbo[row])
    st.caption(
        f"−ELBO {elbo:.1f} nats, the {ordinal(atlas.percentile(elbo))} percentile of the map's images."
    )
    if st.button(
        "Open in Decode",
        icon=":material/tune:",
        key="latent_map_open_decode",
        type="primary",
        width="stretch",
    ):
        open_in_decode(row=row)
    st.caption(
        "Sets Decode's sliders to this image's code μ, so you can move away from it one dimension at a time."
    )
    for end in ("A", "B"):
        key = f"latent_map_use_{end.lower()}"
        if st.button(
            f"Use as {end} in Interpolate", icon=":material/linear_scale:", key=key, width="stretch"
        ):
            use_in_interpolate(row, end.lower())


def plane_panel(loaded, atlas: Atlas, z: np.ndarray) -> None:
    """Decode a clicked point z (2,) of the latent plane; offer it to Decode and its neighbourhood as a PNG."""
    model, name = loaded.model, loaded.info.name
    st.subheader(f"z = ({z[0]:.2f}, {z[1]:.2f})")
    with guard("decode this z"):
        decoded_picture(
            decode_one(model, z), px=IMAGE_PX, key="latent_map_plane_image", file_name=f"{name}-z.png"
        )
    if st.button("Open in Decode", icon=":material/tune:", key="latent_map_plane_decode", type="primary"):
        open_in_decode(z=z.tolist())
    extent = float(np.ptp(atlas.coords, axis=0).max()) or 1.0
    half = st.slider(
        "Neighbourhood ±",
        min_value=max(0.01, round(extent / 100, 2)),
        max_value=max(0.02, round(extent / 3, 2)),
        value=max(0.01, round(extent / 8, 2)),
        key="latent_map_patch",
        help=f"The {PATCH_N} × {PATCH_N} decoded images around the clicked z reach this far along z0 and z1.",
    )
    with guard("decode the neighbourhood"):
        patch = manifold_around(model, z, half_width=half, n=PATCH_N)
        picture = upscale(image_grid(patch.images, ncols=PATCH_N, pad=0), scale=PATCH_SCALE)
        st.image(
            picture,
            caption=f"Decoded around the click: z0 {patch.xs[0]:.2f} → {patch.xs[-1]:.2f} left to right, "
            f"z1 {patch.ys[0]:.2f} → {patch.ys[-1]:.2f} bottom to top; the clicked z is the middle image.",
            output_format="PNG",
        )
        st.download_button(
            "Download this neighbourhood (PNG)",
            png_bytes(picture),
            file_name=f"{name}-manifold-{z[0]:.2f}_{z[1]:.2f}.png",
            mime="image/png",
            key="latent_map_patch_png",
            on_click="ignore",
            icon=":material/download:",
        )
