"""Evaluate: test ELBO, importance-weighted NLL beside the literature, and the most and least typical images."""

import time

import numpy as np
import plotly.graph_objects as go
import streamlit as st

import ui
from vae_core.export import labelled_grid
from vae_core.metrics import (
    LITERATURE_NLL,
    decode_seconds,
    evaluate_elbo,
    iwae_cost,
    iwae_nll,
    per_sample_elbo,
    rank_typicality,
)

K_CHOICES = (1, 10, 50, 100, 500, 1000, 5000)
SHOWN = 16
TILE_PX = 56
SLOW_SECONDS = 120

ui.ensure_framed(__file__)
st.title("Evaluate")
st.caption(
    "How well does the model explain test images it never trained on? The negative ELBO is the loss it "
    "trained on: reconstruction error plus KL. It is an upper bound on the true negative log-likelihood "
    "−log p(x), which the importance-weighted estimate approaches as it averages over more samples K. "
    "All figures are in nats per image: lower is better."
)

loaded = ui.require_model()
model, info = loaded.model, loaded.info
data = ui.require_eval_data(loaded)
key = ui.model_key(loaded)
n_all = len(data.images)


@st.cache_data(show_spinner="Computing the test ELBO …", max_entries=8)
def elbo_of(model_key: str, _loaded, _images, n: int):
    return evaluate_elbo(_loaded.model, _images[:n])


@st.cache_data(show_spinner="Scoring every image …", max_entries=8)
def scores_of(model_key: str, _loaded, _images, n: int) -> np.ndarray:
    return per_sample_elbo(_loaded.model, _images[:n])


@st.cache_data(show_spinner="Timing the decoder …", max_entries=8)
def rate_of(model_key: str, _loaded, _images) -> float:
    return decode_seconds(_loaded.model, _images[:16])


elbo = None
with ui.guard("compute the test ELBO"):
    elbo = elbo_of(key, loaded, data.images, n_all)
if elbo is None:
    st.stop()
c1, c2, c3, c4 = st.columns(4)
c1.metric("Test −ELBO", f"{elbo.total:.2f} nats", help="Reconstruction + KL, averaged over the images.")
c2.metric("Reconstruction", f"{elbo.recon:.2f} nats", help="−log p(x|z) for one z drawn from q(z|x).")
c3.metric("KL", f"{elbo.kl:.2f} nats", help="KL(q(z|x) ‖ N(0, I)): the information the code carries.")
c4.metric("Images", f"{n_all:,}", help=data.source)

st.subheader("Importance-weighted negative log-likelihood")
results = st.session_state.setdefault("evaluate_nll", {})


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
    rate = rate_of(key, loaded, data.images)
    cost = iwae_cost(n=n, k=k, seconds_per_decode=rate)
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
        with ui.guard("estimate the NLL"):
            started = time.perf_counter()
            value = iwae_nll(
                model, data.images[:n], k=k, on_progress=lambda f: bar.progress(min(1.0, f), text=f"{f:.0%}")
            )
            results[(key, k, n)] = (value, time.perf_counter() - started)
        bar.empty()
    mine = {kn: r for kn, r in results.items() if kn[0] == key}
    if mine:
        (_, k_done, n_done), (value, seconds) = max(mine.items(), key=lambda item: (item[0][1], item[0][2]))
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
    reference_chart(mine)


def reference_chart(mine: dict) -> None:
    """Draw this model's figures beside Burda et al. 2015 (MNIST only)."""
    if info.dataset.lower() != "mnist":
        st.caption(
            f"Published reference figures exist for MNIST; this model was trained on {info.dataset}, so there is "
            "nothing to compare it with here."
        )
        return
    bars = [("This model: −ELBO", elbo.total, "#4C78A8")]
    if mine:
        (_, k_done, _), (value, _) = max(mine.items(), key=lambda item: (item[0][1], item[0][2]))
        bars.append((f"This model: NLL (K = {k_done:,})", value, "#F58518"))
    elif "test_nll" in info.metrics:
        bars.append(
            (f"This model: NLL (K = {int(info.metrics['nll_k'])})", info.metrics["test_nll"], "#F58518")
        )
    bars += [(ref.label, ref.nats, "#BAB0AC") for ref in LITERATURE_NLL]
    fig = go.Figure(
        go.Bar(
            y=[b[0] for b in bars][::-1],
            x=[b[1] for b in bars][::-1],
            orientation="h",
            marker_color=[b[2] for b in bars][::-1],
            text=[f"{b[1]:.2f}" for b in bars][::-1],
            textposition="outside",
            hovertemplate="%{y}: %{x:.2f} nats<extra></extra>",
        )
    )
    fig.update_layout(
        height=60 * len(bars) + 80,
        margin={"l": 10, "r": 40, "t": 10, "b": 40},
        xaxis={"title": "nats per image (lower is better)", "range": [0, max(b[1] for b in bars) * 1.15]},
    )
    st.plotly_chart(fig, width="stretch", key="evaluate_reference_chart")
    train_images = info.extra.get("train_images")
    subset = f"a {train_images:,}-image subset of" if isinstance(train_images, int) else "a subset of"
    binarized = info.train_config is not None and info.train_config.binarize
    st.caption(
        "Grey bars: Burda, Grosse & Salakhutdinov (2015), table 1, one stochastic layer, "
        f"{LITERATURE_NLL[0].setting}. The setting differs from this model's: it trained on {subset} MNIST "
        + ("with binarized targets" if binarized else "with grey-level (not binarized) targets")
        + f", and is evaluated on {data.source}, so the numbers are not directly comparable."
    )


nll_panel()

st.subheader("Most and least typical test images")
st.caption(
    "Every test image ranked by its own −ELBO. Low scores are images the model finds typical; the highest are "
    "the ones it explains worst: unusual writing, cropping errors, sometimes wrong labels. This is a simple "
    "anomaly detector."
)
scores = None
with ui.guard("score the images"):
    scores = scores_of(key, loaded, data.images, n_all)
if scores is None:
    st.stop()
ranking = rank_typicality(scores, k=SHOWN)
scale = max(1, round(TILE_PX / max(info.model_config.image_shape[1:])))


def gallery(indices: np.ndarray, title: str) -> None:
    st.markdown(f"**{title}**")
    labels = [f"{scores[i]:.1f}" for i in indices]
    grid = labelled_grid(data.images[indices], labels=labels, ncols=8, scale=scale, font_size=12)
    st.image(grid, output_format="PNG")


left, right = st.columns(2, gap="large")
with left:
    gallery(ranking.most_typical, f"{SHOWN} most typical (lowest −ELBO, nats)")
with right:
    gallery(ranking.least_typical, f"{SHOWN} least typical (highest −ELBO, nats)")

fig = go.Figure(
    go.Histogram(x=scores, nbinsx=60, marker_color="#4C78A8", hovertemplate="%{y} images<extra></extra>")
)
for edge, colour, text, side in (
    (scores[ranking.most_typical[-1]], "#54A24B", f"← {SHOWN} most typical", "top left"),
    (scores[ranking.least_typical[-1]], "#E45756", f"{SHOWN} least typical →", "top right"),
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
st.plotly_chart(fig, width="stretch", key="evaluate_score_hist")
st.page_link(
    "pages/encode.py",
    label="Where does your own image fall? Upload it on the Encode page to see its percentile.",
    icon=":material/upload:",
)
