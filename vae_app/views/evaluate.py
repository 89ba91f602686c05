"""Evaluate: test ELBO, importance-weighted NLL beside the literature, and the most and least typical images."""

import time

import numpy as np
import streamlit as st

from vae_app import cache, charts, state
from vae_app.widgets import ELBO_HELP, guard, nll_references
from vae_core.export import labelled_grid
from vae_core.metrics import ELBO_ESTIMATOR, elbo_means, iwae_cost, iwae_nll, rank_typicality

K_CHOICES = (1, 10, 50, 100, 500, 1000, 5000)
SHOWN = 16
TILE_PX = 56
SLOW_SECONDS = 120

st.title("Evaluate")
st.caption(
    "How well does the model explain test images it never trained on? The negative ELBO is the loss it "
    "trained on: reconstruction error plus KL. It is an upper bound on the true negative log-likelihood "
    "−log p(x), which the importance-weighted estimate approaches as it averages over more samples K. "
    "All figures are in nats per image: lower is better."
)

loaded = state.require_model()
model, info = loaded.model, loaded.info
data, atlas = state.require_atlas(loaded)
key = state.model_key(loaded)
n_all = len(atlas)
elbo = elbo_means(atlas.recon, atlas.kl)  # the mean of the per-image figures every page shows

c1, c2, c3, c4 = st.columns(4)
c1.metric("Test −ELBO", f"{elbo.total:.2f} nats", help=f"Reconstruction + KL. {ELBO_HELP}")
c2.metric("Reconstruction", f"{elbo.recon:.2f} nats", help="−log p(x|z), mean over the estimator's z draws.")
c3.metric("KL", f"{elbo.kl:.2f} nats", help="KL(q(z|x) ‖ N(0, I)), closed form: what the code carries.")
c4.metric("Images", f"{n_all:,}", help=data.source)
st.caption(f"Means of each image's −ELBO and its parts over {data.source}, estimated with {ELBO_ESTIMATOR}.")

st.subheader("Importance-weighted negative log-likelihood")
results = st.session_state.setdefault("evaluate_nll", {})


def best_nll() -> tuple[int, int, float, float] | None:
    """Return (K, images, NLL, seconds) of this model's and images' run with the largest K, or None."""
    mine = [(k, n, *r) for (m, dk, k, n), r in results.items() if (m, dk) == (key, data.key)]
    return max(mine, default=None)


@st.fragment
def nll_panel() -> None:
    c_k, c_n, c_cost = st.columns([3, 2, 4], vertical_alignment="bottom")
    k = c_k.select_slider(
        "Samples per image K",
        K_CHOICES,
        value=100,
        key="evaluate_k",
        help="K = 1 is the ELBO itself; larger K gives a tighter estimate (Burda et al. 2015 used 5000).",
    )
    sizes = sorted({s for s in (100, 500, 1000) if s < n_all} | {n_all})
    n = c_n.selectbox("Images", sizes, index=0, key="evaluate_n", format_func=lambda s: f"{s:,}")
    cost = iwae_cost(n=n, k=k, seconds_per_decode=cache.decode_rate(key, data.key, loaded, data.images))
    c_cost.markdown(
        f"Cost: {n:,} × {k:,} = **{cost.decodes:,} decodes**, about **{cost.seconds:,.0f} s** on this machine"
        if cost.seconds >= 1
        else f"Cost: {n:,} × {k:,} = **{cost.decodes:,} decodes**, under a second on this machine"
    )
    if cost.seconds > SLOW_SECONDS:
        st.warning(
            f"This run would take about {cost.seconds / 60:.0f} minutes; fewer images or a smaller K gives a "
            "quick estimate."
        )
    if st.button("Estimate the NLL", type="primary", icon=":material/play_arrow:", key="evaluate_run"):
        bar = st.progress(0.0, text=f"Estimating with K = {k:,} on {n:,} images …")
        with guard("estimate the NLL"):
            started = time.perf_counter()
            value = iwae_nll(
                model, data.images[:n], k=k, on_progress=lambda f: bar.progress(min(1.0, f), text=f"{f:.0%}")
            )
            results[(key, data.key, k, n)] = (value, time.perf_counter() - started)
        bar.empty()
    best = best_nll()
    if best is not None:
        k_done, n_done, value, seconds = best
        a, b = st.columns(2)
        a.metric(
            f"NLL, K = {k_done:,}",
            f"{value:.2f} nats",
            f"{value - elbo.total:+.2f} vs −ELBO",
            delta_color="inverse",
            help=f"On the first {n_done:,} images; took {seconds:.1f} s.",
        )
        b.caption(
            f"Estimated on {n_done:,} images with K = {k_done:,} in {seconds:.1f} s. The gap to the −ELBO is how "
            "much the encoder's Gaussian q(z|x) misses the true posterior."
        )
    elif "test_nll" in info.metrics:
        st.caption(
            f"Saved with the model: NLL {info.metrics['test_nll']:.2f} nats (K = {int(info.metrics['nll_k'])}). "
            "Press the button to estimate it here."
        )
    mine = [("This model: −ELBO", elbo.total)]
    if best is not None:
        mine.append((f"This model: NLL (K = {best[0]:,})", best[2]))
    elif "test_nll" in info.metrics:
        mine.append((f"This model: NLL (K = {int(info.metrics['nll_k'])})", info.metrics["test_nll"]))
    nll_references(loaded, mine, source=data.source, key="evaluate_reference_chart")


nll_panel()

st.subheader("Most and least typical test images")
st.caption(
    "Every test image ranked by its own −ELBO, the same figure the Latent map shows for it. Low scores are "
    "images the model finds typical; the highest are the ones it explains worst: unusual writing, cropping "
    "errors, sometimes wrong labels. This is a simple anomaly detector."
)
shown = min(SHOWN, n_all // 2)  # a small set is split in two halves, so the two groups never overlap
if shown < 1:
    st.info("Ranking needs at least two images.")
    st.stop()
scores = atlas.elbo
ranking = rank_typicality(scores, k=shown)
scale = max(1, round(TILE_PX / max(info.model_config.image_shape[1:])))


def gallery(indices: np.ndarray, title: str) -> None:
    st.markdown(f"**{title}**")
    grid = labelled_grid(
        data.images[indices], labels=[f"{scores[i]:.1f}" for i in indices], ncols=8, scale=scale, font_size=12
    )
    st.image(grid, output_format="PNG")
    st.caption("In reading order: " + " · ".join(f"#{i} {scores[i]:.1f}" for i in indices))


left, right = st.columns(2, gap="large")
with left:
    gallery(ranking.most_typical, f"{shown} most typical (lowest −ELBO, nats)")
with right:
    gallery(ranking.least_typical, f"{shown} least typical (highest −ELBO, nats)")

fig = charts.typicality_histogram(
    scores,
    typical_edge=scores[ranking.most_typical[-1]],
    unusual_edge=scores[ranking.least_typical[-1]],
    shown=shown,
)
st.plotly_chart(fig, width="stretch", key="evaluate_score_hist")
st.page_link(
    "vae_app/views/encode.py",
    label="Where does your own image fall? Upload it on the Encode page to see its percentile.",
    icon=":material/upload:",
)
