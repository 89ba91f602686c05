"""Pictures for teaching: the reparameterisation trick drawn for one image, and the export size for slides."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from vae_app.figures import HIGHLIGHT, class_colour
from vae_app.widgets import guard
from vae_core.export import labelled_grid
from vae_core.geometry import dims_by_kl, ellipse_outline
from vae_core.health import kl_per_dimension_of
from vae_core.imaging import EXPORT_SCALES, SLIDE_SCALE, png_bytes
from vae_core.inference import EpsDraws, reparameterised_draws
from vae_core.model import VAE

DRAWS = 8  # codes drawn per press of "Draw new ε"
DRAWS_KEY = "home_eps_draws"  # how often "Draw new ε" was pressed: the seed of the noise
X_KEY, Y_KEY = "home_reparam_x", "home_reparam_y"  # the two dimensions shown
FOR_KEY = "home_reparam_for"  # which model and image they were chosen for
PRIOR_GREY = "#6b7280"
SAMPLE_COLOUR = "#e11d48"  # the drawn codes, the same red as Decode's current-z ring
EXPLANATION = (
    "Each red dot is one code z = μ + σ ⊙ ε, with the noise ε ~ N(0, I) drawn on its own and then scaled by σ "
    "and shifted by μ: the randomness sits only in ε, so z is a smooth function of μ and σ and training can "
    "pass the gradient of the loss back through z into the encoder (Kingma & Welling 2014, §2.4). "
    "Press **Draw new ε**: the dots jump but stay in the shaded q(z|x) (about 39% inside 1σ, 86% inside 2σ), "
    "each decodes to a slightly different image, and the KL term pulls the whole ellipse towards the dashed "
    "prior N(0, I)."
)


def _both(fig: go.Figure, trace: go.Scatter, *, wide: dict | None = None) -> None:
    """Add ``trace`` to both panels, listed once in the legend; ``wide`` overrides properties on the left one."""
    fig.add_trace(go.Scatter(trace).update(**(wide or {})), row=1, col=1)
    fig.add_trace(go.Scatter(trace).update(showlegend=False), row=1, col=2)


def reparameterisation_figure(
    mu: np.ndarray, std: np.ndarray, draws: EpsDraws, *, dims: tuple[int, int], colour: str, height: int = 420
) -> go.Figure:
    """Draw q(z|x) = N(mu, std^2) in two dimensions: 1σ and 2σ ellipses, mu, the drawn codes, the prior.

    The left panel shows the prior's frame (its 1σ and 2σ circles), the right one zooms to mu ± 3σ,
    where a posterior much narrower than the prior still shows its spread. Both keep one unit the
    same length on either axis, so circles stay round.

    Args:
        mu: the image's posterior mean (D,).
        std: its standard deviation (D,).
        draws: codes z = mu + std * eps (``inference.reparameterised_draws``).
        dims: the two dimensions shown, (x, y).
        colour: the colour of the image's class.
        height: figure height in pixels.
    """
    a, b = dims
    centre, radii = mu[[a, b]].astype(np.float64), np.maximum(std[[a, b]].astype(np.float64), 1e-6)
    z = draws.z[:, [a, b]]
    fig = make_subplots(
        rows=1,
        cols=2,
        subplot_titles=("Beside the prior N(0, I)", "Close up: μ ± 3σ"),
        horizontal_spacing=0.1,
    )
    for k, dash in ((1, "dash"), (2, "dot")):
        ring = ellipse_outline((0.0, 0.0), (1.0, 1.0), k=k)
        _both(
            fig,
            go.Scatter(
                x=ring[:, 0],
                y=ring[:, 1],
                mode="lines",
                name=f"prior N(0, I), {k}σ",
                line={"color": PRIOR_GREY, "dash": dash, "width": 1.5},
                hoverinfo="skip",
            ),
        )
    for k, alpha in ((2, 0.12), (1, 0.28)):
        ring = ellipse_outline(centre, radii, k=k)
        _both(
            fig,
            go.Scatter(
                x=ring[:, 0],
                y=ring[:, 1],
                mode="lines",
                fill="toself",
                fillcolor=_rgba(colour, alpha),
                line={"color": colour, "width": 1.5},
                name=f"q(z|x), {k}σ",
                hoverinfo="skip",
            ),
        )
    spokes_x = np.column_stack([np.full(len(z), centre[0]), z[:, 0], np.full(len(z), np.nan)]).ravel()
    spokes_y = np.column_stack([np.full(len(z), centre[1]), z[:, 1], np.full(len(z), np.nan)]).ravel()
    _both(
        fig,
        go.Scatter(
            x=spokes_x,
            y=spokes_y,
            mode="lines",
            name="σ ⊙ ε",
            line={"color": SAMPLE_COLOUR, "width": 1},
            opacity=0.45,
            hoverinfo="skip",
        ),
    )
    _both(
        fig,
        go.Scatter(
            x=z[:, 0],
            y=z[:, 1],
            mode="markers+text",
            name="z = μ + σ ⊙ ε",
            text=[str(i + 1) for i in range(len(z))],
            textposition="top right",
            textfont={"color": SAMPLE_COLOUR},
            customdata=draws.eps[:, [a, b]],
            marker={"color": SAMPLE_COLOUR, "size": 9, "line": {"color": "white", "width": 1}},
            hovertemplate=f"draw %{{text}}<br>z{a} = %{{x:.3f}}, z{b} = %{{y:.3f}}<br>"
            "ε = (%{customdata[0]:+.2f}, %{customdata[1]:+.2f})<extra></extra>",
        ),
        wide={"mode": "markers", "marker": {"size": 6}},  # numbers would crowd a small posterior
    )
    _both(
        fig,
        go.Scatter(
            x=[centre[0]],
            y=[centre[1]],
            mode="markers",
            name="μ",
            marker={"symbol": "star", "size": 16, "color": HIGHLIGHT, "line": {"color": "white", "width": 1}},
            hovertemplate=f"μ: z{a} = {centre[0]:.3f}, z{b} = {centre[1]:.3f}<br>"
            f"σ = ({radii[0]:.3f}, {radii[1]:.3f})<extra></extra>",
        ),
    )
    wide = max(
        2.3, float(np.abs(np.concatenate([z.ravel(), centre + 2.2 * radii, centre - 2.2 * radii])).max())
    )
    near = 3.2 * float(radii.max())
    for col, (lo_x, hi_x, lo_y, hi_y) in (
        (1, (-wide, wide, -wide, wide)),
        (2, (centre[0] - near, centre[0] + near, centre[1] - near, centre[1] + near)),
    ):
        fig.update_xaxes(range=[lo_x, hi_x], title_text=f"z{a}", zeroline=False, row=1, col=col)
        axis = "x" if col == 1 else "x2"
        fig.update_yaxes(
            range=[lo_y, hi_y], title_text=f"z{b}", zeroline=False, scaleanchor=axis, row=1, col=col
        )
    # The close-up's frame, outlined on the left panel.
    fig.add_shape(
        type="rect",
        x0=centre[0] - near,
        x1=centre[0] + near,
        y0=centre[1] - near,
        y1=centre[1] + near,
        line={"color": HIGHLIGHT, "width": 1, "dash": "dot"},
        row=1,
        col=1,
    )
    fig.update_layout(
        height=height,
        margin={"l": 50, "r": 10, "t": 60, "b": 50},
        legend={"itemsizing": "constant", "orientation": "h", "y": -0.18, "yanchor": "top"},
    )
    return fig


def _rgba(hex_colour: str, alpha: float) -> str:
    r, g, b = (int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r}, {g}, {b}, {alpha})"


def _reset_dims(ident: str, order: list[int]) -> None:
    """Show this image's two highest-KL dimensions whenever the model or the image changes."""
    if st.session_state.get(FOR_KEY) != ident or st.session_state.get(X_KEY) not in order:
        st.session_state[FOR_KEY] = ident
        st.session_state[X_KEY], st.session_state[Y_KEY] = order[0], order[1]


def _new_eps() -> None:
    st.session_state[DRAWS_KEY] = int(st.session_state.get(DRAWS_KEY, 0)) + 1


@st.fragment
def reparameterisation_panel(
    model: VAE, mu: np.ndarray, logvar: np.ndarray, *, label: int, ident: str
) -> None:
    """Show q(z|x) of one image in two chosen dimensions, codes drawn through ε, and what they decode to.

    Args:
        model: the VAE.
        mu: the image's posterior mean (D,).
        logvar: its log-variance (D,).
        label: its class, for the colour.
        ident: names the model and the image; the dimensions reset when it changes.
    """
    st.subheader("The reparameterisation trick, drawn")
    st.caption(
        "The example above: its posterior q(z|x) = N(μ, σ²) in two of its latent dimensions, shaded at 1σ and "
        "2σ, and codes drawn from it the way training draws them."
    )
    d = len(mu)
    if d < 2:
        st.info("This model has one latent dimension; the picture needs two.")
        return
    st.session_state.setdefault(DRAWS_KEY, 0)
    kl = kl_per_dimension_of(mu[None], logvar[None])
    order = [int(i) for i in dims_by_kl(kl)]
    _reset_dims(ident, order)
    fig_col, img_col = st.columns([3, 1], gap="large")
    with img_col:
        x_dim = st.selectbox(
            "Horizontal dimension",
            order,
            format_func=lambda i: f"z{i} · KL {kl[i]:.2f} nats",
            key=X_KEY,
            help="Listed by this image's KL, highest first: the dimensions its code uses most.",
        )
        y_options = [i for i in order if i != x_dim]
        if st.session_state.get(Y_KEY) not in y_options:
            st.session_state[Y_KEY] = y_options[0]
        y_dim = st.selectbox(
            "Vertical dimension", y_options, format_func=lambda i: f"z{i} · KL {kl[i]:.2f} nats", key=Y_KEY
        )
        st.button("Draw new ε", icon=":material/casino:", key="home_draw_eps", on_click=_new_eps)
        seed = int(st.session_state[DRAWS_KEY])
        draws = None
        with guard("draw codes through ε"):
            draws = reparameterised_draws(model, mu, logvar, n=DRAWS, seed=seed)
        if draws is None:
            return
        grid = labelled_grid(draws.images, labels=[str(i + 1) for i in range(DRAWS)], ncols=4, scale=2)
        st.image(png_bytes(grid), output_format="PNG", width="stretch")
        st.caption(f"The {DRAWS} codes decoded, numbered as on the plot. Draw {seed + 1} (seed {seed}).")
    with fig_col:
        std = np.exp(0.5 * np.asarray(logvar, dtype=np.float64))
        fig = reparameterisation_figure(
            np.asarray(mu), std, draws, dims=(int(x_dim), int(y_dim)), colour=class_colour(label)
        )
        st.plotly_chart(fig, key="home_reparam")
    st.markdown(EXPLANATION)


def export_scale_picker(*, key: str, image_shape: tuple[int, int, int], label: str = "Export size") -> int:
    """Offer the enlargements of exported pictures (``imaging.EXPORT_SCALES``) and return the chosen one.

    Args:
        key: the widget's session-state key (carry the page's name).
        image_shape: the model's (C, H, W), to show the size in pixels.
        label: the widget's label.

    Returns:
        The chosen whole-number scale, >= ``imaging.MIN_EXPORT_SCALE``.
    """
    side = max(image_shape[1:])
    if st.session_state.get(key) not in EXPORT_SCALES:
        st.session_state[key] = EXPORT_SCALES[0]
    return int(
        st.selectbox(
            label,
            EXPORT_SCALES,
            key=key,
            format_func=lambda s: (
                f"{s}× · {s * side} px per image" + (" (slides)" if s == SLIDE_SCALE else "")
            ),
            help="Every model pixel becomes a sharp square block (nearest-neighbour), so pictures stay crisp "
            "when projected. 3× is the least a slide needs; 8× suits a full-screen slide.",
        )
    )
