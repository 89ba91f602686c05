"""The Attribute vectors page's parts: its two groups (two classes or two map selections), their separation.

Keys in session state (the Attribute vectors page's): ``directions_groups`` (which way),
``directions_class_1`` / ``_2`` (the classes), ``directions_group_1`` / ``_2`` (a map selection:
{"atlas": [model key, data key], "rows": atlas rows}; a selection made on another atlas is ignored),
``directions_map`` (the map's selection) and ``directions_set_1`` / ``_2`` (the buttons).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import streamlit as st

from vae_app import figures, state
from vae_app.escape import plot_text
from vae_core.atlas import Atlas
from vae_core.directions import Direction, Separation
from vae_core.geometry import selected_indices

# Map selections are drawn in two greys (rings and squares on the map), apart from every class colour;
# two classes take their class colours.
GROUP_COLOURS = ("#111827", "#6b7280")
GROUP_SYMBOLS = ("circle-open", "square-open")
MODES = ("two classes", "two selections on the map")


class Groups(NamedTuple):
    """Atlas rows of group 1 and group 2 (int64 arrays), their names for charts (plain text) and colours."""

    rows: tuple[np.ndarray, np.ndarray]
    names: tuple[str, str]
    colours: tuple[str, str]


def _stored(k: int, here: list[str]) -> np.ndarray:
    saved = st.session_state.get(f"directions_group_{k}") or {}
    return np.asarray(saved.get("rows", []) if saved.get("atlas") == here else [], dtype=np.int64)


def _keep_selection(k: int, here: list[str], size: int) -> None:
    points = (st.session_state.get("directions_map") or {}).get("selection", {}).get("points", [])
    rows = selected_indices(points, size=size).tolist()
    st.session_state[f"directions_group_{k}"] = {"atlas": here, "rows": rows}


def group_picker(data: state.EvalData, atlas: Atlas, *, here: list[str]) -> Groups:
    """Let the user pick the two groups; return their rows (either may be empty while none is set).

    Args:
        data: the images of ``atlas``.
        atlas: their codes and map.
        here: [model key, data key] that names ``atlas``, stored with a map selection.
    """
    classes = np.unique(atlas.labels).tolist()
    modes = list(MODES) if len(classes) > 1 else [MODES[1]]
    if len(classes) < 2:
        st.caption(
            "All images here have one class (the data has no labels), so the groups come from the map."
        )
    mode = st.radio("Groups", modes, key="directions_groups", horizontal=True, label_visibility="collapsed")
    if mode == MODES[0]:
        picked = []
        for k, col in zip((1, 2), st.columns(2)):
            st.session_state.setdefault(f"directions_class_{k}", classes[k - 1])
            if st.session_state[f"directions_class_{k}"] not in classes:
                st.session_state[f"directions_class_{k}"] = classes[k - 1]
            picked.append(
                col.selectbox(
                    f"Group {k}: class",
                    classes,
                    key=f"directions_class_{k}",
                    format_func=lambda c: figures.class_name(data.class_names, c),
                )
            )
        return Groups(
            tuple(np.flatnonzero(atlas.labels == label) for label in picked),
            tuple(f"class {plot_text(figures.class_name(data.class_names, label))}" for label in picked),
            tuple(figures.class_colour(label) for label in picked),
        )
    rows = (_stored(1, here), _stored(2, here))
    marks = [
        figures.Marker(atlas.coords[r], f"group {k}", symbol=m, colour=c, size=10)
        for k, r, c, m in zip((1, 2), rows, GROUP_COLOURS, GROUP_SYMBOLS)
        if len(r)
    ]
    fig = figures.latent_map(atlas, data.class_names, markers=marks, height=460)
    fig.update_layout(dragmode="lasso")
    st.plotly_chart(fig, on_select="rerun", selection_mode=("box", "lasso"), key="directions_map")
    b1, b2, said = st.columns([1, 1, 3], vertical_alignment="center")
    for k, col in ((1, b1), (2, b2)):
        col.button(
            f"Set as group {k}",
            key=f"directions_set_{k}",
            on_click=_keep_selection,
            args=(k, here, len(atlas)),
            width="stretch",
            icon=":material/group_add:",
        )
    said.caption(
        f"Group 1: {len(rows[0]):,} images · group 2: {len(rows[1]):,} images. Drag a lasso or a box around "
        "some dots, then press a button; rings mark group 1, squares group 2."
    )
    return Groups(rows, ("group 1", "group 2"), GROUP_COLOURS)


def separation_panel(score: Separation, direction: Direction) -> None:
    """Show how well the direction separates its two groups: AUC, held-out AUC, histogram overlap."""
    auc_col, held_col, note_col = st.columns([1, 1, 3], vertical_alignment="center")
    auc_col.metric(
        "Separation (AUC)",
        f"{score.auc:.2f}",
        help="Chance that a group-2 image lies further along than a group-1 image: 0.5 is none, 1.0 perfect.",
    )
    held = "–" if score.held_out_auc is None else f"{score.held_out_auc:.2f}"
    held_col.metric("AUC on held-out halves", held, help="Needs at least 4 images in each group.")
    note_col.caption(
        f"Histogram overlap {score.overlap:.0%}; length of the direction {direction.length:.2f}. The held-out "
        "score fits the direction on half of each group and scores it on the other half: in many dimensions "
        "a few codes can always be told apart, so the first score flatters small groups."
    )
