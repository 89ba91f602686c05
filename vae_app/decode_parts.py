"""Parts of the Decode page: the current z in session state, picks from other pages, sliders ranked by KL.

Session state: ``decode_z`` (the current z, a list of D floats), ``decode_z{i}`` (slider i),
``decode_range``, ``decode_draws`` and ``decode_row`` (the atlas row z was last set from, or None).
Other pages open Decode on a code by setting ``decode_pick`` (an atlas row) or ``decode_pick_z``
(a list of floats) and switching page; ``consume_pick`` applies it once.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import streamlit as st

from vae_core.atlas import Atlas
from vae_core.geometry import prior_latent
from vae_core.health import DimensionRanking, rank_dimensions_of

MAX_RANGE = 10.0
PICK_ROW = "decode_pick"
PICK_Z = "decode_pick_z"
DECODE_PAGE = "vae_app/views/decode.py"


def open_in_decode(*, row: int | None = None, z: Sequence[float] | None = None) -> None:
    """Open the Decode page with its sliders at atlas row ``row``'s code or at ``z`` (contract 4)."""
    if row is not None:
        st.session_state[PICK_ROW] = int(row)
    else:
        st.session_state[PICK_Z] = [float(v) for v in z]
    st.switch_page(DECODE_PAGE)


def set_z(values: np.ndarray, *, row: int | None = None) -> None:
    """Make ``values`` the current z, clipped to the slider range; remember the atlas ``row`` it came from."""
    span = float(st.session_state["decode_range"])
    z = np.clip(np.round(np.asarray(values, dtype=float), 2), -span, span)
    st.session_state["decode_z"] = z.tolist()
    st.session_state["decode_row"] = row
    for i, v in enumerate(z):
        st.session_state[f"decode_z{i}"] = float(v)


def set_z_widening(values: np.ndarray, *, row: int | None = None) -> None:
    """Make ``values`` the current z, widening the sliders' range (up to ±10) rather than clipping it."""
    needed = math.ceil(float(np.abs(np.asarray(values, dtype=float)).max(initial=0.0)) * 2) / 2
    if needed > st.session_state["decode_range"]:
        st.session_state["decode_range"] = min(MAX_RANGE, needed)
    set_z(values, row=row)


def draw_random(d: int) -> None:
    """Set z to a new draw from the prior (a button's callback)."""
    st.session_state["decode_draws"] += 1
    set_z(prior_latent(d, seed=st.session_state["decode_draws"]))


def consume_pick(atlas: Atlas | None, d: int) -> None:
    """Apply, once, a code another page asked Decode to open on: an atlas row's μ or a z."""
    row, z = st.session_state.pop(PICK_ROW, None), st.session_state.pop(PICK_Z, None)
    if row is not None:
        if atlas is None or not 0 <= int(row) < len(atlas):
            st.warning(
                f"Image #{row} is not among this model's mapped images, so the sliders stay where they were."
            )
        else:
            set_z_widening(atlas.mu[int(row)], row=int(row))  # the atlas's code: the same point as on the map
    elif z is not None:
        values = np.asarray(z, dtype=float).reshape(-1)
        if len(values) != d or not np.isfinite(values).all():
            st.warning(
                f"The code to open has {len(values)} numbers; this model's latent has {d}. Sliders unchanged."
            )
        else:
            set_z_widening(values)


def ranking(atlas: Atlas | None, d: int) -> DimensionRanking | None:
    """Return the dimensions ranked by KL over the atlas's images, or None without an atlas."""
    if atlas is None:
        return None
    return rank_dimensions_of(atlas.mu, atlas.logvar)


def slider_label(i: int, ranks: DimensionRanking | None) -> str:
    """Return slider i's label: "z7 · KL 2.31", or "z7 · inactive, KL 0.01" for an inactive dimension."""
    if ranks is None:
        return f"z{i}"
    state = "" if ranks.active[i] else "inactive, "
    return f"z{i} · {state}KL {ranks.kl[i]:.2f}"


def slider_grid(dims: Sequence[int], ranks: DimensionRanking | None, *, span: float, step: float) -> None:
    """Draw one slider ``decode_z{i}`` per dimension in ``dims``, in display order row by row, up to four a row."""
    ncols = 1 if len(dims) <= 4 else 2 if len(dims) <= 8 else 3 if len(dims) <= 12 else 4
    cols = st.columns(ncols)
    help_text = (
        "KL: the information this dimension carries, averaged over the mapped images (nats); the sliders are "
        "sorted by it. Inactive: its mean code hardly varies over the images, so moving it changes little."
    )
    for j, i in enumerate(dims):
        cols[j % ncols].slider(
            slider_label(i, ranks),
            min_value=-span,
            max_value=span,
            step=step,
            key=f"decode_z{i}",
            format="%.2f",
            help=help_text if ranks is not None else None,
        )


def marker_position(atlas: Atlas, z: np.ndarray) -> np.ndarray:
    """Return where z goes on the map (2,): on its image's dot while z is still that atlas row's code."""
    row = st.session_state.get("decode_row")
    if row is not None and row < len(atlas) and np.allclose(z, np.round(atlas.mu[row], 2), atol=1e-6):
        return atlas.coords[row]  # placement by neighbours would put it near, not on, the dot clicked
    return atlas.place(z)[0]


def grid_dims(d: int) -> tuple[int, int] | None:
    """Offer the two dimensions of the decoded grid (a 2-D latent needs no choice); None while hidden."""
    if d == 2:
        return (0, 1)
    if not st.toggle(
        "Show a decoded grid over two dimensions",
        key="decode_grid_show",
        help="The other dimensions stay at the sliders' values.",
    ):
        return None
    gx, gy, _ = st.columns(3)
    dims = (
        gx.selectbox("Across (x)", range(d), index=0, key="decode_grid_x", format_func="z{}".format),
        gy.selectbox("Up (y)", range(d), index=1, key="decode_grid_y", format_func="z{}".format),
    )
    if dims[0] == dims[1]:
        st.warning("Pick two different dimensions for the grid.")
        return None
    return dims
