"""Latent health: KL per dimension, active units, collapse warnings, and the aggregate posterior vs the prior."""

import math

import numpy as np
import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

import ui
from vae_core.geometry import aggregate_gaussian, dims_by_kl, mu_histograms
from vae_core.imaging import image_grid
from vae_core.inference import prior_samples, sample_aggregate
from vae_core.metrics import latent_health

MAX_HISTOGRAMS = 16
SAMPLES = 32
TILE_PX = 56
ACTIVE_COLOUR, INACTIVE_COLOUR, PRIOR_COLOUR = "#4C78A8", "#BAB0AC", "#E45756"

ui.ensure_framed(__file__)
st.title("Latent health")
st.caption(
    "Is every latent dimension doing work? The KL of a dimension (in nats) measures how much information about "
    "an image the encoder writes into it; a dimension with KL near zero copies the prior and the decoder learns "
    "to ignore it (posterior collapse). Below that, the codes the encoder actually uses are compared with the "
    "prior N(0, 1) that random samples are drawn from."
)

loaded = ui.require_model()
model, info = loaded.model, loaded.info
d = info.model_config.latent_dim
data = ui.require_eval_data(loaded)
key = ui.model_key(loaded)
n = len(data.images)


@st.cache_data(show_spinner="Measuring KL per dimension …", max_entries=8)
def health_of(model_key: str, _loaded, _images, n: int):
    return latent_health(_loaded.model, _images[:n])


health = mu = None
with ui.guard("measure the latent health"):
    health = health_of(key, loaded, data.images, n)
    mu, _ = ui.encoded(key, loaded, data.images, n)
if health is None or mu is None:
    st.stop()
kl, active = health.kl_per_dim, health.active
is_active = active.variances > active.threshold
order = dims_by_kl(kl)
scale = max(1, round(TILE_PX / max(info.model_config.image_shape[1:])))

c1, c2, c3, c4 = st.columns(4)
c1.metric("Total KL", f"{kl.sum():.2f} nats", help="Mean over the images of KL(q(z|x) || N(0, I)).")
c2.metric("Active units", f"{active.count} of {d}", help="Dimensions whose code μ varies over the data.")
c3.metric(
    "Most informative", f"z{order[0]}", f"KL {kl[order[0]]:.2f} nats", delta_color="off", delta_arrow="off"
)
c4.metric("Images measured", f"{n:,}", help=data.source)
for warning in health.warnings:
    st.warning(warning, icon=":material/warning:")
if not health.warnings:
    st.success(
        f"Healthy: {active.count} of {d} dimensions carry information about the image.",
        icon=":material/check_circle:",
    )

sort = st.toggle("Sort dimensions by KL", value=True, key="health_sort")
shown = order if sort else np.arange(d)
names = [f"z{i}" for i in shown]
left, right = st.columns(2, gap="large")
with left:
    st.subheader("KL per dimension")
    fig = go.Figure(
        go.Bar(
            x=names,
            y=kl[shown],
            marker_color=[ACTIVE_COLOUR if is_active[i] else INACTIVE_COLOUR for i in shown],
            hovertemplate="%{x}: %{y:.3f} nats<extra></extra>",
        )
    )
    fig.update_layout(
        height=340,
        margin={"l": 50, "r": 10, "t": 10, "b": 40},
        xaxis={"title": "latent dimension", "type": "category"},
        yaxis_title="KL (nats, mean over images)",
    )
    st.plotly_chart(fig, width="stretch", key="health_kl_chart")
    st.caption("Blue bars are active dimensions, grey ones inactive. The bars add up to the total KL.")
with right:
    st.subheader("Active units")
    floor = np.maximum(active.variances[shown], 1e-6)  # a log axis cannot show exact zeros
    fig = go.Figure(
        go.Bar(
            x=names,
            y=floor,
            marker_color=[ACTIVE_COLOUR if is_active[i] else INACTIVE_COLOUR for i in shown],
            hovertemplate="%{x}: variance %{y:.2e}<extra></extra>",
        )
    )
    fig.add_hline(
        y=active.threshold,
        line_dash="dash",
        line_color=PRIOR_COLOUR,
        annotation_text=f"threshold {active.threshold:g}",
        annotation_position="top left",
    )
    fig.update_layout(
        height=340,
        margin={"l": 50, "r": 10, "t": 10, "b": 40},
        xaxis={"title": "latent dimension", "type": "category"},
        yaxis={
            "title": "variance of μ over the images",
            "type": "log",
            "dtick": 1,
            "exponentformat": "power",
        },
    )
    st.plotly_chart(fig, width="stretch", key="health_au_chart")
    st.caption(
        "A dimension is active when its code μ changes from image to image by more than the dashed line "
        "(Burda et al. 2015): otherwise every image gets the same value and it carries nothing."
    )

st.subheader("Aggregate posterior against the prior")
st.caption(
    "Each panel is one latent dimension (most informative first): the bars show where the encoder puts the "
    "codes μ of the test images, the red curve the prior N(0, 1) that random samples come from. Where the curve "
    "is high but there are no bars, the decoder has rarely seen a code and a random sample there may decode to "
    "something unlike any training image. An inactive dimension is a single spike at 0."
)
dims = order[:MAX_HISTOGRAMS]
hists = mu_histograms(mu, dims=dims, bins=40)
ncols = min(4, len(dims))
nrows = math.ceil(len(dims) / ncols)
fig = make_subplots(
    rows=nrows,
    cols=ncols,
    subplot_titles=[f"z{h.dim} · KL {kl[h.dim]:.2f} · μ std {h.std:.2f}" for h in hists],
    horizontal_spacing=0.05,
    vertical_spacing=0.12 if nrows > 1 else 0.2,
)
for i, h in enumerate(hists):
    row, col = divmod(i, ncols)
    centres = (h.edges[:-1] + h.edges[1:]) / 2
    fig.add_trace(
        go.Bar(
            x=centres,
            y=h.density,
            width=np.diff(h.edges),
            marker_color=ACTIVE_COLOUR if is_active[h.dim] else INACTIVE_COLOUR,
            name="codes μ of the test images",
            showlegend=i == 0,
            hovertemplate="μ ≈ %{x:.2f}: density %{y:.2f}<extra></extra>",
        ),
        row=row + 1,
        col=col + 1,
    )
    fig.add_trace(
        go.Scatter(
            x=h.prior_z,
            y=h.prior_pdf,
            mode="lines",
            line={"color": PRIOR_COLOUR, "width": 2},
            name="prior N(0, 1)",
            showlegend=i == 0,
            hoverinfo="skip",
        ),
        row=row + 1,
        col=col + 1,
    )
    # A spike would squash the prior curve flat; cap the axis so both stay readable.
    fig.update_yaxes(range=[0, max(0.6, min(float(h.density.max()), 2.0)) * 1.05], row=row + 1, col=col + 1)
fig.update_layout(
    height=230 * nrows + 80,
    margin={"l": 40, "r": 10, "t": 80, "b": 30},
    bargap=0,
    legend={"orientation": "h", "yref": "container", "y": 1.0, "yanchor": "top", "x": 0.0},
)
fig.update_annotations(font_size=12)
st.plotly_chart(fig, width="stretch", key="health_hist_chart")
if d > MAX_HISTOGRAMS:
    st.caption(f"Showing the {MAX_HISTOGRAMS} most informative of {d} dimensions.")


def next_seed() -> None:
    st.session_state["health_seed"] += 1


@st.fragment
def samples() -> None:
    st.subheader("Samples from the prior and from the codes the encoder uses")
    st.session_state.setdefault("health_seed", 0)
    seed = st.session_state["health_seed"]
    with ui.guard("draw samples"):
        mean, cov = aggregate_gaussian(mu)
        from_prior = prior_samples(model, n=SAMPLES, seed=seed)
        from_codes = sample_aggregate(model, mean, cov, n=SAMPLES, seed=seed)
        a, b = st.columns(2, gap="large")
        a.image(
            image_grid(from_prior, ncols=8, scale=scale),
            caption="z drawn from the prior N(0, I)",
            output_format="PNG",
        )
        b.image(
            image_grid(from_codes, ncols=8, scale=scale),
            caption="z drawn from a Gaussian fitted to the test images' codes",
            output_format="PNG",
        )
        st.caption(
            "The left grid samples the prior, as a VAE's random samples normally do; the right grid samples a "
            "Gaussian with the mean and covariance of the codes μ of the test images, i.e. only the region real "
            "images occupy. Blurry or odd digits on the left that have no counterpart on the right come from the "
            "prior's *holes*: regions the encoder never uses, so the decoder never learned what to draw there."
        )
    st.button("New samples", icon=":material/casino:", key="health_resample", on_click=next_seed)


samples()
