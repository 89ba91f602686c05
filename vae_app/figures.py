"""The maps the views share, drawn with the one class palette (``vae_core.imaging.PALETTE``).

A class has the same colour on every page, in every chart and in every exported image. Charts that
are not maps (bars, histograms, loss curves) are in ``charts``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import plotly.graph_objects as go

from vae_app.escape import plot_text
from vae_core.atlas import Atlas
from vae_core.geometry import grid_position
from vae_core.imaging import label_hex

MARKER_SIZE = 5
SCATTERGL_ABOVE = 5000  # WebGL pays off above this; below, SVG draws sooner (no GL context to create)
HIGHLIGHT = "#111827"
SELECTED = {"marker": {"size": MARKER_SIZE + 4, "opacity": 1}}  # a clicked or lassoed image stands out
PLANE_TRACE = "latent plane"  # the invisible click targets of ``latent_map(click_grid=...)``


def class_colour(label: int) -> str:
    """Return the colour of class ``label`` as ``#rrggbb``."""
    return label_hex(label)


def class_name(class_names: Sequence[str], label: int) -> str:
    """Return a readable class name for an integer label."""
    return class_names[label] if 0 <= label < len(class_names) else str(label)


class Marker(NamedTuple):
    """Extra points drawn on top of a map: an upload, the current z, a path's steps.

    ``coords`` is (M, 2); ``line`` joins the points in order (an interpolation path).
    """

    coords: np.ndarray
    name: str
    symbol: str = "star"
    colour: str = HIGHLIGHT
    size: int = 22
    line: bool = False
    text: Sequence[str] | None = None


def latent_map(
    atlas: Atlas,
    class_names: Sequence[str],
    *,
    colour_by: str = "class",
    markers: Sequence[Marker] = (),
    height: int = 560,
    opacity: float = 0.75,
    click_grid: np.ndarray | None = None,
) -> go.Figure:
    """Draw the atlas's map: one trace per class (or one coloured by -ELBO), then ``markers`` on top.

    ``click_grid`` (G, 2) adds invisible click targets (trace ``PLANE_TRACE``, the first trace, beneath
    the images), so a click on empty plane reports the nearest grid point; the one clicked
    shows as a ring. Their ``customdata`` is -1, which ``geometry.selected_indices`` drops.

    Every atlas point carries its index into the atlas in ``customdata`` (a plain number:
    Streamlit drops a selection whose points carry arrays), so a selection maps back to images
    whatever trace it came from; in class colouring its -ELBO rides along in ``text``.
    """
    coords, labels, elbo = atlas.coords, atlas.labels, atlas.elbo
    trace = go.Scattergl if len(coords) > SCATTERGL_ABOVE else go.Scatter
    fig = go.Figure()
    if colour_by == "class":
        for label in np.unique(labels):
            idx = np.flatnonzero(labels == label)
            name = plot_text(class_name(class_names, int(label)))  # Plotly renders HTML in names
            fig.add_trace(
                trace(
                    x=coords[idx, 0],
                    y=coords[idx, 1],
                    mode="markers",
                    name=name,
                    customdata=idx,
                    text=[f"{v:.1f}" for v in elbo[idx]],
                    marker={"size": MARKER_SIZE, "opacity": opacity, "color": class_colour(int(label))},
                    selected=SELECTED,
                    hovertemplate=f"{name}<br>#%{{customdata}}<br>−ELBO %{{text}} nats<extra></extra>",
                )
            )
    else:
        names = [plot_text(class_name(class_names, int(c))) for c in labels]
        fig.add_trace(
            trace(
                x=coords[:, 0],
                y=coords[:, 1],
                mode="markers",
                name="images",
                customdata=np.arange(len(coords)),
                text=names,
                marker={
                    "size": MARKER_SIZE,
                    "opacity": opacity,
                    "color": elbo,
                    "colorscale": "Viridis",
                    "colorbar": {"title": {"text": "−ELBO (nats)"}},
                },
                selected=SELECTED,
                hovertemplate="%{text}<br>#%{customdata}<br>−ELBO %{marker.color:.1f} nats<extra></extra>",
            )
        )
    if click_grid is not None:
        # First: Plotly gives a tie in hover distance (both within 3 px) to the later trace, i.e. the image.
        fig.add_trace(_plane_trace(click_grid, trace=trace))
        fig.data = fig.data[-1:] + fig.data[:-1]
    for marker in markers:
        # WebGL points are drawn above every SVG trace: markers on a WebGL map must be WebGL too to show.
        fig.add_trace(_marker_trace(marker, trace=trace))
    x_title, y_title = atlas.axis_titles
    fig.update_layout(
        height=height,
        margin={"l": 50, "r": 10, "t": 40, "b": 50},
        legend={
            "title": {"text": "class "},
            "itemsizing": "constant",
            "orientation": "h",
            "y": 1.02,
            "yanchor": "bottom",
        },
        xaxis_title=x_title,
        yaxis_title=y_title,
        uirevision=atlas.data_key,  # keep the user's zoom when markers move
    )
    return fig


def _plane_trace(grid: np.ndarray, *, trace: type = go.Scatter) -> go.Scatter | go.Scattergl:
    return trace(
        x=grid[:, 0],
        y=grid[:, 1],
        mode="markers",
        name=PLANE_TRACE,
        showlegend=False,
        customdata=np.full(len(grid), -1),
        marker={"size": 6, "opacity": 0, "color": HIGHLIGHT},
        selected={"marker": {"opacity": 1, "size": 16, "color": HIGHLIGHT}},
        unselected={"marker": {"opacity": 0}},
        hovertemplate="z = (%{x:.2f}, %{y:.2f})<br>click to decode<extra></extra>",
    )


def _marker_trace(marker: Marker, *, trace: type = go.Scatter) -> go.Scatter | go.Scattergl:
    coords = np.atleast_2d(np.asarray(marker.coords, dtype=np.float64))
    return trace(
        x=coords[:, 0],
        y=coords[:, 1],
        mode="lines+markers" if marker.line else "markers",
        name=marker.name,
        text=list(marker.text) if marker.text is not None else None,
        line={"color": marker.colour, "width": 2} if marker.line else None,
        marker={
            "symbol": marker.symbol,
            "size": marker.size,
            "color": marker.colour,
            "line": {"color": "white", "width": 1.5},
        },
        hovertemplate=(("%{text}" if marker.text is not None else marker.name) + "<extra></extra>"),
    )


# Latent health: active dimensions blue, inactive grey, the prior red (not class colours).


def timeline_axis_titles(latent_dim: int) -> tuple[str, str]:
    """Return the axis titles of ``geometry.timeline_projection``'s map for a latent of ``latent_dim``."""
    return ("z0", "z1") if latent_dim <= 2 else ("PC 1", "PC 2")


def _class_traces(coords: np.ndarray, labels: np.ndarray, class_names: Sequence[str]) -> list[go.Scatter]:
    names = {int(c): plot_text(class_name(class_names, int(c))) for c in np.unique(labels)}
    return [
        go.Scatter(
            x=coords[labels == c, 0],
            y=coords[labels == c, 1],
            mode="markers",
            name=name,
            marker={"color": class_colour(c), "size": 6, "opacity": 0.8},
            hovertemplate=f"{name}<extra></extra>",
        )
        for c, name in names.items()
    ]


def timeline_map(
    coords: np.ndarray, labels: np.ndarray, class_names: Sequence[str], *, latent_dim: int, height: int = 360
) -> go.Figure:
    """Draw one timeline frame: each dot a test image's mu (projected, (P, 2)), coloured by class."""
    x_title, y_title = timeline_axis_titles(latent_dim)
    fig = go.Figure(_class_traces(coords, labels, class_names))
    fig.update_layout(
        height=height,
        margin={"l": 10, "r": 10, "t": 10, "b": 10},
        legend={"title": {"text": "class"}, "itemsizing": "constant"},
        xaxis_title=x_title,
        yaxis_title=y_title,
    )
    return fig


def timeline_animation(
    epochs: Sequence[int],
    coords: Sequence[np.ndarray],
    labels: np.ndarray,
    class_names: Sequence[str],
    *,
    latent_dim: int,
    height: int = 520,
) -> go.Figure:
    """Animate the timeline's map: one frame per epoch on fixed axes, with a slider and a play button.

    Args:
        epochs: the epoch of each frame.
        coords: one (P, 2) array per frame (``geometry.timeline_projection``).
        labels: int (P,) class of each point, coloured like the GIF export (``imaging.scatter_frames``).
    """
    frames = [
        go.Frame(data=_class_traces(xy, labels, class_names), name=str(e)) for e, xy in zip(epochs, coords)
    ]
    fig = go.Figure(data=_class_traces(coords[-1], labels, class_names), frames=frames)
    stacked = np.concatenate(coords)
    lo, hi = stacked.min(axis=0), stacked.max(axis=0)
    margin = np.maximum(hi - lo, 1e-3) * 0.05
    x_title, y_title = timeline_axis_titles(latent_dim)
    fig.update_xaxes(range=[lo[0] - margin[0], hi[0] + margin[0]], title_text=x_title, zeroline=False)
    fig.update_yaxes(range=[lo[1] - margin[1], hi[1] + margin[1]], title_text=y_title, zeroline=False)
    still = {"frame": {"duration": 0, "redraw": False}, "mode": "immediate", "transition": {"duration": 0}}
    play = {
        "frame": {"duration": 500, "redraw": False},
        "fromcurrent": False,
        "transition": {"duration": 300},
    }
    fig.update_layout(
        height=height,
        margin={"l": 10, "r": 10, "t": 50, "b": 10},
        legend={"title": {"text": "class"}, "itemsizing": "constant"},
        sliders=[
            {
                "active": len(epochs) - 1,
                "currentvalue": {"prefix": "epoch "},
                "pad": {"t": 50},
                "steps": [{"label": str(e), "method": "animate", "args": [[str(e)], still]} for e in epochs],
            }
        ],
        updatemenus=[
            {
                "type": "buttons",
                "direction": "left",
                "x": 0,
                "y": 1.02,
                "xanchor": "left",
                "yanchor": "bottom",
                "showactive": False,
                "buttons": [
                    {"label": "▶ Play", "method": "animate", "args": [None, play]},
                    {"label": "❚❚ Pause", "method": "animate", "args": [[None], still]},
                ],
            }
        ],
    )
    return fig


def manifold_figure(
    source: str, values: np.ndarray, *, dims: tuple[int, int], z: np.ndarray, cell: float, height: int = 520
) -> go.Figure:
    """Draw a decoded manifold grid (an image URL) with z-value ticks and a red ring at the current ``z``.

    ``values`` (n,) are the grid's z values along each axis, increasing; ``cell`` is the picture's
    pixel size in grid cells (1 / image width), so one grid cell spans one unit of the axes.
    """
    n = len(values)
    ticks = (np.arange(n) + 0.5)[::2]
    fig = go.Figure(go.Image(source=source, x0=cell / 2, y0=cell / 2, dx=cell, dy=cell, hoverinfo="skip"))
    fig.add_trace(
        go.Scatter(
            x=[grid_position(values, z[dims[0]])],
            y=[n - grid_position(values, z[dims[1]])],
            mode="markers",
            marker={"symbol": "circle-open", "size": 22, "color": "#e11d48", "line": {"width": 3}},
            hovertemplate=f"current z: z{dims[0]} = {z[dims[0]]:.2f}, z{dims[1]} = {z[dims[1]]:.2f}<extra></extra>",
        )
    )
    axis = {"tickvals": ticks, "showgrid": False, "zeroline": False}
    fig.update_xaxes(title=f"z{dims[0]} →", ticktext=[f"{v:.1f}" for v in values[::2]], range=[0, n], **axis)
    fig.update_yaxes(
        title=f"z{dims[1]} ↑",
        ticktext=[f"{v:.1f}" for v in values[::-1][::2]],
        range=[n, 0],
        scaleanchor="x",
        **axis,
    )
    fig.update_layout(height=height, margin={"l": 60, "r": 10, "t": 10, "b": 50}, showlegend=False)
    return fig
