"""Home: what is loaded, prior samples and reconstructions, and how a VAE works, with this model's numbers."""

import numpy as np
import streamlit as st

from vae_app import charts, figures, state
from vae_app.escape import md
from vae_app.teaching import reparameterisation_panel
from vae_app.widgets import ELBO_HELP, guard, map_caption, show_images
from vae_core.imaging import to_uint8
from vae_core.inference import decode_latents, prior_samples
from vae_core.metrics import ELBO_ESTIMATOR, elbo_breakdown

st.title("VAE latent-space explorer")
st.caption(
    "Train a variational autoencoder on images and see what its latent space has learned: map it, decode any "
    "point, walk between images, and ask where a new image lands. Pick a model in the sidebar."
)

loaded = state.require_model()
info, model = loaded.info, loaded.model
cfg = info.model_config
metrics = info.metrics

cols = st.columns(6)
cols[0].metric("Dataset", md(info.dataset))
cols[1].metric("Architecture", cfg.arch.upper())
cols[2].metric("Latent dimensions", cfg.latent_dim)
cols[3].metric("Epochs trained", info.epochs)
cols[4].metric("Test −ELBO (nats)", f"{metrics['test_total']:.1f}" if "test_total" in metrics else "—")
cols[5].metric(
    "Test NLL (nats)",
    f"{metrics['test_nll']:.1f}" if "test_nll" in metrics else "—",
    help=f"Importance-weighted estimate with K = {int(metrics.get('nll_k', 0))} samples (Burda et al. 2015)"
    if "test_nll" in metrics
    else None,
)
st.caption(f"Trained with {state.beta_summary(info)}: the objective is written out in step 4 below.")
if info.extra.get("description"):
    st.caption(
        f"{md(info.extra['description'])} · {model.num_parameters():,} parameters · {md(info.preprocessing)}"
    )

st.session_state.setdefault("home_seed", 0)
st.session_state.setdefault("home_example", 0)
left, right = st.columns(2, gap="large")
with left:
    st.subheader("Samples from the prior")
    st.caption("Each image decodes a z drawn from N(0, I): what the model imagines when asked for anything.")
    with guard("draw prior samples"):
        show_images(prior_samples(model, n=32, seed=st.session_state["home_seed"]), ncols=8, scale=2)
    if st.button("New samples", icon=":material/casino:", key="home_resample"):
        st.session_state["home_seed"] += 1
        st.rerun()
with right:
    st.subheader("Reconstructions")
    if state.eval_data(loaded) is None:
        st.info("No evaluation images: this model carries no data sample and its dataset is not on disk.")
        st.stop()
    data, atlas = state.require_atlas(loaded)
    st.caption(f"Top: test images. Bottom: decoded from their mean code μ. ({data.source})")
    picks = np.linspace(0, len(data.images) - 1, 16).astype(int)
    with guard("reconstruct test images"):
        x, x_hat = to_uint8(data.images[picks]), to_uint8(decode_latents(model, atlas.mu[picks]))
        show_images(np.concatenate([x[:8], x_hat[:8], x[8:], x_hat[8:]]), ncols=8, scale=2)

st.divider()
st.subheader("How this model turns an image into a code and back")
example = int(st.session_state["home_example"]) % len(data.images)
b = elbo_breakdown(model, data.images[example], seed=example)
sigma = np.exp(0.5 * b.logvar)
shown = min(4, cfg.latent_dim)


def vec(v: np.ndarray) -> str:
    more = ", …" if len(v) > shown else ""
    return "(" + ", ".join(f"{t:+.2f}" for t in v[:shown]) + more + ")"


img_col, text_col = st.columns([1, 3], gap="large")
with img_col:
    show_images(
        np.stack([to_uint8(data.images[example]), to_uint8(b.x_hat)]),
        ncols=2,
        scale=4,
        caption=f"Test image #{example} and the image decoded from this one draw of ε",
    )
    st.metric("−ELBO of this image (nats)", f"{atlas.elbo[example]:.1f}", help=ELBO_HELP)
    if st.button("Another example", key="home_next_example"):
        st.session_state["home_example"] = example + 37
        st.rerun()
with text_col:
    st.markdown(
        f"""
1. **Encoder.** The encoder network reads the image and outputs a Gaussian over the latent space: a mean
   μ = {vec(b.mu)} and a log-variance log σ² = {vec(b.logvar)}, one of each for all {cfg.latent_dim} dimensions.
   So σ = {vec(sigma)}: small σ means the encoder is sure where this image belongs.
2. **Sample.** A code is drawn with the reparameterization trick, z = μ + σ ⊙ ε with ε ~ N(0, I):
   here ε = {vec(b.eps)} gives z = {vec(b.z)}. Writing the noise this way lets gradients flow to μ and σ.
3. **Decoder.** The decoder maps z back to an image: the picture on the left, next to the input.
4. **Score.** {state.objective_summary(info)}:
   - for this one draw of ε, the reconstruction term log p(x|z) = {-b.recon:.1f} nats ({cfg.likelihood}
     likelihood, summed over pixels): how well the decoded image explains the input. Another ε gives another
     value, so one draw is only a noisy look at the expectation;
   - KL(q(z|x) ‖ N(0, I)) = {b.kl:.1f} nats, in closed form (no sampling): how far the code's Gaussian is from
     the prior, the price of information the code carries;
   - this image's −ELBO, the per-image estimate every page shows, is **{atlas.elbo[example]:.1f} nats**
     = reconstruction {atlas.recon[example]:.1f} + KL {atlas.kl[example]:.1f}, with the reconstruction
     averaged over several draws ({ELBO_ESTIMATOR}). This one draw of ε alone would give
     {-b.recon:.1f} − {b.kl:.1f} = {b.elbo:.1f} nats of ELBO.
"""
    )
    if "test_total" in metrics:
        st.caption(
            f"Over the test set this model averages a reconstruction term of {-metrics['test_recon']:.1f} "
            f"and a KL of {metrics['test_kl']:.1f} nats per image."
        )

st.divider()
ident = f"{state.model_key(loaded)}:{data.key}:{example}"
reparameterisation_panel(model, b.mu, b.logvar, label=int(atlas.labels[example]), ident=ident)

st.divider()
map_col, loss_col = st.columns([2, 3], gap="large")
with map_col:
    st.subheader("Where its test images land")
    star = figures.Marker(atlas.coords[example : example + 1], f"test image #{example}")
    fig = figures.latent_map(atlas, data.class_names, markers=[star], height=420)
    st.plotly_chart(fig, key="home_map")
    st.caption(
        f"{map_caption(atlas, data.source)} The star is the example above. Explore it on the Latent map page."
    )
with loss_col:
    st.subheader("How it trained")
    if info.history:
        st.plotly_chart(charts.loss_curves(list(info.history)), key="home_history")
        st.caption(
            "−ELBO and its two parts after each epoch, in nats per image: solid on the training images, dashed on the test images."
        )
    else:
        st.info("This checkpoint records no training history.")
