"""Turn image batches into pictures: uint8 arrays, PIL images, grids, strips, PNG and GIF bytes."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

GREY_PALETTE = bytes(v for i in range(256) for v in (i, i, i))


def to_uint8(images: np.ndarray | torch.Tensor) -> np.ndarray:
    """Convert images to uint8 without changing their shape.

    Args:
        images: float in [0, 1] (clipped) or uint8, any shape, usually (N, C, H, W).

    Returns:
        uint8 array of the same shape, floats scaled by 255 and rounded.
    """
    if isinstance(images, torch.Tensor):
        images = images.detach().cpu().numpy()
    images = np.asarray(images)
    if images.dtype == np.uint8:
        return images
    if images.dtype == np.bool_:
        return images.astype(np.uint8) * 255
    return np.round(np.clip(images.astype(np.float32), 0.0, 1.0) * 255).astype(np.uint8)


def to_pil(image: np.ndarray | torch.Tensor) -> Image.Image:
    """Convert one image (C, H, W) with C in {1, 3}, or (H, W), to a PIL image in mode L or RGB."""
    array = to_uint8(image)
    if array.ndim == 3 and array.shape[0] == 1:
        array = array[0]
    if array.ndim == 2:
        return Image.fromarray(np.ascontiguousarray(array), mode="L")
    if array.ndim == 3 and array.shape[0] == 3:
        return Image.fromarray(np.ascontiguousarray(array.transpose(1, 2, 0)), mode="RGB")
    raise ValueError(f"expected an image (C, H, W) with 1 or 3 channels, or (H, W); got shape {array.shape}")


def upscale(img: Image.Image, *, scale: int) -> Image.Image:
    """Enlarge ``img`` by an integer factor with nearest-neighbour sampling, keeping pixels crisp."""
    if scale < 1 or int(scale) != scale:
        raise ValueError(f"scale must be a whole number >= 1, got {scale}")
    if scale == 1:
        return img
    return img.resize((img.width * int(scale), img.height * int(scale)), resample=Image.NEAREST)


def image_grid(
    images: np.ndarray | torch.Tensor, *, ncols: int, pad: int = 2, pad_value: int = 255, scale: int = 1
) -> Image.Image:
    """Tile images into one picture, rows filled left to right.

    Tiles are enlarged by ``scale`` first; ``pad`` pixels of ``pad_value`` separate them
    and frame the grid, so the result is ncols * W * scale + (ncols + 1) * pad wide and
    nrows * H * scale + (nrows + 1) * pad high, with ncols clipped to N and
    nrows = ceil(N / ncols). Cells past the last image stay ``pad_value``.

    Args:
        images: (N, C, H, W) with C in {1, 3}, float in [0, 1] or uint8.
        ncols: tiles per row, >= 1.
        pad: separator width in output pixels, >= 0.
        pad_value: separator grey level, 0-255.
        scale: whole-number enlargement of each tile.

    Returns:
        A PIL image in mode L (one channel) or RGB (three).
    """
    array = to_uint8(images)
    if array.ndim != 4 or array.shape[1] not in (1, 3):
        raise ValueError(f"expected images (N, C, H, W) with 1 or 3 channels, got shape {array.shape}")
    n, c, h, w = array.shape
    if n == 0:
        raise ValueError("cannot make a grid of zero images")
    if ncols < 1:
        raise ValueError(f"ncols must be >= 1, got {ncols}")
    if pad < 0 or not 0 <= pad_value <= 255:
        raise ValueError(f"pad must be >= 0 and pad_value in [0, 255], got {pad} and {pad_value}")
    if scale < 1 or int(scale) != scale:
        raise ValueError(f"scale must be a whole number >= 1, got {scale}")
    scale = int(scale)
    ncols = min(ncols, n)
    nrows = math.ceil(n / ncols)
    th, tw = h * scale, w * scale
    canvas = np.full((c, nrows * th + (nrows + 1) * pad, ncols * tw + (ncols + 1) * pad), pad_value, np.uint8)
    tiles = array.repeat(scale, axis=2).repeat(scale, axis=3) if scale > 1 else array
    for i in range(n):
        r, col = divmod(i, ncols)
        top, left = pad + r * (th + pad), pad + col * (tw + pad)
        canvas[:, top : top + th, left : left + tw] = tiles[i]
    return to_pil(canvas)


def strip(images: np.ndarray | torch.Tensor, *, scale: int = 3) -> Image.Image:
    """Lay images (N, C, H, W) out in one row, enlarged by ``scale``."""
    return image_grid(images, ncols=max(1, len(images)), scale=scale)


def png_bytes(img: Image.Image) -> bytes:
    """Encode ``img`` as PNG."""
    buffer = io.BytesIO()
    img.save(buffer, format="PNG")
    return buffer.getvalue()


def _palette_frame(frame: Image.Image) -> Image.Image:
    if frame.mode == "L":
        # An explicit grey ramp (putpalette turns L into P): each grey level indexes itself.
        paletted = frame.copy()
        paletted.putpalette(GREY_PALETTE, rawmode="RGB")
        return paletted
    return frame.convert("RGB").quantize(
        colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE
    )


def gif_bytes(
    frames: Sequence[Image.Image], *, duration_ms: int = 120, loop: int = 0, boomerang: bool = False
) -> bytes:
    """Encode frames of one size as an animated GIF.

    Greyscale frames get an exact 256-level grey palette; colour frames are quantised to
    256 colours each without dithering.

    Args:
        frames: PIL images, all of one size.
        duration_ms: how long each frame shows.
        loop: how often to repeat; 0 repeats forever.
        boomerang: play forwards then backwards (the end frames once each).

    Returns:
        The GIF file's bytes.
    """
    frames = list(frames)
    if not frames:
        raise ValueError("a GIF needs at least one frame")
    sizes = {f.size for f in frames}
    if len(sizes) > 1:
        raise ValueError(f"all GIF frames must have one size, got {sorted(sizes)}")
    if duration_ms < 1:
        raise ValueError(f"duration_ms must be >= 1, got {duration_ms}")
    if boomerang:
        frames = frames + frames[-2:0:-1]
    grey = all(f.mode in ("L", "1") for f in frames)
    paletted = [_palette_frame(f.convert("L") if grey else f) for f in frames]
    buffer = io.BytesIO()
    paletted[0].save(
        buffer,
        format="GIF",
        save_all=True,
        append_images=paletted[1:],
        duration=duration_ms,
        loop=loop,
        optimize=False,
        disposal=1,
    )
    return buffer.getvalue()


# Slides need at least three screen pixels per model pixel per side (28 px -> 84 px); eight keeps a
# 28-pixel digit sharp on a projected slide (224 px). Enlargement is nearest-neighbour, so pixels stay crisp.
MIN_EXPORT_SCALE = 3
EXPORT_SCALES = (3, 4, 6, 8)
SLIDE_SCALE = 8


def export_scale(scale: int) -> int:
    """Check the enlargement of an exported picture or animation and return it as an int.

    Args:
        scale: model pixels -> exported pixels per side, a whole number >= ``MIN_EXPORT_SCALE``.

    Returns:
        ``scale`` as an int.
    """
    if isinstance(scale, bool) or int(scale) != scale or scale < MIN_EXPORT_SCALE:
        raise ValueError(
            f"an export must be enlarged by a whole factor of at least {MIN_EXPORT_SCALE} "
            f"(slides need >= {MIN_EXPORT_SCALE}x the model's pixels per side), got {scale}"
        )
    return int(scale)


def animation_gif(
    frames: np.ndarray | torch.Tensor,
    *,
    scale: int = SLIDE_SCALE,
    ncols: int = 4,
    duration_ms: int = 120,
    boomerang: bool = False,
) -> bytes:
    """Animate decoded images as a GIF fit for slides, every model pixel a crisp scale x scale block.

    Args:
        frames: one image per frame (F, C, H, W), or one grid per frame (F, N, C, H, W) laid out
            by ``image_grid`` in ``ncols`` columns; float in [0, 1] or uint8.
        scale: enlargement per side, checked by ``export_scale`` (>= 3).
        ncols: tiles per row when each frame is a grid.
        duration_ms: how long each frame shows.
        boomerang: play forwards then backwards.

    Returns:
        The GIF file's bytes: frames of W * scale x H * scale pixels (plus the grid's padding).
    """
    scale = export_scale(scale)
    array = to_uint8(frames)
    if array.ndim == 4:
        pictures = [upscale(to_pil(image), scale=scale) for image in array]
    elif array.ndim == 5:
        pictures = [image_grid(grid, ncols=ncols, scale=scale) for grid in array]
    else:
        raise ValueError(f"expected frames (F, C, H, W) or (F, N, C, H, W), got shape {array.shape}")
    return gif_bytes(pictures, duration_ms=duration_ms, boomerang=boomerang)


# The one class palette of the app, its charts and every exported image: Matplotlib's "tab10"
# (distinct, colour-blind tolerable), then ten darker colours for datasets with more classes.
# None is pale, so every class shows on a white background.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
    (0, 0, 128),
    (128, 0, 0),
    (0, 128, 128),
    (128, 128, 0),
    (75, 0, 130),
    (210, 105, 30),
    (0, 100, 0),
    (199, 21, 133),
    (47, 79, 79),
    (184, 134, 11),
)


def label_hex(label: int) -> str:
    """Return the palette colour of class ``label`` as ``#rrggbb`` (for Plotly)."""
    return "#{:02x}{:02x}{:02x}".format(*label_colour(label))


def label_colour(label: int) -> tuple[int, int, int]:
    """Return the RGB colour that draws class ``label`` (the palette repeats after twenty classes)."""
    return PALETTE[int(label) % len(PALETTE)]


def scatter_frames(
    coords_list: Sequence[np.ndarray],
    labels: np.ndarray,
    *,
    size: int = 320,
    radius: int = 2,
    pad: int = 14,
    titles: Sequence[str] | None = None,
    class_names: Sequence[str] | None = None,
    zoom: int = 1,
) -> list[Image.Image]:
    """Draw one scatter plot per frame on shared axes, e.g. the frames of an animated GIF.

    Every frame uses the same bounds (the union over all frames), so a point that does not
    move stays on the same pixel and the motion between frames is real. y grows upwards.

    Args:
        coords_list: one float array (N, 2) per frame, all for the same N points.
        labels: integer class of each point, (N,); colours come from ``label_colour``.
        size: width and height of the plot area in pixels, >= 32.
        radius: point radius in pixels, >= 1.
        pad: margin between the plot area's edge and the outermost points, in pixels.
        titles: one caption per frame drawn top left (e.g. "epoch 3"), or None.
        class_names: names for a legend strip below the plot (index = label), or None.
        zoom: whole-number factor on every length above and on the text, e.g. 2 for slides.

    Returns:
        RGB PIL images, all of one size: (size * zoom, size * zoom) plus the legend's height.
    """
    from PIL import ImageDraw, ImageFont

    frames = [np.asarray(c, dtype=np.float64) for c in coords_list]
    labels = np.asarray(labels)
    if not frames:
        raise ValueError("scatter_frames needs at least one frame of coordinates")
    n = len(labels)
    if labels.ndim != 1 or any(c.shape != (n, 2) for c in frames):
        shapes = sorted({c.shape for c in frames})
        raise ValueError(f"every frame must be (N, 2) for the N = {n} labels, got shapes {shapes}")
    if not all(np.isfinite(c).all() for c in frames):
        raise ValueError("coordinates must be finite (did training diverge?)")
    if size < 32 or radius < 1 or pad < radius:
        raise ValueError(f"need size >= 32, radius >= 1 and pad >= radius; got {size}, {radius}, {pad}")
    if titles is not None and len(titles) != len(frames):
        raise ValueError(f"got {len(titles)} titles for {len(frames)} frames")
    if isinstance(zoom, bool) or int(zoom) != zoom or zoom < 1:
        raise ValueError(f"zoom must be a whole number >= 1, got {zoom}")
    size, radius, pad, zoom = size * int(zoom), radius * int(zoom), pad * int(zoom), int(zoom)
    stacked = np.concatenate(frames) if n else np.zeros((1, 2))
    lo, hi = stacked.min(axis=0), stacked.max(axis=0)
    span = np.where(hi - lo > 0, hi - lo, 1.0)
    inner = size - 1 - 2 * pad
    font = ImageFont.load_default(size=10 * zoom) if zoom > 1 else ImageFont.load_default()
    legend = _legend_entries(labels, class_names)
    row = 18 * zoom
    legend_height = row * math.ceil(len(legend) / 5) + 6 * zoom if legend else 0
    images = []
    for i, coords in enumerate(frames):
        img = Image.new("RGB", (size, size + legend_height), "white")
        draw = ImageDraw.Draw(img)
        draw.rectangle((0, 0, size - 1, size - 1), outline=(210, 210, 210))
        px = pad + (coords - lo) / span * inner
        for (x, y), label in zip(px, labels):
            y = size - 1 - y
            draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=label_colour(label))
        if titles is not None:
            draw.text((6 * zoom, 4 * zoom), str(titles[i]), fill=(40, 40, 40), font=font)
        for j, (label, name) in enumerate(legend):
            left, top = 8 * zoom + (j % 5) * (size - 8 * zoom) // 5, size + 6 * zoom + row * (j // 5)
            box = (left, top + 2 * zoom, left + 8 * zoom, top + 10 * zoom)
            draw.rectangle(box, fill=label_colour(label))
            draw.text((left + 12 * zoom, top), name, fill=(40, 40, 40), font=font)
        images.append(img)
    return images


def _legend_entries(labels: np.ndarray, class_names: Sequence[str] | None) -> list[tuple[int, str]]:
    if class_names is None:
        return []
    present = sorted({int(v) for v in labels})
    return [(v, class_names[v] if 0 <= v < len(class_names) else str(v)) for v in present]
