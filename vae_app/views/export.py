"""Export: latents, labels and thumbnails for TensorBoard's Embedding Projector, and as CSV."""

import streamlit as st

from vae_app import cache, state
from vae_app.escape import md
from vae_app.widgets import ELBO_HELP, guard
from vae_core.export import CONFIG_FILE, METADATA_FILE, SPRITE_FILE, VECTORS_FILE

PREVIEW_ROWS = 6

st.title("Export")
st.caption(
    "Take the latent codes out of the app: one row per test image with its code μ and its label, ready for "
    "TensorFlow's Embedding Projector (3-D PCA, t-SNE and UMAP you can fly through, with each point drawn as "
    "its thumbnail) or for a spreadsheet, pandas or R. The CSV adds each image's −ELBO and its position on "
    "the Latent map, the same figures every page shows."
)

loaded = state.require_model()
info = loaded.info
data, atlas = state.require_atlas(loaded)
key = state.model_key(loaded)
available = len(atlas)
st.session_state["export_n"] = min(int(st.session_state.get("export_n", 1000)), available)

c_n, _ = st.columns([1, 3])
n = int(
    c_n.number_input(
        "Images to export",
        min_value=1,
        max_value=available,
        step=100 if available >= 1000 else 10,
        key="export_n",
        help=f"The first images of {data.source}. The projector stays quick up to a few thousand points.",
    )
)

files = None
with guard("prepare the export"):
    files = cache.export_files(key, data.key, n, atlas, data.images, data.class_names, f"{info.name} mu")
if files is None:
    st.stop()
payload, archive, csv_text = files
d = info.model_config.latent_dim

c_zip, c_csv, _ = st.columns([3, 3, 4])
c_zip.download_button(
    "Embedding Projector files (.zip)",
    archive,
    file_name=f"{info.name}-projector.zip",
    mime="application/zip",
    icon=":material/folder_zip:",
    type="primary",
    key="export_zip",
    help=f"{VECTORS_FILE}, {METADATA_FILE}, {SPRITE_FILE} and {CONFIG_FILE}",
)
c_csv.download_button(
    "Latents as CSV",
    csv_text,
    file_name=f"{info.name}-latents.csv",
    mime="text/csv",
    icon=":material/table:",
    key="export_csv",
    help=f"Columns index, label, z0 … z{d - 1}, neg_elbo (the image's −ELBO in nats), map_x, map_y (its "
    f"position on the Latent map, {md(atlas.layout)}). {ELBO_HELP}",
)
st.caption(
    f"{n:,} images × {d} latent dimensions from **{md(info.name)}**; zip {len(archive) / 1024:,.0f} KB."
)

with st.container(border=True):
    st.markdown(
        "**Open it in the Embedding Projector**\n"
        "1. Unzip the download.\n"
        "2. Go to [projector.tensorflow.org](https://projector.tensorflow.org), press **Load**, choose "
        f"`{VECTORS_FILE}` in step 1 and `{METADATA_FILE}` in step 2, then colour the points by *class*.\n"
        "3. For thumbnails instead of dots, open the folder with TensorBoard: `tensorboard --logdir .` inside "
        f"it, then the **Projector** tab; `{CONFIG_FILE}` points it at the vectors, the labels and "
        f"`{SPRITE_FILE}`."
    )

left, right = st.columns([2, 3], gap="large")
with left:
    st.subheader("Sprite")
    st.image(
        payload[SPRITE_FILE],
        width=360,
        output_format="PNG",
        caption=f"{SPRITE_FILE}: the thumbnails in file order, left to right, top to bottom",
    )
with right:
    st.subheader("First rows")
    vectors = payload[VECTORS_FILE].decode().splitlines()
    metadata = payload[METADATA_FILE].decode().splitlines()
    st.caption(f"{METADATA_FILE}: a header, then one line per image")
    st.code("\n".join(metadata[: PREVIEW_ROWS + 1]), language=None)
    st.caption(f"{VECTORS_FILE}: the {d} numbers of μ per image, tab-separated, no header")
    st.code("\n".join(vectors[:PREVIEW_ROWS]), language=None, wrap_lines=False)
    st.caption(f"{CONFIG_FILE}: tells TensorBoard which file is which")
    st.code(payload[CONFIG_FILE].decode(), language=None)
    st.caption("The CSV: μ, then the −ELBO and the position on the Latent map of each image")
    st.code("\n".join(csv_text.splitlines()[: PREVIEW_ROWS + 1]), language=None, wrap_lines=False)
