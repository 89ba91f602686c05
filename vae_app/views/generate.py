"""Generate by class: sample a Gaussian mixture fitted to one class's codes, beside samples of the prior."""

import numpy as np
import streamlit as st

from vae_app import cache, charts, figures, state, widgets
from vae_app.escape import md, plot_text

COMPONENTS = 3  # most mixture components per class (fewer for small classes)
SCALE = 3  # model pixels -> picture pixels per side, also in the downloads

st.title("Generate by class")
st.caption(
    "A VAE trained without labels still puts each class's images in a region of its latent space. "
    "Decoding codes drawn from the prior N(0, I) gives a mix of every class (and some images of none); "
    "fitting a small Gaussian mixture to the codes of one class's images and decoding samples of it gives "
    "more images of that class, from the same model, without retraining it."
)

loaded = state.require_model()
data, atlas = state.require_atlas(loaded)
classes = np.unique(atlas.labels).tolist()
if len(classes) < 2:
    st.info(
        f"All {len(atlas):,} images of {data.source} have one class, so there is no class to choose: this model's "
        "data has no labels. Prior samples are on the Home page; the Latent map shows where the codes lie."
    )
    st.stop()


def name(label: int) -> str:
    return figures.class_name(data.class_names, label)


class_col, n_col, temp_col, seed_col = st.columns([2, 2, 2, 1], vertical_alignment="bottom")
st.session_state.setdefault("generate_class", 7 if 7 in classes else classes[0])
if st.session_state["generate_class"] not in classes:
    st.session_state["generate_class"] = classes[0]
label = class_col.selectbox("Class to generate", classes, format_func=name, key="generate_class")
n = n_col.slider("Samples of each kind", 4, 64, 16, step=4, key="generate_n")
temperature = temp_col.slider(
    "Temperature",
    0.0,
    1.0,
    1.0,
    0.05,
    key="generate_temperature",
    help="Scales the spread of both kinds of sample: 1 samples the fits as they are; lower stays nearer their "
    "centres, with more typical images and less variety (the reduced temperature of Glow, Kingma & Dhariwal 2018).",
)
seed = int(
    seed_col.number_input("Seed", min_value=0, max_value=2**31 - 1, value=0, step=1, key="generate_seed")
)

result = None
with widgets.guard(f"generate images of class {md(name(label))}"):
    result = cache.class_samples(
        state.model_key(loaded),
        data.key,
        loaded.model,
        atlas,
        label=label,
        n=n,
        seed=seed,
        components=COMPONENTS,
        temperature=temperature,
        ncols=8 if n > 16 else 4,
        scale=SCALE,
    )
if result is None:
    st.stop()

position = result.classes.index(label)
shown = md(name(label))
mix_col, prior_col = st.columns(2, gap="large")
for col, title, png, shares, stem in (
    (mix_col, f"From a mixture fitted to class {shown}", result.mixture, result.mixture_shares, "mixture"),
    (
        prior_col,
        "From the prior N(0, I)" if temperature == 1 else f"From N(0, {temperature:g}² I)",
        result.prior,
        result.prior_shares,
        "prior",
    ),
):
    with col:
        st.subheader(title)
        st.metric(f"Classified as {shown}", f"{shares[position]:.0%}")
        st.image(png, output_format="PNG", width="stretch")
        st.download_button(
            "Download PNG",
            png,
            file_name=f"generate-{stem}-class-{label}-n{n}-t{temperature:g}-seed{seed}.png",
            mime="image/png",
            key=f"generate_{stem}_png",
            on_click="ignore",
            icon=":material/image:",
        )

gain = result.mixture_shares[position] - result.prior_shares[position]
st.caption(
    f"The mixture of class {shown} changes the share of samples the classifier calls {shown} by "
    f"{gain * 100:+.0f} percentage points over the prior's. The mixture has {result.components} component"
    f"{'s' if result.components > 1 else ''} with {result.covariance} covariances, fitted to the "
    f"{result.codes:,} codes μ of class {shown} among {data.source}."
)

st.subheader("What the classifier sees in each batch")
bars = charts.class_share_bars(
    [("mixture samples", result.mixture_shares), ("prior samples", result.prior_shares)],
    class_labels=[plot_text(name(c)) for c in result.classes],
    colours=[figures.class_colour(c) for c in result.classes],
)
st.plotly_chart(bars, width="stretch", key="generate_shares")
accuracy = (
    ""
    if np.isnan(result.accuracy)
    else f" It labels held-out codes correctly {result.accuracy:.0%} of the time."
)
st.caption(
    "The classifier gives a code the class that most of its 10 nearest neighbours among these codes μ have "
    f"(solid bars: mixture samples; hatched: prior samples).{accuracy} It always names some class, so a "
    "prior sample that decodes to nothing recognisable still counts for one: read the shares with the pictures."
)
