"""The Plotly figures the views share, drawn with the one class palette (``vae_core.imaging.PALETTE``).

A class has the same colour on every page, in every chart and in every exported image.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import plotly.graph_objects as go

from vae_core.atlas import Atlas
from vae_core.imaging import label_hex

MARKER_SIZE = 5
SCATTERGL_ABOVE = 1000  # WebGL draws thousands of points smoothly; SVG is crisper for a few
HIGHLIGHT = "#111827"


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
) -> go.Figure:
    """Draw the atlas's map: one trace per class (or one coloured by -ELBO), then ``markers`` on top.

    Every atlas point carries its index into the atlas in ``customdata``, so a selection maps
    back to images whatever trace it came from.
    """
    coords, labels, elbo = atlas.coords, atlas.labels, atlas.elbo
    trace = go.Scattergl if len(coords) > SCATTERGL_ABOVE else go.Scatter
    fig = go.Figure()
    if colour_by == "class":
        for label in np.unique(labels):
            idx = np.flatnonzero(labels == label)
            name = class_name(class_names, int(label))
            fig.add_trace(
                trace(
                    x=coords[idx, 0],
                    y=coords[idx, 1],
                    mode="markers",
                    name=name,
                    customdata=np.column_stack([idx, elbo[idx]]),
                    marker={"size": MARKER_SIZE, "opacity": opacity, "color": class_colour(int(label))},
                    hovertemplate=f"{name}<br>#%{{customdata[0]}}<br>−ELBO %{{customdata[1]:.1f}} nats<extra></extra>",
                )
            )
    else:
        names = [class_name(class_names, int(c)) for c in labels]
        fig.add_trace(
            trace(
                x=coords[:, 0],
                y=coords[:, 1],
                mode="markers",
                name="images",
                customdata=np.column_stack([np.arange(len(coords)), elbo]),
                text=names,
                marker={
                    "size": MARKER_SIZE,
                    "opacity": opacity,
                    "color": elbo,
                    "colorscale": "Viridis",
                    "colorbar": {"title": {"text": "−ELBO (nats)"}},
                },
                hovertemplate="%{text}<br>#%{customdata[0]}<br>−ELBO %{customdata[1]:.1f} nats<extra></extra>",
            )
        )
    for marker in markers:
        fig.add_trace(_marker_trace(marker))
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


def _marker_trace(marker: Marker) -> go.Scatter:
    coords = np.atleast_2d(np.asarray(marker.coords, dtype=np.float64))
    return go.Scatter(
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


def mu_sigma_bars(mu: np.ndarray, std: np.ndarray, *, height: int = 300) -> go.Figure:
    """Draw a code as bars of mu with sigma error bars, over the prior's +-1 band."""
    dims = [f"z{i}" for i in range(len(mu))]
    fig = go.Figure(
        go.Bar(
            x=dims,
            y=mu,
            error_y={"type": "data", "array": std, "visible": True},
            marker_color="#4f46e5",
            name="μ ± σ",
            hovertemplate="%{x}: μ = %{y:.2f}<extra></extra>",
        )
    )
    fig.add_hrect(
        y0=-1,
        y1=1,
        fillcolor="#94a3b8",
        opacity=0.18,
        line_width=0,
        annotation_text="prior N(0, 1): ±1",
        annotation_position="top left",
    )
    fig.update_layout(
        height=height,
        margin={"l": 10, "r": 10, "t": 20, "b": 10},
        xaxis_title="latent dimension",
        yaxis_title="μ (error bar: σ)",
        showlegend=False,
    )
    return fig


def elbo_histogram(reference: np.ndarray, *, value: float | None = None, height: int = 280) -> go.Figure:
    """Draw the -ELBO of the atlas's images, with one image's value as a red line."""
    fig = go.Figure(go.Histogram(x=reference, nbinsx=40, marker_color="#94a3b8", name="test images"))
    if value is not None:
        fig.add_vline(
            x=value,
            line_color="#dc2626",
            line_width=3,
            annotation_text="this image",
            annotation_position="top",
        )
    fig.update_layout(
        height=height,
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        showlegend=False,
        bargap=0.05,
        xaxis_title="−ELBO (nats; lower = better explained)",
        yaxis_title="images",
    )
    return fig
