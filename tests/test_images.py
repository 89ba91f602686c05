"""Uploaded images -> model inputs: every PIL mode, EXIF, animation, transparency, and hostile files."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw

from vae_core import preprocess as data_module
from vae_core.preprocess import ImageError, PreparedImage, prepare_image, prepare_pil

SHAPES = [(1, 28, 28), (3, 32, 32)]
STYLES = ["mnist", "plain"]


def encode(img: Image.Image, fmt: str = "PNG", **kwargs) -> bytes:
    """Return ``img`` saved in ``fmt`` as bytes."""
    buf = io.BytesIO()
    img.save(buf, fmt, **kwargs)
    return buf.getvalue()


def digit_image(size: tuple[int, int] = (120, 90), *, ink: int = 0, paper: int = 255) -> Image.Image:
    """Return an L image: a thick '7' in ``ink`` on ``paper``, off-centre towards the top left."""
    img = Image.new("L", size, paper)
    draw = ImageDraw.Draw(img)
    draw.line([(15, 12), (60, 12), (30, 70)], fill=ink, width=7)
    return img


def bar_image(*, horizontal: bool, size: int = 60) -> Image.Image:
    """Return a square L image with one dark bar through the middle on white."""
    img = Image.new("L", (size, size), 255)
    lo, hi = size // 2 - 4, size // 2 + 4
    box = (8, lo, size - 8, hi) if horizontal else (lo, 8, hi, size - 8)
    ImageDraw.Draw(img).rectangle(box, fill=0)
    return img


def ink_extent(x: torch.Tensor) -> tuple[int, int]:
    """Return the (rows, cols) spanned by pixels > 0.5 in a (1, 1, H, W) input."""
    mask = x[0, 0] > 0.5
    rows = torch.nonzero(mask.any(dim=1)).flatten()
    cols = torch.nonzero(mask.any(dim=0)).flatten()
    return int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1)


def assert_valid(prepared: PreparedImage, shape: tuple[int, int, int]) -> None:
    x = prepared.x
    assert tuple(x.shape) == (1, *shape)
    assert x.dtype == torch.float32
    assert torch.isfinite(x).all()
    assert x.min() >= 0.0 and x.max() <= 1.0


def to_mode(img: Image.Image, mode: str) -> Image.Image:
    """Return the L image ``img`` in ``mode``, keeping what it looks like."""
    arr = np.asarray(img)
    if mode == "I;16":
        return Image.fromarray(arr.astype(np.uint16) * 257)
    if mode == "I":
        return Image.fromarray(arr.astype(np.int32) * 257)
    if mode == "F":
        return Image.fromarray(arr.astype(np.float32) / 255.0)
    if mode == "PA":
        return img.convert("RGBA").convert("PA")
    return img.convert(mode)


# Modes that an allowed format stores go through bytes; the rest through prepare_pil.
BYTES_MODES = {"1": "PNG", "L": "PNG", "P": "PNG", "LA": "PNG", "RGB": "PNG", "RGBA": "PNG", "CMYK": "JPEG"}
BYTES_MODES["I;16"] = "PNG"
PIL_ONLY_MODES = ["PA", "I", "F"]


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("mode", [*BYTES_MODES, *PIL_ONLY_MODES])
def test_every_mode_matches_the_greyscale_reference(mode: str, style: str) -> None:
    base = digit_image()
    reference = prepare_image(encode(base), style=style).x
    img = to_mode(base, mode)
    assert img.mode == mode
    if mode in BYTES_MODES:
        prepared = prepare_image(encode(img, BYTES_MODES[mode]), style=style)
    else:
        prepared = prepare_pil(img, image_shape=(1, 28, 28), style=style)
    assert_valid(prepared, (1, 28, 28))
    # Lossy JPEG (CMYK) and 1-bit thresholding move single pixels, not the picture.
    assert (prepared.x - reference).abs().mean() < 0.06, mode


def test_16_bit_png_keeps_its_grey_levels() -> None:
    levels = np.linspace(0, 65535, 28 * 28).reshape(28, 28).astype(np.uint16)
    data = encode(Image.fromarray(levels))
    assert Image.open(io.BytesIO(data)).mode == "I;16"
    prepared = prepare_image(data, style="plain")
    assert_valid(prepared, (1, 28, 28))
    expected = torch.from_numpy(levels.astype(np.float32) / 65535.0)
    assert torch.allclose(prepared.x[0, 0], expected, atol=1.5 / 255)


def test_light_background_digit_is_inverted_and_centred() -> None:
    prepared = prepare_image(encode(digit_image(ink=20, paper=230)))
    assert_valid(prepared, (1, 28, 28))
    x = prepared.x[0, 0]
    assert any("inverted" in note for note in prepared.notes)
    assert "inverted" in [label for label, _ in prepared.steps]
    # Ink bright, background black, as in MNIST.
    assert x.max() > 0.95
    assert x[0].max() == 0 and x[-1].max() == 0 and x[:, 0].max() == 0 and x[:, -1].max() == 0
    # The digit fills a 20x20 box (longer side 20, within LANCZOS blur) ...
    assert 18 <= max(ink_extent(prepared.x)) <= 21
    # ... and its centre of mass sits at the centre of the field (LeCun et al. 1998).
    grid = torch.arange(28, dtype=torch.float32) + 0.5
    cy = float((x.sum(dim=1) * grid).sum() / x.sum())
    cx = float((x.sum(dim=0) * grid).sum() / x.sum())
    assert abs(cy - 14) < 1.0 and abs(cx - 14) < 1.0


def test_dark_background_is_not_inverted() -> None:
    prepared = prepare_image(encode(digit_image(ink=255, paper=0)))
    assert not any("inverted" in note for note in prepared.notes)
    assert "inverted" not in [label for label, _ in prepared.steps]
    assert prepared.x.max() > 0.95 and prepared.x[0, 0, 0, 0] == 0


def test_mnist_box_generalises_to_other_sizes() -> None:
    prepared = prepare_image(encode(digit_image()), image_shape=(1, 56, 42))
    assert_valid(prepared, (1, 56, 42))
    rows, cols = ink_extent(prepared.x)
    assert rows <= round(20 / 28 * 56) + 1 and cols <= round(20 / 28 * 42) + 1
    assert max(rows / 40, cols / 30) > 0.9


def test_exif_rotation_is_applied() -> None:
    img = bar_image(horizontal=True)
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    plain = prepare_image(encode(img, "JPEG", quality=95))
    rotated = prepare_image(encode(img, "JPEG", quality=95, exif=exif))
    rows, cols = ink_extent(plain.x)
    assert cols > 3 * rows, "without EXIF the bar stays horizontal"
    rows, cols = ink_extent(rotated.x)
    assert rows > 3 * cols, "EXIF orientation 6 turns the bar vertical"
    assert "EXIF rotation applied" in rotated.notes


def test_animated_gif_uses_first_frame() -> None:
    first, second = bar_image(horizontal=False), bar_image(horizontal=True)
    data = encode(first.convert("P"), "GIF", save_all=True, append_images=[second.convert("P")], duration=100)
    assert Image.open(io.BytesIO(data)).n_frames == 2
    prepared = prepare_image(data)
    rows, cols = ink_extent(prepared.x)
    assert rows > 3 * cols
    assert any("first frame" in note for note in prepared.notes)


def test_palette_with_transparency_composites_dark_strokes_onto_white() -> None:
    # Index 0: transparent black background; index 1: near-black strokes.
    img = Image.new("P", (80, 80), 0)
    img.putpalette([0, 0, 0, 30, 30, 30] + [0, 0, 0] * 254)
    ImageDraw.Draw(img).line([(20, 20), (60, 60)], fill=1, width=6)
    data = encode(img, "PNG", transparency=0)
    assert "transparency" in Image.open(io.BytesIO(data)).info
    prepared = prepare_image(data)
    assert_valid(prepared, (1, 28, 28))
    assert prepared.x.max() > 0.95, "strokes must stand out, not vanish into a black background"
    assert prepared.x[0, 0, 0, 0] == 0
    assert any("onto white" in note for note in prepared.notes)


@pytest.mark.parametrize(("stroke", "background"), [((0, 0, 0), "white"), ((255, 255, 255), "black")])
def test_rgba_strokes_on_transparent_canvas(stroke: tuple[int, int, int], background: str) -> None:
    # A drawing canvas: fully transparent pixels whose colour is black, opaque strokes.
    img = Image.new("RGBA", (100, 100), (0, 0, 0, 0))
    ImageDraw.Draw(img).line([(50, 10), (50, 90)], fill=(*stroke, 255), width=8)
    prepared = prepare_image(encode(img))
    assert_valid(prepared, (1, 28, 28))
    assert prepared.x.max() > 0.95 and prepared.x[0, 0, 0, 0] == 0
    assert any(f"onto {background}" in note for note in prepared.notes)
    rows, cols = ink_extent(prepared.x)
    assert rows >= 19 and cols < rows


def test_plain_style_composites_onto_white_and_keeps_colour() -> None:
    img = Image.new("RGBA", (40, 20), (255, 0, 0, 255))
    img.paste((0, 0, 255, 0), (0, 0, 40, 10))
    prepared = prepare_image(encode(img), image_shape=(3, 8, 8), style="plain")
    assert_valid(prepared, (3, 8, 8))
    x = prepared.x[0]
    # Top half transparent -> white; bottom half red; the sides were cropped away.
    assert torch.allclose(x[:, 0, 4], torch.ones(3), atol=0.02)
    assert torch.allclose(x[:, -1, 4], torch.tensor([1.0, 0.0, 0.0]), atol=0.02)
    assert any("centre-cropped" in note for note in prepared.notes)


@pytest.mark.parametrize("size", [(1, 1), (1, 500), (500, 1), (2, 3)])
@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("shape", SHAPES)
def test_tiny_and_thin_images_are_valid(
    size: tuple[int, int], style: str, shape: tuple[int, int, int]
) -> None:
    arr = np.random.default_rng(0).integers(0, 256, size=(size[1], size[0]), dtype=np.uint8)
    arr.flat[0] = 255
    arr.flat[-1] = 0
    assert_valid(prepare_image(encode(Image.fromarray(arr)), image_shape=shape, style=style), shape)


@pytest.mark.parametrize("paper", [0, 255, 128])
def test_blank_image_is_only_resized(paper: int) -> None:
    prepared = prepare_image(encode(Image.new("L", (50, 30), paper)))
    assert_valid(prepared, (1, 28, 28))
    assert any("blank" in note for note in prepared.notes)
    assert torch.allclose(prepared.x, prepared.x.flatten()[0].expand_as(prepared.x))


def test_steps_are_small_pil_previews() -> None:
    prepared = prepare_image(encode(digit_image(size=(1200, 900))))
    labels = [label for label, _ in prepared.steps]
    assert labels[0] == "original" and labels[-1] == "centred"
    assert {"greyscale", "cropped & scaled"} <= set(labels)
    for _, preview in prepared.steps:
        assert isinstance(preview, Image.Image) and max(preview.size) <= data_module.PREVIEW_SIDE
    assert np.allclose(np.asarray(prepared.steps[-1][1]) / 255.0, prepared.x[0, 0].numpy(), atol=1 / 255)


def test_mnist_style_with_three_channels_copies_the_grey() -> None:
    prepared = prepare_image(encode(digit_image()), image_shape=(3, 32, 32))
    assert_valid(prepared, (3, 32, 32))
    assert torch.equal(prepared.x[0, 0], prepared.x[0, 1]) and torch.equal(prepared.x[0, 0], prepared.x[0, 2])


def crafted_png(width: int, height: int) -> bytes:
    """Return a tiny PNG whose header claims width x height (8-bit greyscale)."""

    def chunk(tag: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize("size", [(50_000, 50_000), (7_000, 7_000)])
def test_decompression_bomb_header_is_refused(size: tuple[int, int]) -> None:
    data = crafted_png(*size)
    assert len(data) < 200
    with pytest.raises(ImageError, match="million pixels"):
        prepare_image(data)


@pytest.mark.parametrize("size", [(1, 30_000), (30_000, 2)])
def test_absurdly_long_side_is_refused_before_decoding(size: tuple[int, int]) -> None:
    with pytest.raises(ImageError, match="longest side"):
        prepare_image(crafted_png(*size))


def test_pixel_limit_is_checked_before_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(data_module, "MAX_PIXELS", 1000)
    with pytest.raises(ImageError, match="too large"):
        prepare_image(encode(Image.new("L", (40, 40), 0)))
    prepare_image(encode(Image.new("L", (30, 30), 0)))


def test_byte_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    data = encode(digit_image())
    monkeypatch.setattr(data_module, "MAX_UPLOAD_BYTES", len(data) - 1)
    with pytest.raises(ImageError, match="limit"):
        prepare_image(data)


@pytest.mark.parametrize(("fmt", "name"), [("TIFF", "TIFF"), ("ICO", "ICO"), ("PPM", "PNG, JPEG")])
def test_disallowed_formats_are_refused(fmt: str, name: str) -> None:
    data = encode(digit_image(size=(32, 32)).convert("RGB"), fmt)
    with pytest.raises(ImageError, match=name):
        prepare_image(data)


def test_damaged_files_raise_image_error() -> None:
    good = encode(Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 64), dtype=np.uint8)))
    corrupt = bytearray(good)
    corrupt[60:90] = bytes(30)
    cases = {
        "empty": b"",
        "truncated": good[: len(good) // 2],
        "corrupt": bytes(corrupt),
        "text": b"hello, this is not an image\n",
        "header only": good[:8],
        "truncated jpeg": encode(digit_image().convert("RGB"), "JPEG")[:300],
    }
    for label, data in cases.items():
        with pytest.raises(ImageError):
            prepare_image(data)
            pytest.fail(f"{label} was accepted")
    with pytest.raises(ImageError, match="text"):
        prepare_image(cases["text"])
    with pytest.raises(ImageError, match="empty"):
        prepare_image(b"")


def test_invalid_arguments() -> None:
    data = encode(digit_image())
    with pytest.raises(ValueError, match="channels"):
        prepare_image(data, image_shape=(2, 28, 28))
    with pytest.raises(ValueError, match="style"):
        prepare_image(data, style="fancy")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        prepare_image("not bytes")  # type: ignore[arg-type]


RANDOM_MODES = ["L", "RGB", "RGBA", "LA", "P", "1", "I;16"]


def random_image(arr: np.ndarray, mode: str) -> Image.Image:
    """Return a PIL image in ``mode`` built from uint8 ``arr`` (H, W, 4)."""
    if mode == "I;16":
        return Image.fromarray(arr[..., 0].astype(np.uint16) * 257 + arr[..., 1].astype(np.uint16) % 257)
    if mode == "P":
        return Image.fromarray(arr[..., :3]).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    if mode == "1":
        return Image.fromarray(arr[..., 0]).convert("1")
    channels = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4}[mode]
    return Image.fromarray(arr[..., :channels].squeeze(-1) if channels == 1 else arr[..., :channels], mode)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    height=st.integers(1, 64),
    width=st.integers(1, 64),
    mode=st.sampled_from(RANDOM_MODES),
    style=st.sampled_from(STYLES),
    shape=st.sampled_from(SHAPES),
    seed=st.integers(0, 2**32 - 1),
    kind=st.sampled_from(["noise", "constant", "sparse"]),
)
def test_random_png_always_gives_a_valid_input(
    height: int, width: int, mode: str, style: str, shape: tuple[int, int, int], seed: int, kind: str
) -> None:
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, size=(height, width, 4), dtype=np.uint8)
    if kind == "constant":
        arr[:] = arr[0, 0]
    elif kind == "sparse":
        arr = np.where(rng.random((height, width, 1)) < 0.02, arr, np.uint8(255))
    img = random_image(arr, mode)
    assert img.mode == mode
    assert_valid(prepare_image(encode(img), image_shape=shape, style=style), shape)


@settings(max_examples=60, deadline=None)
@given(position=st.integers(0, 10_000), length=st.integers(1, 64), seed=st.integers(0, 2**32 - 1))
def test_mangled_bytes_never_escape_as_pil_errors(position: int, length: int, seed: int) -> None:
    good = encode(digit_image(size=(40, 30)).convert("RGB"), "PNG")
    data = bytearray(good)
    start = position % len(data)
    data[start : start + length] = (
        np.random.default_rng(seed).integers(0, 256, length, dtype=np.uint8).tobytes()
    )
    try:
        prepared = prepare_image(bytes(data))
    except ImageError:
        return
    assert_valid(prepared, (1, 28, 28))


ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


def greyscale_png(arr: np.ndarray, *, interlaced: bool = False, keep: float = 1.0) -> bytes:
    """Return 8-bit greyscale ``arr`` (H, W) as a PNG, Adam7-interlaced if asked, with only the first ``keep``
    of its scanline bytes in a complete zlib stream (a file that is short but not damaged)."""
    passes = [arr[y0::dy, x0::dx] for x0, y0, dx, dy in ADAM7] if interlaced else [arr]
    raw = b"".join(b"\x00" + row.tobytes() for part in passes if part.size for row in part)
    raw = raw[: int(len(raw) * keep)]

    def chunk(tag: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", arr.shape[1], arr.shape[0], 8, 0, 0, 0, int(interlaced))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def test_a_png_whose_data_stops_after_3_of_2000_rows_is_refused() -> None:
    # Issue 12: the header claims 20000x2000, the data holds 3 rows; PIL decodes it as a blank image.
    data = greyscale_png(np.full((2000, 20000), 255, dtype=np.uint8), keep=3 / 2000)
    assert len(data) < 1000
    Image.open(io.BytesIO(data)).load()  # PIL alone accepts it without a word
    with pytest.raises(ImageError, match=r"truncated: its data holds 3 of the 2,000 rows"):
        prepare_image(data)


@pytest.mark.parametrize("interlaced", [False, True])
def test_complete_pngs_pass_and_short_ones_do_not(interlaced: bool) -> None:
    arr = np.random.default_rng(3).integers(0, 256, (37, 29), dtype=np.uint8)
    whole = greyscale_png(arr, interlaced=interlaced)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(whole))), arr)
    assert_valid(prepare_image(whole, style="plain"), (1, 28, 28))
    with pytest.raises(ImageError, match="truncated"):
        prepare_image(greyscale_png(arr, interlaced=interlaced, keep=0.9))
