"""Latent health: KL per dimension, active units, collapse warnings, and the aggregate posterior vs the prior."""

import numpy as np
import streamlit as st

from vae_app import charts, state
from vae_app.widgets import guard, show_images
from vae_core.geometry import aggregate_gaussian, dims_by_kl, mu_histograms
from vae_core.health import latent_health_of
from vae_core.inference import prior_samples, sample_aggregate

MAX_HISTOGRAMS = 16
SAMPLES = 32
TILE_PX = 56

st.title("Latent health")
st.caption(
    "Is every latent dimension doing work? The KL of a dimension (in nats) measures how much information about "
    "an image the encoder writes into it; a dimension with KL near zero copies the prior and the decoder learns "
    "to ignore it (posterior collapse). Below that, the codes the encoder actually uses are compared with the "
    "prior N(0, 1) that random samples are drawn from."
)

loaded = state.require_model()
model, info = loaded.model, loaded.info
d = info.model_config.latent_dim
data, atlas = state.require_atlas(loaded)
n = len(atlas)
# The atlas's posteriors: the same codes, and so the same KL, as every other page.
health = latent_health_of(atlas.mu, atlas.logvar)
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
left, right = st.columns(2, gap="large")
with left:
    st.subheader("KL per dimension")
    st.plotly_chart(
        charts.kl_bars(kl, dims=shown, is_active=is_active), width="stretch", key="health_kl_chart"
    )
    st.caption("Blue bars are active dimensions, grey ones inactive. The bars add up to the total KL.")
with right:
    st.subheader("Active units")
    fig = charts.active_unit_bars(
        active.variances, threshold=active.threshold, dims=shown, is_active=is_active
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
hists = mu_histograms(atlas.mu, dims=order[:MAX_HISTOGRAMS], bins=40)
st.plotly_chart(
    charts.mu_histogram_grid(hists, kl=kl, is_active=is_active), width="stretch", key="health_hist_chart"
)
if d > MAX_HISTOGRAMS:
    st.caption(f"Showing the {MAX_HISTOGRAMS} most informative of {d} dimensions.")


def next_seed() -> None:
    st.session_state["health_seed"] += 1


@st.fragment
def samples() -> None:
    st.subheader("Samples from the prior and from the codes the encoder uses")
    st.session_state.setdefault("health_seed", 0)
    seed = st.session_state["health_seed"]
    with guard("draw samples"):
        mean, cov = aggregate_gaussian(atlas.mu)
        from_prior = prior_samples(model, n=SAMPLES, seed=seed)
        from_codes = sample_aggregate(model, mean, cov, n=SAMPLES, seed=seed)
        a, b = st.columns(2, gap="large")
        with a:
            show_images(from_prior, ncols=8, scale=scale, caption="z drawn from the prior N(0, I)")
        with b:
            show_images(
                from_codes,
                ncols=8,
                scale=scale,
                caption="z drawn from a Gaussian fitted to the test images' codes",
            )
        st.caption(
            "The left grid samples the prior, as a VAE's random samples normally do; the right grid samples a "
            "Gaussian with the mean and covariance of the codes μ of the test images, i.e. only the region real "
            "images occupy. Blurry or odd digits on the left that have no counterpart on the right come from the "
            "prior's *holes*: regions the encoder never uses, so the decoder never learned what to draw there."
        )
    st.button("New samples", icon=":material/casino:", key="health_resample", on_click=next_seed)


samples()
