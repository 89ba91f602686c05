"""Small widgets the views share: image grids, error guards, the choice of images to analyse."""

from __future__ import annotations

import base64
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import streamlit as st
import torch
from PIL import Image

from vae_app import cache, canvas, charts, figures, state
from vae_app.escape import code, md
from vae_core import limits
from vae_core.atlas import Atlas
from vae_core.checkpoints import LoadedCheckpoint
from vae_core.datasets import DatasetUnavailable
from vae_core.imaging import image_grid, png_bytes, to_pil, upscale
from vae_core.metrics import ELBO_ESTIMATOR, LITERATURE_NLL, Verdict
from vae_core.model import VAE
from vae_core.preprocess import (
    IMAGE_SUFFIXES,
    MAX_UPLOAD_BYTES,
    ImageError,
    PreparedImage,
    Style,
    canvas_colours,
    model_style,
    prepare_drawing,
)
from vae_core.safeload import CheckpointError

CANVAS_COLOUR_SAMPLE = 256  # test images whose borders set a canvas's background
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
    """Show any failure inside the block as a one-line message instead of a traceback.

    ``action`` is Markdown: quote names from files with ``escape.code`` or ``escape.md``.
    """
    try:
        yield
    except (CheckpointError, DatasetUnavailable, ImageError, ValueError) as exc:
        st.error(f"Could not {action}: {md(exc)}")  # messages quote names from files and folders
    except Exception as exc:  # a page must never show a traceback
        st.error(f"Could not {action}: {type(exc).__name__}: {md(exc)}")


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
    state.follow_run()  # on every page: a reloaded tab finds its training run again (?run= in the URL)
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
                f"**{md(info.dataset)}** · {info.model_config.arch} · z = {info.model_config.latent_dim} · "
                f"{info.epochs} epochs",
                state.beta_summary(info),
            ]
            if "test_total" in figures:
                lines.append(f"test −ELBO {figures['test_total']:.1f} nats")
            if "test_nll" in figures:
                lines.append(f"NLL {figures['test_nll']:.1f} nats (K={int(figures['nll_k'])})")
            st.sidebar.caption(" · ".join(lines), help=ELBO_HELP)
            scope_picker(loaded)
    for path, reason in bad:
        st.sidebar.warning(f"Skipped {code(path.name)}: {md(reason)}")
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
        except limits.LimitError as exc:
            st.sidebar.error(
                f"{code(upload.name)} was not loaded: {md(exc)}. Or press **Forget uploaded models** to make room."
            )
        except Exception as exc:  # a CheckpointError, or anything else a hostile file provokes
            kind = "" if isinstance(exc, CheckpointError) else f"{type(exc).__name__}: "
            st.sidebar.error(f"{code(upload.name)} was not loaded: {kind}{md(exc)}")
        else:
            st.rerun()
    if st.session_state.get(state.UPLOADS_KEY):
        st.sidebar.button(
            "Forget uploaded models",
            key="app_forget_uploads",
            on_click=state.forget_uploads,
            icon=":material/delete:",
            help=f"This session keeps up to {limits.MAX_SESSION_UPLOADS.value:,} uploaded checkpoints "
            f"({limits.MAX_SESSION_UPLOAD_MB.value:,g} MB in all) until its tab closes.",
        )


PREVIEW_PX = 224
NBSP = "\u00a0"
MAP_WORDS = {
    "latent": "the two latent dimensions themselves",
    "t-SNE": "t-SNE, which keeps each image's nearest neighbours together",
    "PCA": "their first two principal components",
}


def enlarge(img: Image.Image, *, px: int = PREVIEW_PX) -> Image.Image:
    """Upscale a small preview crisply so it is about ``px`` wide."""
    return upscale(img, scale=max(1, math.ceil(px / max(img.size))))


def ordinal(value: float) -> str:
    """Return ``value`` rounded, as an English ordinal: 1st, 2nd, 3rd, 11th, 42nd."""
    n = round(value)
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def data_url(png: bytes) -> str:
    """Return PNG bytes as an inline ``data:`` URL."""
    return "data:image/png;base64," + base64.b64encode(png).decode()


def decoded_picture(x_hat: torch.Tensor, *, px: int, key: str, file_name: str) -> None:
    """Draw one decoded image (C, H, W) about ``px`` wide, inline, with a PNG download (key ``{key}_png``).

    The image is sent inside the page's message as a data URL, so it shows as soon as that arrives,
    with no second request to a server that is still busy.
    """
    picture = upscale(to_pil(x_hat), scale=max(1, round(px / x_hat.shape[-1])))
    png = png_bytes(picture)
    with st.container(key=key):
        st.markdown(
            f'<img src="{data_url(png)}" width="{picture.width}" height="{picture.height}" '
            'alt="The decoded image" style="image-rendering: pixelated; border-radius: 0.5rem">',
            unsafe_allow_html=True,
        )
        st.caption("The decoder's image for this z")
    st.download_button(
        "Download PNG",
        png,
        file_name=file_name,
        mime="image/png",
        key=f"{key}_png",
        on_click="ignore",
        icon=":material/download:",
    )


def neighbour_grid(
    images, labels, class_names: Sequence[str], found: Sequence[tuple[int, float]], *, ncols: int = 4
) -> None:
    """Draw images (uint8 (N, C, H, W)) ``found`` as (index, distance), captioned "#i · class, d = 1.23"."""
    for row in range(0, len(found), ncols):
        for col, (i, d) in zip(st.columns(ncols), found[row : row + ncols]):
            # No-break spaces: a narrow caption wraps only before "d = ...".
            cls = md(figures.class_name(class_names, int(labels[i]))).replace(" ", NBSP)
            caption = f"#{i}{NBSP}·{NBSP}{cls}, d{NBSP}={NBSP}{d:.2f}"
            col.image(upscale(to_pil(images[i]), scale=4), caption=caption, width="stretch")


def map_caption(atlas: Atlas, source: str) -> str:
    """Say what the shared map shows: the codes of ``source`` (Markdown) and how the atlas laid them out."""
    how = MAP_WORDS.get(atlas.layout, md(atlas.layout))
    return f"The codes μ of the {source} on the model's map, drawn by {how}: the same map as the Latent map page."


def nll_references(loaded: LoadedCheckpoint, mine: list[tuple[str, float]], *, source: str, key: str) -> None:
    """Draw this model's -ELBO and NLL (``mine``: (label, nats)) beside Burda et al. 2015, for MNIST only."""
    info = loaded.info
    if info.dataset.lower() != "mnist":
        st.caption(
            f"Published reference figures exist for MNIST; this model was trained on {md(info.dataset)}, so there is "
            "nothing to compare it with here."
        )
        return
    fig = charts.nll_reference_bars(mine, [(ref.label, ref.nats) for ref in LITERATURE_NLL])
    st.plotly_chart(fig, width="stretch", key=key)
    train_images = info.extra.get("train_images")
    subset = f"a {train_images:,}-image subset of" if isinstance(train_images, int) else "a subset of"
    binarized = info.train_config is not None and info.train_config.binarize
    st.caption(
        "Grey bars: Burda, Grosse & Salakhutdinov (2015), table 1, one stochastic layer, "
        f"{LITERATURE_NLL[0].setting}. The setting differs from this model's: it trained on {subset} MNIST "
        + ("with binarized targets" if binarized else "with grey-level (not binarized) targets")
        + f", and is evaluated on {source}, so the numbers are not directly comparable."
    )


def example_picker(data: state.EvalData, atlas: Atlas, *, key: str, on_pick: Callable[[int], None]) -> None:
    """Pick an atlas image by class and number, shown as a thumbnail; the button calls ``on_pick(index)``.

    Widget keys: ``{key}_class``, ``{key}_index`` and ``{key}_go``.
    """
    left, mid, right = st.columns([2, 2, 1], vertical_alignment="bottom")
    chosen = left.selectbox(
        "Class",
        [-1, *np.unique(atlas.labels).tolist()],
        key=f"{key}_class",
        format_func=lambda c: "any class" if c < 0 else figures.class_name(data.class_names, c),
        on_change=lambda: st.session_state.update({f"{key}_index": 0}),
    )
    pool = np.arange(len(atlas)) if chosen < 0 else np.flatnonzero(atlas.labels == chosen)
    pick = mid.number_input(
        f"Example number (0 – {len(pool) - 1})",
        min_value=0,
        max_value=len(pool) - 1,
        step=1,
        key=f"{key}_index",
    )
    index = int(pool[min(int(pick), len(pool) - 1)])
    with right:
        show_images(data.images[index : index + 1], ncols=1, scale=2)
    mid.button(
        "Start from this example",
        icon=":material/login:",
        key=f"{key}_go",
        on_click=on_pick,
        args=(index,),
        type="primary",
    )
    st.caption(f"Sets the sliders to the encoder's mean code μ of image #{index} ({data.source}).")


def manifold_panel(
    model_key: str, model: VAE, z: np.ndarray, *, dims: tuple[int, int], n: int = 15, key: str
) -> None:
    """Draw the decoded n x n grid over ``dims`` (the other dimensions at ``z``'s values) with a ring at ``z``."""
    base = np.array(z, dtype=float)
    base[list(dims)] = 0.0  # the grid overwrites these two, so they must not split the cache
    with guard("decode the manifold grid"):
        png, values = cache.manifold_picture(model_key, model, n=n, dims=dims, base=tuple(map(float, base)))
        cell = 1 / model.config.image_shape[2]  # one grid cell is one image, W pixels wide
        fig = figures.manifold_figure(data_url(png), values, dims=dims, z=z, cell=cell)
        st.plotly_chart(fig, config={"displayModeBar": False}, key=key)
        st.caption(
            f"The classic picture of a 2-D latent space (Kingma & Welling 2014, fig. 4): {n} × {n} images "
            f"decoded on a grid of z{dims[0]} (left to right) and z{dims[1]} (bottom to top) at the prior's "
            "5% to 95% quantiles. The red ring marks the current z."
        )


def sync_sliders(z: np.ndarray, dims: Sequence[int], *, span: float, prefix: str) -> np.ndarray:
    """Return ``z`` with dimensions ``dims`` read from the sliders ``{prefix}{i}``, clipped to +-``span``.

    Slider values are in session state before the sliders are drawn, so a page can decode first and
    send the image ahead of the sliders. A value is written back only when it is new or was clipped:
    writing it every run would undo fast moves.
    """
    z = np.array(z, dtype=float)
    for i in dims:
        k = f"{prefix}{i}"
        value = st.session_state.get(k, z[i])
        z[i] = float(np.clip(value, -span, span))
        if k not in st.session_state or z[i] != value:
            st.session_state[k] = z[i]
    return z


def slider_grid(dims: Sequence[int], *, span: float, step: float, prefix: str) -> None:
    """Draw one slider ``{prefix}{i}`` per latent dimension in ``dims``, in up to four columns."""
    ncols = 1 if len(dims) <= 4 else 2 if len(dims) <= 8 else 3 if len(dims) <= 12 else 4
    per = math.ceil(len(dims) / ncols)
    cols = st.columns(ncols)
    for j, i in enumerate(dims):
        cols[j // per].slider(
            f"z{i}", min_value=-span, max_value=span, step=step, key=f"{prefix}{i}", format="%.2f"
        )


ENDPOINT_SOURCES = ("test image", "upload", "draw")
PICK_PREVIEW_SCALE = 5


def take_pick(key: str, atlas: Atlas) -> None:
    """Honour a pending ``{key}_pick`` (an atlas row set by another page) once: select that test image.

    Sets ``{key}_source`` to "test image", ``{key}_class`` to the row's class and ``{key}_index`` to its
    position among that class's members in atlas order, then deletes ``{key}_pick``. A row outside the
    atlas is dropped with a warning.
    """
    row = st.session_state.pop(f"{key}_pick", None)
    if row is None:
        return
    if not isinstance(row, int | np.integer) or not 0 <= int(row) < len(atlas):
        st.warning(f"The image picked on another page (row {md(row)}) is not among these images.")
        return
    label = int(atlas.labels[int(row)])
    members = np.flatnonzero(atlas.labels == label)
    st.session_state[f"{key}_source"] = "test image"
    st.session_state[f"{key}_class"] = label
    st.session_state[f"{key}_index"] = int(np.flatnonzero(members == int(row))[0])


def endpoint_picker(
    key: str,
    data: state.EvalData,
    atlas: Atlas,
    *,
    default_class: int,
    image_shape: tuple[int, int, int],
    style: str,
) -> tuple[torch.Tensor | None, int | None]:
    """Pick one image: a test image of the atlas (by class and number), an upload, or a drawing.

    Uploads and drawings are prepared in ``style``. Widget keys: ``{key}_source`` ("test image", "upload"
    or "draw"), ``{key}_upload``, ``{key}_canvas``, ``{key}_class`` and ``{key}_index``; a pending
    ``{key}_pick`` (an atlas row) is honoured once first (``take_pick``).

    Returns:
        (the image (1, C, H, W), uint8 or float in [0, 1], or None while there is none; its atlas row,
        or None for an upload or a drawing).
    """
    take_pick(key, atlas)
    source = st.radio(
        "Source", ENDPOINT_SOURCES, key=f"{key}_source", horizontal=True, label_visibility="collapsed"
    )
    if source == "draw":
        return _drawn_endpoint(key, data, image_shape=image_shape, style=style), None
    if source == "upload":
        upload = st.file_uploader(
            "An image (PNG, JPEG, WebP, BMP or the first frame of a GIF)",
            type=[suffix.lstrip(".") for suffix in IMAGE_SUFFIXES],
            key=f"{key}_upload",
            max_upload_size=MAX_UPLOAD_BYTES // (1024 * 1024),  # MiB, as Streamlit counts
        )
        if upload is None:
            st.info("Upload an image to use it as this end of the path.")
            return None, None
        result = None
        with guard(f"read {code(upload.name)}"):
            result = cache.prepared_image(upload.getvalue(), image_shape, style)
        if result is None:
            return None, None
        _prepared_preview(result, f"{md(upload.name)}, as the model sees it")
        _prepared_notes(result)
        return result.x, None
    classes = np.unique(atlas.labels).tolist()
    st.session_state.setdefault(f"{key}_class", default_class)
    if st.session_state[f"{key}_class"] not in classes:
        st.session_state[f"{key}_class"] = default_class
    label = st.selectbox(
        "Class", classes, key=f"{key}_class", format_func=lambda c: figures.class_name(data.class_names, c)
    )
    members = np.flatnonzero(atlas.labels == label).tolist()
    if st.session_state.get(f"{key}_index", 0) >= len(members):
        st.session_state[f"{key}_index"] = 0
    position = 0
    if len(members) > 1:
        position = st.slider(
            f"Which of the {len(members)} images of this class", 0, len(members) - 1, key=f"{key}_index"
        )
    row = members[position]
    caption = f"test image #{row} · {md(figures.class_name(data.class_names, label))}"
    st.image(upscale(to_pil(data.images[row]), scale=PICK_PREVIEW_SCALE), caption=caption)
    return data.images[row : row + 1], row


def _prepared_preview(result: PreparedImage, caption: str) -> None:
    """Show a prepared image as the model sees it."""
    st.image(upscale(to_pil(result.x[0]), scale=PICK_PREVIEW_SCALE), caption=caption)


def _prepared_notes(result: PreparedImage) -> None:
    """List the steps that made the model's input, as a caption."""
    notes = "\n".join(f"- {note}" for note in result.notes) or "- nothing needed changing"
    st.caption(f"What was done:\n{notes}")


def _drawn_endpoint(
    key: str, data: state.EvalData, *, image_shape: tuple[int, int, int], style: str
) -> torch.Tensor | None:
    """Draw a canvas (key ``{key}_canvas``); return the drawing as a model input, or None while it is empty."""
    colours = canvas_colours(data.images[:CANVAS_COLOUR_SAMPLE])
    draw_col, seen_col = st.columns([3, 2], vertical_alignment="bottom")
    with draw_col:
        drawing = canvas.drawing_canvas(key=f"{key}_canvas", image_shape=image_shape, colours=colours)
    canvas.drawing_help(colours)
    if drawing.rgba is None:
        st.info("Draw on the canvas to use your drawing as this end of the path.")
        return None
    result = None
    with guard("read the drawing"):
        result = prepare_drawing(drawing.rgba, image_shape=image_shape, style=style)
    if result is None:
        return None
    with seen_col:
        _prepared_preview(result, "your drawing, as the model sees it")
    _prepared_notes(result)
    return result.x


def preparation_steps(result: PreparedImage, name: str, *, columns: int = 4) -> None:
    """Show each step that turned a picture into the model's input, enlarged, and a list of what was done.

    ``name`` is Markdown (quote a file name with ``escape.code``); ``columns``: the fewest columns of pictures.
    """
    for col, (label, img) in zip(st.columns(max(len(result.steps), columns)), result.steps):
        col.image(enlarge(img), caption=label, width="stretch")
    notes = "\n".join(f"- {note}" for note in result.notes) or "- nothing needed changing"
    st.markdown(f"What was done to {name}:\n{notes}")


STYLE_HELP = (
    "On: invert a light background, crop to the ink, scale it into a 20x20 box and centre it by its centre "
    "of mass, as MNIST digits were made. Off: crop the middle to the model's aspect and resize, as folders "
    "of images are read for training."
)


def style_toggle(key: str, loaded: LoadedCheckpoint) -> Style:
    """Draw the "Centre and scale like MNIST" toggle, on by default only for models of digit datasets.

    The default follows the model (``preprocess.model_style``): a new model resets the toggle to its own
    default, remembered in ``{key}_model``.

    Returns:
        ``"mnist"`` or ``"plain"``, the style to prepare new images in.
    """
    default = model_style(dataset=loaded.info.dataset, preprocessing=loaded.info.preprocessing)
    identity = state.model_key(loaded)
    if st.session_state.get(f"{key}_model") != identity:
        st.session_state[f"{key}_model"] = identity
        st.session_state[key] = default == "mnist"
    why = (
        "this model learned from digits made that way"
        if default == "mnist"
        else f"this model learned from {md(loaded.info.dataset)}, whose images were resized, not centred"
    )
    on = st.toggle(
        "Centre and scale like MNIST",
        key=key,
        help=f"{STYLE_HELP} Default here: {'on' if default == 'mnist' else 'off'}, since {why}.",
    )
    return "mnist" if on else "plain"


def verdict_box(verdict: Verdict) -> None:
    """Show an anomaly verdict: green with a tick when typical, amber with a warning otherwise."""
    if verdict.level == "typical":
        st.success(verdict.message, icon=":material/check_circle:")
    else:
        st.warning(verdict.message, icon=":material/warning:")
