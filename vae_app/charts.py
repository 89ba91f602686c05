"""The Plotly charts the views share that are not maps: code bars, -ELBO histograms, KL bars, loss curves."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from vae_app.escape import plot_text

ACTIVE_COLOUR, INACTIVE_COLOUR, PRIOR_COLOUR = "#4C78A8", "#BAB0AC", "#E45756"
TRAIN_COLOUR, TEST_COLOUR = "#4f46e5", "#f97316"


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


def _dim_colours(is_active: np.ndarray, dims: Sequence[int]) -> list[str]:
    return [ACTIVE_COLOUR if is_active[i] else INACTIVE_COLOUR for i in dims]


def kl_bars(kl: np.ndarray, *, dims: Sequence[int], is_active: np.ndarray, height: int = 340) -> go.Figure:
    """Draw the KL of each latent dimension in ``dims`` order, active dimensions blue, inactive grey."""
    fig = go.Figure(
        go.Bar(
            x=[f"z{i}" for i in dims],
            y=np.asarray(kl)[list(dims)],
            marker_color=_dim_colours(is_active, dims),
            hovertemplate="%{x}: %{y:.3f} nats<extra></extra>",
        )
    )
    fig.update_layout(
        height=height,
        margin={"l": 50, "r": 10, "t": 10, "b": 40},
        xaxis={"title": "latent dimension", "type": "category"},
        yaxis_title="KL (nats, mean over images)",
    )
    return fig


def active_unit_bars(
    variances: np.ndarray, *, threshold: float, dims: Sequence[int], is_active: np.ndarray, height: int = 340
) -> go.Figure:
    """Draw the variance of each dimension's mu over the images on a log axis, with the threshold dashed."""
    floor = np.maximum(np.asarray(variances)[list(dims)], 1e-6)  # a log axis cannot show exact zeros
    fig = go.Figure(
        go.Bar(
            x=[f"z{i}" for i in dims],
            y=floor,
            marker_color=_dim_colours(is_active, dims),
            hovertemplate="%{x}: variance %{y:.2e}<extra></extra>",
        )
    )
    fig.add_hline(
        y=threshold,
        line_dash="dash",
        line_color=PRIOR_COLOUR,
        annotation_text=f"threshold {threshold:g}",
        annotation_position="top left",
    )
    fig.update_layout(
        height=height,
        margin={"l": 50, "r": 10, "t": 10, "b": 40},
        xaxis={"title": "latent dimension", "type": "category"},
        yaxis={
            "title": "variance of μ over the images",
            "type": "log",
            "dtick": 1,
            "exponentformat": "power",
        },
    )
    return fig


def mu_histogram_grid(hists: Sequence, *, kl: np.ndarray, is_active: np.ndarray, ncols: int = 4) -> go.Figure:
    """Draw one panel per ``geometry.MuHistogram``: the density of mu as bars, the prior N(0, 1) as a red curve."""
    from plotly.subplots import make_subplots

    ncols = max(1, min(ncols, len(hists)))
    nrows = -(-len(hists) // ncols)
    fig = make_subplots(
        rows=nrows,
        cols=ncols,
        subplot_titles=[f"z{h.dim} · KL {kl[h.dim]:.2f} · μ std {h.std:.2f}" for h in hists],
        horizontal_spacing=0.05,
        vertical_spacing=0.12 if nrows > 1 else 0.2,
    )
    for i, h in enumerate(hists):
        row, col = divmod(i, ncols)
        bars = go.Bar(
            x=(h.edges[:-1] + h.edges[1:]) / 2,
            y=h.density,
            width=np.diff(h.edges),
            marker_color=ACTIVE_COLOUR if is_active[h.dim] else INACTIVE_COLOUR,
            name="codes μ of the test images",
            showlegend=i == 0,
            hovertemplate="μ ≈ %{x:.2f}: density %{y:.2f}<extra></extra>",
        )
        prior = go.Scatter(
            x=h.prior_z,
            y=h.prior_pdf,
            mode="lines",
            line={"color": PRIOR_COLOUR, "width": 2},
            name="prior N(0, 1)",
            showlegend=i == 0,
            hoverinfo="skip",
        )
        fig.add_trace(bars, row=row + 1, col=col + 1)
        fig.add_trace(prior, row=row + 1, col=col + 1)
        # A spike would squash the prior curve flat; cap the axis so both stay readable.
        fig.update_yaxes(
            range=[0, max(0.6, min(float(h.density.max()), 2.0)) * 1.05], row=row + 1, col=col + 1
        )
    fig.update_layout(
        height=230 * nrows + 80,
        margin={"l": 40, "r": 10, "t": 80, "b": 30},
        bargap=0,
        legend={"orientation": "h", "yref": "container", "y": 1.0, "yanchor": "top", "x": 0.0},
    )
    fig.update_annotations(font_size=12)
    return fig


def nll_reference_bars(
    mine: Sequence[tuple[str, float]], references: Sequence[tuple[str, float]]
) -> go.Figure:
    """Draw this model's -ELBO (blue) and NLL (orange) beside published figures (grey), in nats."""
    colours = ["#4C78A8", "#F58518"][: len(mine)] + ["#BAB0AC"] * len(references)
    bars = [(label, float(value), c) for (label, value), c in zip([*mine, *references], colours)][::-1]
    fig = go.Figure(
        go.Bar(
            y=[b[0] for b in bars],
            x=[b[1] for b in bars],
            orientation="h",
            marker_color=[b[2] for b in bars],
            text=[f"{b[1]:.2f}" for b in bars],
            textposition="outside",
            hovertemplate="%{y}: %{x:.2f} nats<extra></extra>",
        )
    )
    fig.update_layout(
        height=60 * len(bars) + 80,
        margin={"l": 10, "r": 40, "t": 10, "b": 40},
        xaxis={"title": "nats per image (lower is better)", "range": [0, max(b[1] for b in bars) * 1.15]},
    )
    return fig


def typicality_histogram(
    elbo: np.ndarray, *, typical_edge: float, unusual_edge: float, shown: int
) -> go.Figure:
    """Draw every image's -ELBO with dashed lines where the ``shown`` most and least typical images begin."""
    fig = go.Figure(
        go.Histogram(x=elbo, nbinsx=60, marker_color="#4C78A8", hovertemplate="%{y} images<extra></extra>")
    )
    for edge, colour, text, side in (
        (typical_edge, "#54A24B", f"← {shown} most typical", "top left"),
        (unusual_edge, "#E45756", f"{shown} least typical →", "top right"),
    ):
        fig.add_vline(
            x=float(edge), line_dash="dash", line_color=colour, annotation_text=text, annotation_position=side
        )
    fig.update_layout(
        height=300,
        margin={"l": 50, "r": 10, "t": 30, "b": 40},
        xaxis_title="−ELBO of one image (nats)",
        yaxis_title="images",
        bargap=0.05,
    )
    return fig


LOSS_PANELS = (("total", "−ELBO (total)"), ("recon", "Reconstruction"), ("kl", "KL divergence"))


def loss_curves(history: Sequence[dict[str, float]], *, height: int = 320) -> go.Figure:
    """Draw the training history as three panels (total, reconstruction, KL) against epoch.

    Solid lines are the training images, dashed lines the held-out test images, in nats per image.
    """
    fig = make_subplots(rows=1, cols=3, subplot_titles=[t for _, t in LOSS_PANELS], horizontal_spacing=0.07)
    epochs = [int(r["epoch"]) for r in history]
    for col, (key, _) in enumerate(LOSS_PANELS, start=1):
        for split, prefix, colour, dash in (
            ("train", "train", TRAIN_COLOUR, "solid"),
            ("test", "val", TEST_COLOUR, "dash"),
        ):
            fig.add_trace(
                go.Scatter(
                    x=epochs,
                    y=[r[f"{prefix}_{key}"] for r in history],
                    mode="lines+markers",
                    name=split,
                    line={"color": colour, "dash": dash},
                    legendgroup=split,
                    showlegend=col == 1,
                ),
                row=1,
                col=col,
            )
        fig.update_xaxes(title_text="epoch", row=1, col=col, dtick=max(1, -(-len(epochs) // 5)))
    fig.update_yaxes(title_text="nats per image", row=1, col=1)
    fig.update_layout(
        height=height, margin={"l": 10, "r": 10, "t": 40, "b": 10}, legend={"orientation": "h", "y": -0.25}
    )
    return fig


def path_log_prior(
    t: np.ndarray, shown: np.ndarray, other: np.ndarray, *, names: tuple[str, str], height: int = 320
) -> go.Figure:
    """Draw log p(z) along an interpolation path (``shown``, solid) beside the other method's (dashed)."""
    fig = go.Figure()
    fig.add_scatter(x=t, y=shown, mode="lines+markers", name=f"{names[0]} (shown)", line={"color": "#4f46e5"})
    fig.add_scatter(x=t, y=other, mode="lines", line={"dash": "dash", "color": "#94a3b8"}, name=names[1])
    fig.update_layout(
        height=height,
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        legend={"orientation": "h", "y": 1.12},
        xaxis_title="t (0 = A's code, 1 = B's code)",
        yaxis_title="log p(z) under the prior (nats)",
    )
    return fig


def projection_histograms(
    groups: Sequence[tuple[str, np.ndarray, str]], *, marker: float | None = None, height: int = 300
) -> go.Figure:
    """Draw each group's projections onto an attribute direction as overlaid histograms on shared bins.

    ``groups`` holds (name, projections (N,), colour); 0 is group 1's mean code, 1 group 2's.
    ``marker`` draws a dashed line where the image being moved lies now.
    """
    values = np.concatenate([np.asarray(v, dtype=float) for _, v, _ in groups])
    lo, hi = float(values.min()), float(values.max())
    size = (hi - lo) / 40 if hi > lo else 1.0
    fig = go.Figure()
    for name, v, colour in groups:
        fig.add_histogram(
            x=v,
            name=name,
            marker_color=colour,
            opacity=0.6,
            xbins={"start": lo, "end": hi + size, "size": size},
            histnorm="probability",
            hovertemplate=f"{name}<br>%{{x}}: %{{y:.1%}}<extra></extra>",
        )
    if marker is not None:
        fig.add_vline(
            x=float(marker),
            line_dash="dash",
            line_color="#111827",
            annotation_text="your image",
            annotation_position="top left",
            line_width=2,
        )
    fig.update_layout(
        barmode="overlay",
        height=height,
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        legend={"orientation": "h", "y": 1.12},
        xaxis_title="position (0: group 1's mean, 1: group 2's)",
        yaxis_title="share of the group",
        bargap=0.02,
    )
    return fig


def class_share_bars(
    shares: Sequence[tuple[str, np.ndarray]], *, class_labels: Sequence[str], colours: Sequence[str]
) -> go.Figure:
    """Draw, per way of sampling, the share of its samples the classifier puts in each class.

    ``shares`` holds (name, fractions (K,)), one bar group per class, coloured by ``colours`` (K,).
    """
    fig = go.Figure()
    for j, (name, fractions) in enumerate(shares):
        fig.add_bar(
            x=list(class_labels),
            y=fractions,
            name=name,
            marker_color=list(colours),
            marker_pattern_shape="" if j == 0 else "/",
            opacity=1.0 if j == 0 else 0.55,
            hovertemplate=f"{name}<br>class %{{x}}: %{{y:.0%}}<extra></extra>",
        )
    fig.update_layout(
        barmode="group",
        height=280,
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        legend={"orientation": "h", "y": 1.15},
        xaxis_title="class the classifier assigns",
        yaxis={"title": "share of the samples", "tickformat": ".0%"},
        xaxis_type="category",
    )
    return fig


MODEL_COLOURS = ("#4f46e5", "#f97316")  # model A, model B (Compare)


def loss_overlay(histories: dict[str, Sequence[dict[str, float]]], *, height: int = 320) -> go.Figure:
    """Draw several models' training histories over each other: test (solid) and train (dotted) per panel.

    Args:
        histories: a label per model (e.g. "A: mnist-mlp-2") and its per-epoch records, as checkpoints store them.
        height: the figure's height in pixels.
    """
    fig = make_subplots(rows=1, cols=3, subplot_titles=[t for _, t in LOSS_PANELS], horizontal_spacing=0.07)
    for index, (raw_label, history) in enumerate(histories.items()):
        label = plot_text(raw_label)  # Plotly renders HTML in names and hover text; a model's name is text
        colour = MODEL_COLOURS[index % len(MODEL_COLOURS)]
        epochs = [int(r["epoch"]) for r in history]
        for col, (key, _) in enumerate(LOSS_PANELS, start=1):
            for split, prefix, dash in (("test", "val", "solid"), ("train", "train", "dot")):
                fig.add_trace(
                    go.Scatter(
                        x=epochs,
                        y=[r[f"{prefix}_{key}"] for r in history],
                        mode="lines",
                        name=f"{label} ({split})",
                        line={"color": colour, "dash": dash},
                        legendgroup=f"{label} ({split})",
                        showlegend=col == 1,
                        hovertemplate=f"{label}, {split}<br>epoch %{{x}}: %{{y:.1f}} nats<extra></extra>",
                    ),
                    row=1,
                    col=col,
                )
    for col in range(1, 4):
        fig.update_xaxes(title_text="epoch", row=1, col=col)
    fig.update_yaxes(title_text="nats per image", row=1, col=1)
    fig.update_layout(
        height=height, margin={"l": 10, "r": 10, "t": 40, "b": 10}, legend={"orientation": "h", "y": -0.3}
    )
    return fig
