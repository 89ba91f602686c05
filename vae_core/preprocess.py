"""Uploaded images turned into model inputs: bytes -> checked image -> (1, C, H, W) in [0, 1].

``prepare_image`` refuses what it cannot read safely (too many bytes or pixels, formats other
than PNG/JPEG/WEBP/BMP/GIF, damaged files) with an ``ImageError`` a user can act on, and never
lets a PIL exception escape. The folder loader in ``datasets`` runs every file through the same
``prepare_pil``.
"""

from __future__ import annotations

import io
import warnings
from typing import Literal, NamedTuple

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from vae_core.truncation import png_scanline_bytes

Style = Literal["mnist", "plain"]
STYLES: tuple[str, ...] = ("mnist", "plain")

MAX_UPLOAD_BYTES = 20 * 1024 * 1024
MAX_PIXELS = 40_000_000
# PNG decodes row by row: a 60 kB file of 1 x 30 million pixels takes seconds. No real photo
# needs a longer side than this.
MAX_SIDE = 20_000
# Deliberately lower than PIL's default (~89 M): PIL warns above this and refuses above twice
# this already in ``Image.open``; ``prepare_pil`` refuses anything above ``MAX_PIXELS`` itself.
Image.MAX_IMAGE_PIXELS = MAX_PIXELS
ALLOWED_FORMATS: tuple[str, ...] = ("PNG", "JPEG", "WEBP", "BMP", "GIF")
# Phone and camera JPEGs often open as MPO (multi-picture JPEG); the JPEG plugin reads them.
_READ_FORMATS = frozenset(ALLOWED_FORMATS) | {"MPO"}
IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif")
# Large uploads are shrunk to this longest side before any float maths: enough for a 28x28 digit.
WORKING_SIDE = 512
PREVIEW_SIDE = 256
# MNIST digits were scaled to fit a 20x20 box inside the 28x28 field (LeCun et al. 1998).
MNIST_BOX_FRACTION = 20 / 28
INK_THRESHOLD = 0.25
BACKGROUND_FLOOR = 0.1
MIN_CONTRAST = 0.1


class PreparedImage(NamedTuple):
    """One uploaded image as a model input, with the pipeline's previews and notes.

    ``x`` is (1, C, H, W) float32 in [0, 1]; ``steps`` pairs a label with a small PIL image
    per stage ("original", "greyscale", ...); ``notes`` says what was done and why.
    """

    x: torch.Tensor
    steps: tuple[tuple[str, Image.Image], ...]
    notes: tuple[str, ...]


class ImageError(ValueError):
    """An image could not be read or is refused; the message says why in plain words."""


def error_text(err: BaseException) -> str:
    """Return the error's type and first line, plus its last line when it spans several (the cause)."""
    lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
    if not lines:
        return type(err).__name__
    detail = lines[0] if len(lines) == 1 else f"{lines[0]} {lines[-1]}"
    return f"{type(err).__name__}: {detail}"


def check_image_shape(image_shape: tuple[int, int, int]) -> tuple[int, int, int]:
    shape = tuple(int(s) for s in image_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"image_shape must be (C, H, W) with positive sizes, got {image_shape}")
    if shape[0] not in (1, 3):
        raise ValueError(f"images must have 1 (greyscale) or 3 (RGB) channels, got {shape[0]}")
    return shape  # type: ignore[return-value]


def check_style(style: str) -> None:
    if style not in STYLES:
        raise ValueError(f"style must be one of {STYLES}, got {style!r}")


# Registry datasets whose images were made as MNIST's were: a digit in a 20x20 box, centred by its centre
# of mass in a 28x28 field (``datasets._load_digits`` pads scikit-learn's digits the same way). KMNIST and
# Fashion-MNIST fill the field differently, so they are not here.
DIGIT_DATASETS: frozenset[str] = frozenset({"mnist", "digits", "sklearn-digits"})
_FOLDER_MNIST_STYLE = "mnist style to"  # how ``folders.load_folder`` records a folder read in mnist style


def model_style(*, dataset: str, preprocessing: str = "") -> Style:
    """Return how new images should be prepared for a model, following how its training images were made.

    Args:
        dataset: the checkpoint's dataset name (``CheckpointInfo.dataset``): a registry key or ``folder:PATH``.
        preprocessing: the checkpoint's description of its data (``CheckpointInfo.preprocessing``); a folder
            dataset records there the style its images were read in.

    Returns:
        ``"mnist"`` for the digit datasets (``DIGIT_DATASETS``) and folders read in mnist style;
        ``"plain"`` (centre crop and resize, as folders are read by default) for everything else.
    """
    name = dataset.strip().lower()
    if name.startswith("folder:"):
        return "mnist" if _FOLDER_MNIST_STYLE in preprocessing else "plain"
    return "mnist" if name in DIGIT_DATASETS else "plain"


class CanvasColours(NamedTuple):
    """Grey levels (0..255) for a drawing canvas: the background and the ink of a model's images."""

    background: int
    ink: int

    @property
    def css(self) -> tuple[str, str]:
        """Return (background, ink) as CSS colours ``#rrggbb``."""
        return tuple(f"#{v:02x}{v:02x}{v:02x}" for v in (self.background, self.ink))  # type: ignore[return-value]


def canvas_colours(images: torch.Tensor) -> CanvasColours:
    """Return the background (the median grey of the images' borders) and an ink that contrasts with it.

    Args:
        images: uint8 (N, C, H, W), a model's test images.

    Returns:
        ``CanvasColours``: MNIST-like images (dark border) give (0, 255), white on black; images on a
        light background give black ink on that background.
    """
    if images.dtype != torch.uint8 or images.ndim != 4 or len(images) == 0:
        raise ValueError(
            f"images must be uint8 (N, C, H, W) with N >= 1, got {images.dtype} {tuple(images.shape)}"
        )
    grey = images.float().mean(dim=1)  # (N, H, W)
    border = torch.cat([grey[:, 0, :], grey[:, -1, :], grey[:, :, 0], grey[:, :, -1]], dim=1)
    background = int(round(float(border.median())))
    return CanvasColours(background=background, ink=0 if background >= 128 else 255)


def prepare_drawing(
    rgba: np.ndarray,
    *,
    image_shape: tuple[int, int, int] = (1, 28, 28),
    style: Style = "mnist",
    with_steps: bool = True,
) -> PreparedImage:
    """Turn a canvas's pixels into a model input, through the same steps as an upload.

    Args:
        rgba: uint8 (H, W, 4) or (H, W, 3), the canvas as drawn (ink on an opaque background).
        image_shape: the model's (C, H, W).
        style: ``"mnist"`` or ``"plain"``, see ``prepare_image``.
        with_steps: build the preview images.

    Returns:
        ``PreparedImage`` with x (1, C, H, W) float32 in [0, 1].
    """
    arr = np.asarray(rgba)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] not in (3, 4) or min(arr.shape[:2]) < 1:
        raise ValueError(f"a drawing must be uint8 (H, W, 3 or 4), got {arr.dtype} {arr.shape}")
    img = Image.fromarray(np.ascontiguousarray(arr), "RGBA" if arr.shape[2] == 4 else "RGB")
    if img.mode == "RGBA" and img.getextrema()[3][0] == 255:
        img = img.convert("RGB")  # an opaque canvas: the alpha channel says nothing
    return prepare_pil(img, image_shape=image_shape, style=style, with_steps=with_steps)


# Magic numbers of formats people upload that we refuse, for a message that names them.
_OTHER_FORMATS = (
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"\x00\x00\x01\x00", "ICO"),
    (b"%PDF", "PDF"),
    (b"8BPS", "Photoshop (PSD)"),
    (b"\x00\x00\x00\x0cjP  ", "JPEG 2000"),
    (b"\xff\x4f\xff\x51", "JPEG 2000"),
    (b"qoif", "QOI"),
)
_ALLOWED_TEXT = "PNG, JPEG, WEBP, BMP or GIF"


def _describe_unknown(data: bytes) -> str:
    for magic, kind in _OTHER_FORMATS:
        if data.startswith(magic):
            return f"{kind} images are not supported: upload a {_ALLOWED_TEXT} file"
    if data[4:8] == b"ftyp":
        brand = data[8:12].decode("ascii", "replace").strip()
        kind = (
            "AVIF" if brand.startswith("avi") else "HEIC/HEIF" if brand.startswith(("hei", "mif")) else brand
        )
        return f"{kind} images are not supported: upload a {_ALLOWED_TEXT} file"
    head = data[:512].lstrip()
    if head[:5].lower() == b"<?xml" or b"<svg" in head.lower():
        return f"SVG (vector) images are not supported: upload a {_ALLOWED_TEXT} file"
    try:
        head.decode("utf-8")
        is_text = bool(head) and all(ch >= 32 or ch in b"\t\r\n" for ch in head)
    except UnicodeDecodeError:
        is_text = False
    if is_text:
        return f"this file is text, not an image: upload a {_ALLOWED_TEXT} file"
    return f"this is not a {_ALLOWED_TEXT} image, or the file is damaged"


def _open_image(data: bytes) -> Image.Image:
    """Open ``data`` lazily (header only) with the allowed decoders; the caller decodes."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(f"prepare_image expects the file's bytes, got {type(data).__name__}")
    data = bytes(data)
    if not data:
        raise ImageError("the file is empty")
    if len(data) > MAX_UPLOAD_BYTES:
        raise ImageError(
            f"the file is {len(data) / 1e6:.1f} MB; the limit is {MAX_UPLOAD_BYTES / 1e6:.0f} MB. "
            "Upload a smaller image (a digit needs only a few hundred pixels a side)."
        )
    try:
        img = Image.open(io.BytesIO(data), formats=sorted(ALLOWED_FORMATS))
    except UnidentifiedImageError as err:
        raise ImageError(_describe_unknown(data)) from err
    if img.format not in _READ_FORMATS:
        raise ImageError(f"{img.format} images are not supported: upload a {_ALLOWED_TEXT} file")
    _refuse_truncated_png(data, img)
    return img


def _refuse_truncated_png(data: bytes, img: Image.Image) -> None:
    """Refuse a PNG whose data ends before its last row: PIL would fill the rest with black, silently."""
    width, height = img.size
    if img.format != "PNG" or width * height > MAX_PIXELS or max(width, height) > MAX_SIDE:
        return  # other formats raise on truncation themselves; oversized images are refused later
    found = png_scanline_bytes(data)
    if found is not None and found[0] < found[1]:
        held, promised, row = found
        raise ImageError(
            f"the image is truncated: its data holds {held // row:,} of the {height:,} rows its header promises "
            f"({100 * held / promised:.1f}% of the pixels). Upload the complete file."
        )


def prepare_image(
    data: bytes,
    *,
    image_shape: tuple[int, int, int] = (1, 28, 28),
    style: Style = "mnist",
    with_steps: bool = True,
) -> PreparedImage:
    """Turn an uploaded file's bytes into a model input, refusing unsafe or unreadable files.

    Args:
        data: the file's bytes (PNG, JPEG, WEBP, BMP or GIF; at most ``MAX_UPLOAD_BYTES`` and
            ``MAX_PIXELS``).
        image_shape: the model's (C, H, W).
        style: ``"mnist"`` (digit crop, scale to a 20/28 box, centre of mass at the centre) or
            ``"plain"`` (centre crop to the aspect ratio, resize).
        with_steps: build the preview images (the folder loader skips them).

    Returns:
        ``PreparedImage`` with x (1, C, H, W) float32 in [0, 1], previews and notes.

    Raises:
        ImageError: empty, too large, of another format, damaged or otherwise unreadable.
        ValueError: an invalid ``image_shape`` or ``style``.
    """
    shape = check_image_shape(image_shape)
    check_style(style)
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            img = _open_image(data)
        except (ImageError, TypeError):
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
            raise ImageError(_too_many_pixels_message()) from err
        except Exception as err:  # any PIL failure becomes a message for the user
            raise ImageError(f"the image could not be read: {error_text(err)}") from err
        return prepare_pil(img, image_shape=shape, style=style, with_steps=with_steps)


def _too_many_pixels_message(size: tuple[int, int] | None = None) -> str:
    dims = f" ({size[0]}x{size[1]} = {size[0] * size[1] / 1e6:.0f} million pixels)" if size else ""
    return f"the image is too large{dims}; the limit is {MAX_PIXELS / 1e6:.0f} million pixels"


def prepare_pil(
    img: Image.Image,
    *,
    image_shape: tuple[int, int, int] = (1, 28, 28),
    style: Style = "mnist",
    with_steps: bool = True,
) -> PreparedImage:
    """Convert an opened PIL image to a model input (shared by uploads and the folder loader).

    Steps: refuse more than ``MAX_PIXELS``, take the first frame of an animation, apply the
    EXIF orientation, bring every mode (1, L, P, PA, LA, RGB, RGBA, CMYK, I;16, I, F, ...) to
    8-bit L/LA/RGB/RGBA, shrink to ``WORKING_SIDE``, then follow ``style`` (see ``prepare_image``).

    Args:
        img: an image from ``Image.open`` (not necessarily decoded yet).
        image_shape: the model's (C, H, W).
        style: ``"mnist"`` or ``"plain"``.
        with_steps: build the preview images.

    Returns:
        ``PreparedImage`` with x (1, C, H, W) float32 in [0, 1].
    """
    shape = check_image_shape(image_shape)
    check_style(style)
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            return _prepare(img, shape, style, with_steps)
        except ImageError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
            raise ImageError(_too_many_pixels_message()) from err
        except Exception as err:  # any PIL failure becomes a message for the user
            raise ImageError(
                f"the image could not be read (damaged or truncated?): {error_text(err)}"
            ) from err


def _prepare(img: Image.Image, shape: tuple[int, int, int], style: str, with_steps: bool) -> PreparedImage:
    notes: list[str] = []
    width, height = img.size
    if width < 1 or height < 1:
        raise ImageError(f"the image has no pixels ({width}x{height})")
    if width * height > MAX_PIXELS:
        raise ImageError(_too_many_pixels_message((width, height)))
    if max(width, height) > MAX_SIDE:
        raise ImageError(f"the image is {width}x{height} pixels; the longest side may be at most {MAX_SIDE}")
    if getattr(img, "is_animated", False):
        img.seek(0)
        notes.append(f"{img.format} with several frames (animated): used the first frame")
    img.load()
    try:
        orientation = img.getexif().get(0x0112, 1)
    except Exception:  # a damaged EXIF block should not cost the picture
        orientation = 1
        notes.append("EXIF data unreadable: orientation ignored")
    if orientation in range(2, 9):
        img = ImageOps.exif_transpose(img)
        notes.append("EXIF rotation applied")
    img = _to_8bit(img, notes)
    if max(img.size) > WORKING_SIDE:
        scale = WORKING_SIDE / max(img.size)
        size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
        notes.append(f"shrunk from {img.width}x{img.height} to {size[0]}x{size[1]} before the steps below")
        img = img.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    steps: list[tuple[str, Image.Image]] = []
    if with_steps:
        steps.append(("original", _preview(img)))
    if style == "mnist":
        arr = _mnist_style(img, shape[1:], notes, steps if with_steps else None)
        if shape[0] == 3:
            arr = np.repeat(arr[None], 3, axis=0)
            notes.append("mnist style is greyscale: copied to 3 channels")
        else:
            arr = arr[None]
    else:
        arr = _plain_style(img, shape, notes, steps if with_steps else None)
    arr = np.clip(np.nan_to_num(arr.astype(np.float32), nan=0.0, posinf=1.0, neginf=0.0), 0.0, 1.0)
    x = torch.from_numpy(np.ascontiguousarray(arr)).unsqueeze(0)
    if tuple(x.shape) != (1, *shape):
        raise ImageError(f"internal error: prepared shape {tuple(x.shape)} is not {(1, *shape)}")
    return PreparedImage(x=x, steps=tuple(steps), notes=tuple(notes))


def _to_8bit(img: Image.Image, notes: list[str]) -> Image.Image:
    """Bring any PIL mode to one of L, LA, RGB, RGBA (8 bits per channel)."""
    mode = img.mode
    if mode in ("L", "LA", "RGB", "RGBA"):
        return img
    if mode == "1":
        return img.convert("L")
    if mode in ("P", "PA"):
        has_alpha = mode == "PA" or "transparency" in img.info
        return img.convert("RGBA" if has_alpha else "RGB")
    if mode.startswith("I") or mode == "F":
        arr = np.asarray(img).astype(np.float64)
        arr = np.nan_to_num(arr, nan=0.0, posinf=0.0, neginf=0.0)
        lo, hi = float(arr.min()), float(arr.max())
        if mode.startswith("I;16"):
            arr = arr / 65535.0
            notes.append("16-bit image scaled to 8 bits")
        elif lo >= 0 and hi <= (1.0 if mode == "F" else 255.0):
            arr = arr / (1.0 if mode == "F" else 255.0)
        elif lo >= 0 and hi <= 65535:
            arr = arr / 65535.0
            notes.append("16-bit image scaled to 8 bits")
        else:
            arr = (arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)
            notes.append(f"{mode} image values {lo:g}..{hi:g} stretched to 0..255")
        return Image.fromarray((np.clip(arr, 0, 1) * 255).round().astype(np.uint8), "L")
    if mode in ("La", "RGBa"):
        return img.convert("LA" if mode == "La" else "RGBA")
    # CMYK, YCbCr, LAB, HSV, RGBX, ...: PIL's own conversion.
    return img.convert("RGBA" if "A" in mode else "RGB")


def _preview(img: Image.Image) -> Image.Image:
    preview = img.copy()
    preview.thumbnail((PREVIEW_SIDE, PREVIEW_SIDE), Image.Resampling.LANCZOS)
    return preview


def _grey_image(arr: np.ndarray) -> Image.Image:
    return Image.fromarray((np.clip(arr, 0, 1) * 255).round().astype(np.uint8), "L")


def _is_grey(rgb: np.ndarray) -> bool:
    """Return whether an (H, W, 3) array has the same value in its three channels everywhere."""
    return bool(np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2]))


def _border(arr: np.ndarray) -> np.ndarray:
    return np.concatenate([arr[0, :], arr[-1, :], arr[:, 0], arr[:, -1]])


def _mnist_style(
    img: Image.Image, size: tuple[int, int], notes: list[str], steps: list[tuple[str, Image.Image]] | None
) -> np.ndarray:
    """Return an (H, W) array in [0, 1]: bright ink on black, as MNIST digits were made.

    LeCun et al. (1998), MNIST: size-normalise the digit into a 20x20 box preserving its
    aspect ratio, then centre the box's centre of mass in the 28x28 field. Here the box is
    ``round(20/28 * H)`` by ``round(20/28 * W)`` for any H, W.
    """
    height, width = size
    arr = np.asarray(img, dtype=np.float32) / 255.0
    if arr.ndim == 2:
        grey, alpha = arr, None
    elif img.mode == "LA":
        grey, alpha = arr[..., 0], arr[..., 1]
    else:
        # ITU-R 601-2 luma, as PIL's convert("L").
        grey = arr[..., :3] @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        alpha = arr[..., 3] if img.mode == "RGBA" else None
        if not _is_grey(arr[..., :3]):
            notes.append("colour converted to greyscale")
    if alpha is not None and alpha.min() < 1.0:
        # Composite onto a background that contrasts with the opaque strokes: drawn digits are
        # mostly dark strokes on a transparent canvas, so those go onto white.
        weight = float(alpha.sum())
        ink = float((grey * alpha).sum() / weight) if weight > 0 else 0.0
        background = 1.0 if ink < 0.5 else 0.0
        grey = grey * alpha + background * (1.0 - alpha)
        notes.append(f"transparent background: composited onto {'white' if background else 'black'}")
    if steps is not None:
        steps.append(("greyscale", _preview(_grey_image(grey))))
    if float(np.median(_border(grey))) > 0.5:
        grey = 1.0 - grey
        notes.append("light background detected: inverted")
        if steps is not None:
            steps.append(("inverted", _preview(_grey_image(grey))))
    lo, hi = float(np.median(_border(grey))), float(grey.max())
    if hi - lo < MIN_CONTRAST:
        notes.append(
            f"no ink found (blank image): resized from {grey.shape[1]}x{grey.shape[0]} to {width}x{height} only"
        )
        resized = _grey_image(grey).resize((width, height), Image.Resampling.LANCZOS)
        out = np.asarray(resized, dtype=np.float32) / 255.0
        if steps is not None:
            steps.append(("resized", _grey_image(out)))
        return out
    if lo > 0.5 / 255 or hi < 254.5 / 255:
        notes.append(
            f"contrast stretched: background level {lo * 255:.0f} to black, brightest ink {hi * 255:.0f} to white"
        )
    grey = np.clip((grey - lo) / (hi - lo), 0.0, 1.0)
    # Paper texture and sensor noise stay just above the background level; MNIST's background is 0.
    faint = (grey > 0.0) & (grey < BACKGROUND_FLOOR)
    if faint.any():
        notes.append(
            f"{int(faint.sum()):,} faint pixels (under {BACKGROUND_FLOOR:.0%} of the ink) set to black"
        )
    grey[faint] = 0.0
    if steps is not None:
        steps.append(("contrast stretched", _preview(_grey_image(grey))))
    rows, cols = (
        np.flatnonzero((grey > INK_THRESHOLD).any(axis=1)),
        np.flatnonzero((grey > INK_THRESHOLD).any(axis=0)),
    )
    patch = grey[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    box_h, box_w = max(1, round(MNIST_BOX_FRACTION * height)), max(1, round(MNIST_BOX_FRACTION * width))
    scale = min(box_h / patch.shape[0], box_w / patch.shape[1])
    new_h, new_w = max(1, round(patch.shape[0] * scale)), max(1, round(patch.shape[1] * scale))
    notes.append(
        f"cropped to the ink ({patch.shape[1]}x{patch.shape[0]} of {grey.shape[1]}x{grey.shape[0]}) and scaled to "
        f"{new_w}x{new_h}, to fit a {box_w}x{box_h} box as MNIST digits fit 20x20"
    )
    scaled = Image.fromarray(patch.astype(np.float32), "F").resize((new_w, new_h), Image.Resampling.LANCZOS)
    scaled = np.clip(np.asarray(scaled, dtype=np.float32), 0.0, 1.0)
    if steps is not None:
        steps.append(("cropped & scaled", _grey_image(scaled)))
    total = float(scaled.sum())
    if total > 0:
        cy = float(scaled.sum(axis=1) @ (np.arange(new_h) + 0.5)) / total
        cx = float(scaled.sum(axis=0) @ (np.arange(new_w) + 0.5)) / total
    else:
        cy, cx = new_h / 2, new_w / 2
    top, left = round(height / 2 - cy), round(width / 2 - cx)
    canvas = np.zeros((height, width), dtype=np.float32)
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + new_h, height), min(left + new_w, width)
    if y1 > y0 and x1 > x0:
        canvas[y0:y1, x0:x1] = scaled[y0 - top : y1 - top, x0 - left : x1 - left]
    notes.append(f"placed on a black {width}x{height} field with its centre of mass at the centre")
    if steps is not None:
        steps.append(("centred", _grey_image(canvas)))
    return canvas


def _plain_style(
    img: Image.Image,
    shape: tuple[int, int, int],
    notes: list[str],
    steps: list[tuple[str, Image.Image]] | None,
) -> np.ndarray:
    """Return a (C, H, W) array in [0, 1]: transparency on white, centre crop to the aspect, resize."""
    channels, height, width = shape
    if img.mode in ("LA", "RGBA"):
        rgba = img.convert("RGBA")
        if rgba.getextrema()[3][0] < 255:
            notes.append("transparent background: composited onto white")
        img = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    if channels == 1 and img.mode != "L" and not _is_grey(np.asarray(img.convert("RGB"), dtype=np.float32)):
        notes.append("colour converted to greyscale")
    if channels == 3 and img.mode in ("L", "LA"):
        notes.append("greyscale copied to 3 channels")
    img = img.convert("L" if channels == 1 else "RGB")
    if steps is not None:
        steps.append(("greyscale" if channels == 1 else "colour", _preview(img)))
    source_aspect, target_aspect = img.width / img.height, width / height
    if abs(source_aspect - target_aspect) > 0.01 * target_aspect:
        notes.append(
            f"centre-cropped from {img.width}x{img.height} to the model's {width}x{height} aspect ratio"
        )
    if img.size != (width, height):
        notes.append(f"resized to {width}x{height}, the size of the model's images")
    fitted = ImageOps.fit(img, (width, height), method=Image.Resampling.LANCZOS)
    if steps is not None:
        steps.append(("cropped & resized", fitted.copy()))
    arr = np.asarray(fitted, dtype=np.float32) / 255.0
    return arr[None] if channels == 1 else arr.transpose(2, 0, 1)
