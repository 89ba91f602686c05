"""Export latents for the TensorBoard Embedding Projector and as CSV."""

from __future__ import annotations

import csv
import io
import math
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from vae_core.imaging import MIN_EXPORT_SCALE, export_scale, gif_bytes, image_grid, to_pil, to_uint8, upscale

VECTORS_FILE = "vectors.tsv"
METADATA_FILE = "metadata.tsv"
SPRITE_FILE = "sprite.png"
CONFIG_FILE = "projector_config.pbtxt"
# The Embedding Projector refuses sprites larger than 8192 x 8192 pixels.
MAX_SPRITE_SIDE = 8192


class ProjectorFiles(NamedTuple):
    """Paths of the four files the Embedding Projector reads."""

    vectors: Path
    metadata: Path
    sprite: Path
    config: Path


def _clean(text: str) -> str:
    # Tabs and line breaks would split a TSV cell.
    return " ".join(str(text).split())


def _check(latents: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    latents = np.asarray(latents.detach().cpu() if isinstance(latents, torch.Tensor) else latents, np.float64)
    labels = np.asarray(labels.detach().cpu() if isinstance(labels, torch.Tensor) else labels).reshape(-1)
    if latents.ndim != 2 or len(latents) == 0:
        raise ValueError(f"latents must be a non-empty (N, D) array, got shape {latents.shape}")
    if len(labels) != len(latents):
        raise ValueError(f"got {len(latents)} latents but {len(labels)} labels")
    return latents, labels


def _sprite(images: np.ndarray | torch.Tensor) -> tuple[Image.Image, int, int]:
    """Return a square sprite of thumbnails (row-major, point i in cell i) and the thumbnail's (W, H)."""
    array = to_uint8(images)
    if array.ndim != 4 or array.shape[1] not in (1, 3):
        raise ValueError(f"expected images (N, C, H, W) with 1 or 3 channels, got shape {array.shape}")
    n, c, h, w = array.shape
    side = math.ceil(math.sqrt(n))
    shrink = min(1.0, MAX_SPRITE_SIDE / (side * max(h, w)))
    th, tw = max(1, int(h * shrink)), max(1, int(w * shrink))
    mode = "L" if c == 1 else "RGB"
    sheet = Image.new(mode, (side * tw, side * th), 0)
    for i in range(n):
        tile = array[i, 0] if c == 1 else array[i].transpose(1, 2, 0)
        thumb = Image.fromarray(np.ascontiguousarray(tile), mode=mode)
        if (th, tw) != (h, w):
            thumb = thumb.resize((tw, th), resample=Image.BOX)
        r, col = divmod(i, side)
        sheet.paste(thumb, (col * tw, r * th))
    return sheet, tw, th


def projector_payload(
    *,
    latents: np.ndarray,
    labels: np.ndarray,
    images: np.ndarray | torch.Tensor,
    class_names: Sequence[str],
    tensor_name: str = "mu",
) -> dict[str, bytes]:
    """Build the Embedding Projector's four files in memory.

    Args:
        latents: (N, D) vectors, e.g. posterior means.
        labels: (N,) integer class labels.
        images: (N, C, H, W) thumbnails, uint8 or float in [0, 1].
        class_names: name of each label; labels outside it are shown as numbers.
        tensor_name: the name the projector shows for the tensor.

    Returns:
        File name -> content for vectors.tsv, metadata.tsv, sprite.png, projector_config.pbtxt.
    """
    latents, labels = _check(latents, labels)
    if len(images) != len(latents):
        raise ValueError(f"got {len(latents)} latents but {len(images)} images")
    vectors = io.StringIO()
    np.savetxt(vectors, latents, fmt="%.9g", delimiter="\t")
    # With more than one column the projector needs a header row.
    rows = ["index\tlabel\tclass"]
    for i, label in enumerate(labels.tolist()):
        name = class_names[label] if isinstance(label, int) and 0 <= label < len(class_names) else label
        rows.append(f"{i}\t{_clean(label)}\t{_clean(name)}")
    sprite, tw, th = _sprite(images)
    sprite_png = io.BytesIO()
    sprite.save(sprite_png, format="PNG")
    # Text format of tensorboard/plugins/projector/projector_config.proto; single_image_dim is [width, height].
    name = tensor_name.replace("\\", "\\\\").replace('"', '\\"')
    config = (
        "embeddings {\n"
        f'  tensor_name: "{name}"\n'
        f'  tensor_path: "{VECTORS_FILE}"\n'
        f"  tensor_shape: {latents.shape[0]}\n"
        f"  tensor_shape: {latents.shape[1]}\n"
        f'  metadata_path: "{METADATA_FILE}"\n'
        "  sprite {\n"
        f'    image_path: "{SPRITE_FILE}"\n'
        f"    single_image_dim: {tw}\n"
        f"    single_image_dim: {th}\n"
        "  }\n"
        "}\n"
    )
    return {
        VECTORS_FILE: vectors.getvalue().encode(),
        METADATA_FILE: ("\n".join(rows) + "\n").encode(),
        SPRITE_FILE: sprite_png.getvalue(),
        CONFIG_FILE: config.encode(),
    }


def export_projector(
    folder: str | Path,
    *,
    latents: np.ndarray,
    labels: np.ndarray,
    images: np.ndarray | torch.Tensor,
    class_names: Sequence[str],
    tensor_name: str = "mu",
) -> ProjectorFiles:
    """Write the Embedding Projector's files into ``folder`` (created if missing).

    Point ``tensorboard --logdir FOLDER`` at it, or load vectors.tsv and metadata.tsv at
    projector.tensorflow.org. Paths inside the config are relative to the folder.

    Args:
        folder: where to write.
        latents, labels, images, class_names, tensor_name: as for ``projector_payload``.

    Returns:
        ProjectorFiles(vectors, metadata, sprite, config) paths.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    payload = projector_payload(
        latents=latents, labels=labels, images=images, class_names=class_names, tensor_name=tensor_name
    )
    for name, content in payload.items():
        (folder / name).write_bytes(content)
    return ProjectorFiles(
        folder / VECTORS_FILE, folder / METADATA_FILE, folder / SPRITE_FILE, folder / CONFIG_FILE
    )


def export_zip(
    *,
    latents: np.ndarray,
    labels: np.ndarray,
    images: np.ndarray | torch.Tensor,
    class_names: Sequence[str],
    tensor_name: str = "mu",
) -> bytes:
    """Return a zip archive of the Embedding Projector's four files, e.g. for a download button."""
    payload = projector_payload(
        latents=latents, labels=labels, images=images, class_names=class_names, tensor_name=tensor_name
    )
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, content in payload.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def latents_csv(
    latents: np.ndarray,
    labels: np.ndarray,
    *,
    extra_columns: Mapping[str, Sequence[float] | np.ndarray] | None = None,
) -> str:
    """Return the latents as CSV with the header ``index,label,z0,...,z{D-1}`` then any extra columns.

    Args:
        latents: (N, D).
        labels: (N,).
        extra_columns: column name -> N values, appended after the latents (e.g. each image's
            -ELBO and its position on the 2-D map); floats are written with 9 significant digits.

    Returns:
        The CSV text, one row per point.
    """
    latents, labels = _check(latents, labels)
    extra = {name: np.asarray(values).reshape(-1) for name, values in (extra_columns or {}).items()}
    for name, values in extra.items():
        if len(values) != len(latents):
            raise ValueError(f"extra column {name!r} has {len(values)} values, expected {len(latents)}")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["index", "label", *(f"z{j}" for j in range(latents.shape[1])), *extra])
    for i in range(len(latents)):
        writer.writerow(
            [
                i,
                labels[i].item(),
                *(f"{v:.9g}" for v in latents[i]),
                *(_cell(values[i].item()) for values in extra.values()),
            ]
        )
    return buffer.getvalue()


def _cell(value: object) -> object:
    # float32 values would otherwise print as their float64 expansion (512.3434448242188).
    return f"{value:.9g}" if isinstance(value, float) else value


# Pillow's built-in font has no Greek letters or minus sign; DejaVu (on most Linux systems) has them.
_UNICODE_FONTS = ("DejaVuSans.ttf", "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", "Arial Unicode.ttf")
_ASCII = str.maketrans({"σ": "sd", "μ": "mu", "−": "-", "·": "|", "±": "+-"})


def _font(size: int) -> tuple[ImageFont.ImageFont, bool]:
    """Return a font of ``size`` pixels and whether it draws Greek letters (else labels go ASCII)."""
    for name in _UNICODE_FONTS:
        try:
            return ImageFont.truetype(name, size), True
        except OSError:
            continue
    try:
        return ImageFont.load_default(size=size), False
    except (TypeError, OSError):  # Pillow < 10.1 or no FreeType: the small bitmap font
        return ImageFont.load_default(), False


def _texts(texts: Sequence[str] | None, unicode: bool) -> list[str]:
    return [t if unicode else t.translate(_ASCII) for t in texts or ()]


def _check_traversal(images: np.ndarray | torch.Tensor) -> np.ndarray:
    array = to_uint8(images)
    if array.ndim != 5 or array.shape[2] not in (1, 3) or array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(
            f"expected traversal images (rows, steps, C, H, W) with 1 or 3 channels, got {array.shape}"
        )
    return array


def traversal_sheet(
    images: np.ndarray | torch.Tensor,
    *,
    row_labels: Sequence[str] | None = None,
    column_labels: Sequence[str] | None = None,
    scale: int = 3,
    font_size: int = 14,
) -> Image.Image:
    """Lay a traversal out as one labelled picture: one row per dimension, one column per step.

    Args:
        images: (rows, steps, C, H, W) from ``latent.traversal``, float in [0, 1] or uint8.
        row_labels: one text per row, drawn in a left margin (e.g. "z3 · KL 4.20 nats").
        column_labels: one text per step, drawn above the columns (e.g. "-2σ").
        scale: whole-number enlargement of each tile.
        font_size: label size in pixels.

    Returns:
        A PIL image (mode L for one channel, RGB for three) on a white background.
    """
    array = _check_traversal(images)
    rows, steps = array.shape[:2]
    if row_labels is not None and len(row_labels) != rows:
        raise ValueError(f"got {len(row_labels)} row labels for {rows} rows")
    if column_labels is not None and len(column_labels) != steps:
        raise ValueError(f"got {len(column_labels)} column labels for {steps} steps")
    grid = image_grid(array.reshape(rows * steps, *array.shape[2:]), ncols=steps, scale=scale)
    font, unicode = _font(font_size)
    row_labels = _texts(row_labels, unicode) if row_labels is not None else None
    column_labels = _texts(column_labels, unicode) if column_labels is not None else None
    measure = ImageDraw.Draw(Image.new("L", (1, 1)))
    pad = max(4, font_size // 2)
    left = max((measure.textlength(t, font=font) for t in row_labels), default=0) if row_labels else 0
    left = int(left) + 2 * pad if row_labels else 0
    top = font_size + 2 * pad if column_labels else 0
    sheet = Image.new(grid.mode, (left + grid.width, top + grid.height), "white")
    sheet.paste(grid, (left, top))
    draw = ImageDraw.Draw(sheet)
    tile_h = array.shape[3] * scale
    tile_w = array.shape[4] * scale
    black = 0 if grid.mode == "L" else (0, 0, 0)
    for r, text in enumerate(row_labels or ()):
        y = top + 2 + r * (tile_h + 2) + tile_h // 2
        draw.text((pad, y), text, fill=black, font=font, anchor="lm")
    for c, text in enumerate(column_labels or ()):
        x = left + 2 + c * (tile_w + 2) + tile_w // 2
        draw.text((x, top // 2), text, fill=black, font=font, anchor="mm")
    return sheet


def labelled_grid(
    images: np.ndarray | torch.Tensor,
    *,
    labels: Sequence[str] | None = None,
    ncols: int,
    scale: int = 3,
    font_size: int = 14,
) -> Image.Image:
    """Tile images row-major, each with a short label above it, on a white background.

    Args:
        images: (N, C, H, W) with C in {1, 3}, float in [0, 1] or uint8.
        labels: one short text per image (e.g. "z3" or a score), or None for none.
        ncols: tiles per row, >= 1 (clipped to N).
        scale: whole-number enlargement of each tile.
        font_size: label size in pixels.

    Returns:
        A PIL image (mode L or RGB): ncols cells of W * scale + 2 pixels across, plus a 2-pixel
        border; each cell H * scale + label height + 2 pixels high.
    """
    array = to_uint8(images)
    if array.ndim != 4 or array.shape[1] not in (1, 3) or len(array) == 0:
        raise ValueError(f"expected images (N, C, H, W) with 1 or 3 channels, got shape {array.shape}")
    n, c, h, w = array.shape
    if labels is not None and len(labels) != n:
        raise ValueError(f"got {len(labels)} labels for {n} images")
    if ncols < 1:
        raise ValueError(f"ncols must be >= 1, got {ncols}")
    ncols = min(ncols, n)
    nrows = math.ceil(n / ncols)
    font, unicode = _font(font_size)
    labels = _texts(labels, unicode) if labels is not None else None
    label_h = font_size + 6 if labels else 0
    pad = 2
    cell_w, cell_h = w * scale + pad, h * scale + label_h + pad
    mode = "L" if c == 1 else "RGB"
    black = 0 if mode == "L" else (0, 0, 0)
    sheet = Image.new(mode, (ncols * cell_w + pad, nrows * cell_h + pad), "white")
    draw = ImageDraw.Draw(sheet)
    for i in range(n):
        gr, gc = divmod(i, ncols)
        x, y = pad + gc * cell_w, pad + gr * cell_h
        if labels:
            draw.text((x + w * scale // 2, y + label_h // 2), labels[i], fill=black, font=font, anchor="mm")
        sheet.paste(upscale(to_pil(array[i]), scale=scale), (x, y + label_h))
    return sheet


def traversal_frames(
    images: np.ndarray | torch.Tensor,
    *,
    labels: Sequence[str] | None = None,
    ncols: int | None = None,
    scale: int = 3,
    font_size: int = 14,
) -> list[Image.Image]:
    """Turn a traversal into animation frames that sweep every dimension at once.

    Frame j shows step j of every row: tile r of frame j is ``images[r, j]``, laid out by
    ``labelled_grid`` in ``ncols`` columns, each with its label above it.

    Args:
        images: (rows, steps, C, H, W), float in [0, 1] or uint8.
        labels: one short text per row (e.g. "z3"), drawn above its tile.
        ncols: tiles per frame row; by default ceil(sqrt(rows)).
        scale: whole-number enlargement of each tile.
        font_size: label size in pixels.

    Returns:
        ``steps`` PIL images of one size.
    """
    array = _check_traversal(images)
    rows, steps = array.shape[:2]
    if labels is not None and len(labels) != rows:
        raise ValueError(f"got {len(labels)} labels for {rows} rows")
    ncols = ncols or math.ceil(math.sqrt(rows))
    return [
        labelled_grid(array[:, j], labels=labels, ncols=ncols, scale=scale, font_size=font_size)
        for j in range(steps)
    ]


def traversal_gif(
    images: np.ndarray | torch.Tensor,
    *,
    labels: Sequence[str] | None = None,
    scale: int = MIN_EXPORT_SCALE,
    duration_ms: int = 150,
) -> bytes:
    """Return an animated GIF that sweeps every row of a traversal at once, forwards then back.

    Args:
        images: (rows, steps, C, H, W), float in [0, 1] or uint8.
        labels: one short text per row (e.g. "z3"), drawn above its tile.
        scale: enlargement of each tile, checked by ``imaging.export_scale`` (>= 3, fit for slides);
            the labels grow with it.
        duration_ms: how long each frame shows.

    Returns:
        The GIF file's bytes.
    """
    scale = export_scale(scale)
    frames = traversal_frames(images, labels=labels, scale=scale, font_size=max(14, 4 * scale))
    return gif_bytes(frames, duration_ms=duration_ms, boomerang=len(frames) > 2)
