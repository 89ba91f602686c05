"""Pictures (uint8, PIL, grids, PNG, GIF) and exports (Embedding Projector files, zip, CSV)."""

from __future__ import annotations

import csv
import io
import math
import re
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image, ImageSequence

from vae_core.export import MAX_SPRITE_SIDE, export_projector, export_zip, latents_csv
from vae_core.imaging import gif_bytes, image_grid, png_bytes, strip, to_pil, to_uint8, upscale


def _grey(n: int, h: int = 5, w: int = 4, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 1, h, w), dtype=np.uint8)


# ------------------------------------------------------------------------------------- imaging


def test_to_uint8_scales_clips_and_passes_uint8_through():
    x = torch.tensor([[-0.5, 0.0, 0.5, 1.0, 2.0]])
    np.testing.assert_array_equal(to_uint8(x), [[0, 0, 128, 255, 255]])
    u = _grey(2)
    assert to_uint8(u) is u
    assert to_uint8(torch.from_numpy(u)).dtype == np.uint8


def test_to_pil_modes_and_upscale_keeps_pixels_crisp():
    grey = to_pil(_grey(1)[0])
    assert grey.mode == "L" and grey.size == (4, 5)
    assert to_pil(_grey(1)[0, 0]).mode == "L"
    rgb = to_pil(np.random.default_rng(0).random((3, 5, 4)))
    assert rgb.mode == "RGB" and rgb.size == (4, 5)
    big = upscale(grey, scale=3)
    assert big.size == (12, 15)
    np.testing.assert_array_equal(np.asarray(big)[::3, ::3], np.asarray(grey))
    with pytest.raises(ValueError, match="channels"):
        to_pil(np.zeros((2, 5, 4)))
    with pytest.raises(ValueError, match="scale"):
        upscale(grey, scale=0)


@pytest.mark.parametrize("n, ncols, pad, scale", [(7, 3, 2, 1), (6, 3, 0, 2), (2, 5, 1, 1), (1, 1, 3, 4)])
def test_image_grid_size_math_and_tile_placement(n, ncols, pad, scale):
    images = _grey(n)
    grid = image_grid(images, ncols=ncols, pad=pad, pad_value=255, scale=scale)
    cols = min(ncols, n)
    rows = math.ceil(n / cols)
    assert grid.size == (cols * 4 * scale + (cols + 1) * pad, rows * 5 * scale + (rows + 1) * pad)
    pixels = np.asarray(grid)
    last = n - 1
    r, c = divmod(last, cols)
    top, left = pad + r * (5 * scale + pad), pad + c * (4 * scale + pad)
    tile = pixels[top : top + 5 * scale : scale, left : left + 4 * scale : scale]
    np.testing.assert_array_equal(tile, images[last, 0])
    if pad:
        assert (pixels[:pad] == 255).all()


def test_image_grid_colour_float_input_and_errors():
    grid = image_grid(torch.rand(4, 3, 6, 6), ncols=2)
    assert grid.mode == "RGB" and grid.size == (2 * 6 + 3 * 2, 2 * 6 + 3 * 2)
    with pytest.raises(ValueError, match="zero images"):
        image_grid(np.zeros((0, 1, 5, 5), np.uint8), ncols=3)
    with pytest.raises(ValueError, match="ncols"):
        image_grid(_grey(2), ncols=0)


def test_strip_is_one_row():
    assert strip(_grey(5), scale=3).size == (5 * 4 * 3 + 6 * 2, 5 * 3 + 2 * 2)


def test_png_bytes_round_trip():
    img = to_pil(_grey(1)[0])
    back = Image.open(io.BytesIO(png_bytes(img)))
    np.testing.assert_array_equal(np.asarray(back), np.asarray(img))


def test_gif_bytes_has_every_frame_and_keeps_greys_grey():
    frames = [to_pil(image) for image in _grey(4, 8, 8)]
    gif = Image.open(io.BytesIO(gif_bytes(frames, duration_ms=80)))
    decoded = [np.asarray(frame.convert("RGB")) for frame in ImageSequence.Iterator(gif)]
    assert len(decoded) == 4 and gif.info.get("loop") == 0
    for frame, original in zip(decoded, frames):
        assert (frame[..., 0] == frame[..., 1]).all() and (frame[..., 1] == frame[..., 2]).all()
        np.testing.assert_array_equal(frame[..., 0], np.asarray(original))


def test_gif_bytes_boomerang_colour_and_errors():
    frames = [to_pil(np.random.default_rng(i).random((3, 6, 6))) for i in range(4)]
    gif = Image.open(io.BytesIO(gif_bytes(frames, boomerang=True)))
    assert gif.n_frames == 4 + 2  # forwards, then back without repeating the end frames
    with pytest.raises(ValueError, match="one size"):
        gif_bytes([frames[0], frames[1].resize((7, 6))])
    with pytest.raises(ValueError, match="at least one frame"):
        gif_bytes([])


# -------------------------------------------------------------------------------------- export


def _export_inputs(n: int = 10, d: int = 3):
    rng = np.random.default_rng(0)
    latents = rng.normal(size=(n, d)).astype(np.float32)
    labels = np.arange(n) % 3
    return latents, labels, _grey(n, 28, 28), ("zero", "one", "two\twith tab")


def test_export_projector_files_round_trip(tmp_path):
    latents, labels, images, names = _export_inputs()
    files = export_projector(
        tmp_path / "proj", latents=latents, labels=labels, images=images, class_names=names
    )
    vectors = np.loadtxt(files.vectors, delimiter="\t")
    np.testing.assert_allclose(vectors, latents, rtol=1e-6)
    rows = files.metadata.read_text().splitlines()
    assert len(rows) == len(latents) + 1
    assert rows[0] == "index\tlabel\tclass"
    assert rows[3].split("\t") == ["2", "2", "two with tab"]
    assert all(len(row.split("\t")) == 3 for row in rows)
    sprite = Image.open(files.sprite)
    side = math.ceil(math.sqrt(len(latents)))
    assert sprite.size == (side * 28, side * 28)
    np.testing.assert_array_equal(np.asarray(sprite)[28:56, 0:28], images[side, 0])  # row 1, column 0
    config = files.config.read_text()
    for path in re.findall(r'(?:tensor_path|metadata_path|image_path): "([^"]+)"', config):
        assert (files.config.parent / path).is_file()
    assert 'tensor_name: "mu"' in config
    assert re.findall(r"single_image_dim: (\d+)", config) == ["28", "28"]
    assert re.findall(r"tensor_shape: (\d+)", config) == ["10", "3"]


def test_export_projector_shrinks_thumbnails_to_fit_the_sprite_limit(tmp_path):
    n, h = 5, 5000  # a 3 x 3 sprite of 5000 px thumbnails would be 15000 px
    images = np.zeros((n, 1, h, 10), np.uint8)
    files = export_projector(
        tmp_path, latents=np.zeros((n, 2)), labels=np.zeros(n, int), images=images, class_names=()
    )
    sprite = Image.open(files.sprite)
    assert max(sprite.size) <= MAX_SPRITE_SIDE
    dims = [int(v) for v in re.findall(r"single_image_dim: (\d+)", files.config.read_text())]
    assert sprite.size == (3 * dims[0], 3 * dims[1])


def test_export_zip_holds_the_four_files_and_checks_lengths():
    latents, labels, images, names = _export_inputs()
    archive = zipfile.ZipFile(
        io.BytesIO(export_zip(latents=latents, labels=labels, images=images, class_names=names))
    )
    assert sorted(archive.namelist()) == [
        "metadata.tsv",
        "projector_config.pbtxt",
        "sprite.png",
        "vectors.tsv",
    ]
    with pytest.raises(ValueError, match="labels"):
        export_zip(latents=latents, labels=labels[:-1], images=images, class_names=names)
    with pytest.raises(ValueError, match="images"):
        export_zip(latents=latents, labels=labels, images=images[:-1], class_names=names)


def test_latents_csv_parses_back():
    latents, labels, _, _ = _export_inputs(n=6, d=2)
    text = latents_csv(latents, labels, extra_columns={"elbo": np.linspace(-100, -90, 6)})
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["index", "label", "z0", "z1", "elbo"]
    assert len(rows) == 7
    body = np.array(rows[1:], dtype=np.float64)
    np.testing.assert_array_equal(body[:, 0], np.arange(6))
    np.testing.assert_array_equal(body[:, 1], labels)
    np.testing.assert_allclose(body[:, 2:4], latents, rtol=1e-6)
    np.testing.assert_allclose(body[:, 4], np.linspace(-100, -90, 6))
    with pytest.raises(ValueError, match="elbo"):
        latents_csv(latents, labels, extra_columns={"elbo": [1.0]})


def test_latents_csv_writes_float32_columns_at_their_precision():
    latents, labels, _, _ = _export_inputs(n=2, d=2)
    score = np.array([512.3434448242188, 1.0], dtype=np.float32)  # an atlas's -ELBO is float32
    text = latents_csv(latents, labels, extra_columns={"neg_elbo": score, "map_x": np.array([0.25, -3.0])})
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0][-2:] == ["neg_elbo", "map_x"]
    assert rows[1][-2:] == ["512.343445", "0.25"] and rows[2][-2:] == ["1", "-3"]
    assert np.float32(float(rows[1][-2])) == score[0]  # 9 digits round-trip a float32
