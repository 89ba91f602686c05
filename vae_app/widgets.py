"""Small widgets the views share: image grids, error guards, the choice of images to analyse."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import streamlit as st

from vae_app import state
from vae_core.checkpoints import CheckpointError, LoadedCheckpoint
from vae_core.datasets import DatasetUnavailable
from vae_core.imaging import image_grid
from vae_core.metrics import ELBO_ESTIMATOR
from vae_core.preprocess import ImageError

ELBO_HELP = (
    f"−ELBO per image, the same estimate on every page: {ELBO_ESTIMATOR}. Lower means better explained."
)


def show_images(
    images, *, ncols: int, caption: str | None = None, scale: int = 3, width: str = "content"
) -> None:
    """Draw uint8 or [0, 1] images (N, C, H, W) as one crisp grid."""
    # PNG: the default (JPEG for greyscale) blurs crisp pixel grids.
    st.image(image_grid(images, ncols=ncols, scale=scale), caption=caption, width=width, output_format="PNG")


@contextmanager
def guard(action: str) -> Iterator[None]:
    """Show any failure inside the block as a one-line message instead of a traceback."""
    try:
        yield
    except (CheckpointError, DatasetUnavailable, ImageError, ValueError) as exc:
        st.error(f"Could not {action}: {exc}")
    except Exception as exc:  # a page must never show a traceback
        st.error(f"Could not {action}: {type(exc).__name__}: {exc}")


def scope_picker(loaded: LoadedCheckpoint) -> None:
    """Offer, in the sidebar, the bundled sample or the dataset's full test split when it is on disk."""
    bundled = state.bundled_data(loaded)
    full = state.test_split_data(loaded)
    if full is None:
        st.session_state[state.SCOPE_KEY] = "sample"
        return
    options = ["sample", "test"] if bundled is not None else ["test"]
    labels = {
        "sample": f"bundled sample ({len(bundled.images):,})" if bundled is not None else "",
        "test": f"full test split ({len(full.images):,})",
    }
    st.session_state.setdefault(state.SCOPE_KEY, options[0])
    if st.session_state[state.SCOPE_KEY] not in options:
        st.session_state[state.SCOPE_KEY] = options[0]
    st.sidebar.radio(
        "Images to analyse",
        options,
        format_func=labels.get,
        key=state.SCOPE_KEY,
        help="Every page maps, scores and ranks these images. The full split is read from the data folder; "
        "its map is computed once (a few seconds) and then kept.",
    )


def model_picker() -> None:
    """Draw the sidebar: pick a checkpoint from checkpoints/ or upload one."""
    st.sidebar.subheader("Model")
    good, bad = state.checkpoint_listing()
    uploads = st.session_state.get(state.UPLOADS_KEY, {})
    options = [{"kind": "file", "path": str(info.path)} for info in good]
    options += [{"kind": "upload", "digest": d, "name": name} for d, (name, _) in uploads.items()]
    labels = {str(info.path): info for info in good}
    if not options:
        st.sidebar.info("No checkpoints in `checkpoints/` yet: train one, or upload a .pt file below.")
    else:
        chosen = st.session_state.get(state.MODEL_KEY) or state.default_choice()
        index = options.index(chosen) if chosen in options else 0

        def label(option: dict) -> str:
            if option["kind"] == "upload":
                return f"{option['name']} (uploaded)"
            return labels[option["path"]].name

        # No widget key: the selection follows MODEL_KEY, which other pages may change (a model saved
        # on the Train page becomes the current one).
        picked = st.sidebar.selectbox("Checkpoint", options, index=index, format_func=label)
        st.session_state[state.MODEL_KEY] = picked
        loaded = state.current_model()
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
            st.sidebar.caption(" · ".join(lines), help=ELBO_HELP)
            scope_picker(loaded)
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
            if upload.size > state.MAX_CHECKPOINT_UPLOAD_MB * 1024 * 1024:
                raise CheckpointError(f"the file is larger than {state.MAX_CHECKPOINT_UPLOAD_MB} MB")
            state.remember_upload(upload.name, upload.getvalue())
            st.rerun()
        except CheckpointError as exc:
            st.sidebar.error(f"`{upload.name}` was not loaded: {exc}")
