"""VAE latent-space explorer: routes between the pages and owns the sidebar model picker."""

import streamlit as st

import ui
from vae_core.checkpoints import CheckpointError

st.set_page_config(page_title="VAE latent-space explorer", page_icon=":material/blur_on:", layout="wide")

PAGES = {
    "Explore": [
        st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
        st.Page("pages/train.py", title="Train", icon=":material/model_training:"),
        st.Page("pages/latent_map.py", title="Latent map", icon=":material/scatter_plot:"),
        st.Page("pages/decode.py", title="Decode", icon=":material/tune:"),
        st.Page("pages/interpolate.py", title="Interpolate", icon=":material/linear_scale:"),
        st.Page("pages/encode.py", title="Encode", icon=":material/upload:"),
    ],
    "Insight": [
        st.Page("pages/health.py", title="Latent health", icon=":material/monitor_heart:"),
        st.Page("pages/traversals.py", title="Traversals", icon=":material/view_module:"),
        st.Page("pages/timeline.py", title="Training timeline", icon=":material/animation:"),
        st.Page("pages/evaluate.py", title="Evaluate", icon=":material/analytics:"),
        st.Page("pages/compare.py", title="Compare", icon=":material/compare:"),
        st.Page("pages/export.py", title="Export", icon=":material/download:"),
    ],
}


def model_picker() -> None:
    """Draw the sidebar: pick a checkpoint from checkpoints/ or upload one."""
    st.sidebar.subheader("Model")
    good, bad = ui.checkpoint_listing()
    uploads = st.session_state.get(ui.UPLOADS_KEY, {})
    options = [{"kind": "file", "path": str(info.path)} for info in good]
    options += [{"kind": "upload", "digest": d, "name": name} for d, (name, _) in uploads.items()]
    labels = {str(info.path): info for info in good}
    if not options:
        st.sidebar.info("No checkpoints in `checkpoints/` yet: train one, or upload a .pt file below.")
    else:
        chosen = st.session_state.get(ui.MODEL_KEY) or ui.default_choice()
        index = options.index(chosen) if chosen in options else 0

        def label(option: dict) -> str:
            if option["kind"] == "upload":
                return f"{option['name']} (uploaded)"
            return labels[option["path"]].name

        # No widget key: the selection follows MODEL_KEY, which other pages may change (a model saved
        # on the Train page becomes the current one).
        picked = st.sidebar.selectbox("Checkpoint", options, index=index, format_func=label)
        st.session_state[ui.MODEL_KEY] = picked
        loaded = ui.current_model()
        if loaded is not None:
            info = loaded.info
            figures = info.metrics
            lines = [
                f"**{info.dataset}** · {info.model_config.arch} · z = {info.model_config.latent_dim} · "
                f"{info.epochs} epochs",
            ]
            if "test_total" in figures:
                lines.append(f"test −ELBO {figures['test_total']:.1f} nats")
            if "test_nll" in figures:
                lines.append(f"NLL {figures['test_nll']:.1f} nats (K={int(figures['nll_k'])})")
            st.sidebar.caption(" · ".join(lines))
    for path, reason in bad:
        st.sidebar.warning(f"Skipped `{path.name}`: {reason}")
    upload = st.sidebar.file_uploader(
        "Upload a checkpoint",
        type=["pt"],
        key="app_checkpoint_upload",
        help="Only vae-explorer checkpoints load; anything that could run code is refused.",
    )
    if upload is not None and st.session_state.get("app_last_upload") != upload.file_id:
        st.session_state["app_last_upload"] = upload.file_id
        try:
            if upload.size > ui.MAX_CHECKPOINT_UPLOAD_MB * 1024 * 1024:
                raise CheckpointError(f"the file is larger than {ui.MAX_CHECKPOINT_UPLOAD_MB} MB")
            ui.remember_upload(upload.name, upload.getvalue())
            st.rerun()
        except CheckpointError as exc:
            st.sidebar.error(f"`{upload.name}` was not loaded: {exc}")


page = st.navigation(PAGES)
st.session_state[ui.FRAMED_KEY] = True
wanted = st.session_state.pop(ui.WANTED_PAGE_KEY, None)
if wanted is not None:  # a deep link that Streamlit first ran without this frame (ui.ensure_framed)
    st.switch_page(wanted)
model_picker()
page.run()
