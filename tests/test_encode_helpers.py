"""The vae_core helpers behind the Encode and Interpolate pages: PCA kept for new points, one-image
encoding, decoded interpolation paths, the anomaly verdict, and preparing uploads and drawings in the
style that fits the model."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from tests.helpers import random_splits, tiny_model
from vae_core.config import ModelConfig
from vae_core.datasets import DATASETS, load_dataset
from vae_core.geometry import PCAProjector, fit_pca, interpolate, log_prior, project
from vae_core.inference import encode, encode_image, interpolation_path
from vae_core.metrics import (
    UNUSUAL_PERCENTILE,
    VERY_UNUSUAL_PERCENTILE,
    anomaly_verdict,
    per_image_elbo,
    percentile_of,
)
from vae_core.preprocess import (
    CanvasColours,
    ImageError,
    canvas_colours,
    model_style,
    prepare_drawing,
    prepare_image,
)


def _latents(n: int = 200, d: int = 5, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    # Anisotropic, so the principal axes are well defined.
    return rng.standard_normal((n, d)) * np.linspace(3.0, 0.5, d) + np.arange(d)


# ------------------------------------------------------------------------------------------ fit_pca


@pytest.mark.parametrize("d", [2, 5, 16])
def test_fit_pca_reproduces_project_pca(d: int) -> None:
    latents = _latents(d=d)
    projector = fit_pca(latents)
    reference = project(latents, method="pca")
    assert isinstance(projector, PCAProjector)
    np.testing.assert_allclose(projector.transform(latents), reference.coords, atol=1e-4)
    assert projector.axis_titles == reference.axis_titles
    assert projector.explained == pytest.approx(reference.explained)


def test_fit_pca_places_new_points_on_the_same_plane() -> None:
    latents = _latents()
    projector = fit_pca(latents)
    # The reference mean goes to the origin, and a step along the first axis moves only PC1.
    np.testing.assert_allclose(projector.transform(latents.mean(axis=0)), [[0.0, 0.0]], atol=1e-6)
    moved = projector.transform(latents.mean(axis=0) + 2.0 * projector.components[0])
    np.testing.assert_allclose(moved, [[2.0, 0.0]], atol=1e-6)
    # One latent (D,) and a torch batch both work and agree.
    one = projector.transform(latents[3])
    batch = projector.transform(torch.from_numpy(latents[:5]))
    assert one.shape == (1, 2) and batch.shape == (5, 2) and batch.dtype == np.float32
    np.testing.assert_allclose(one[0], batch[3], atol=1e-6)


def test_fit_pca_one_dimensional_latent_maps_to_a_line() -> None:
    latents = _latents(d=1)
    coords = fit_pca(latents).transform(latents)
    np.testing.assert_allclose(coords[:, 0], latents[:, 0] - latents[:, 0].mean(), atol=1e-5)
    assert np.all(coords[:, 1] == 0)


def test_fit_pca_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="at least 2 points"):
        fit_pca(np.zeros((1, 3)))
    with pytest.raises(ValueError, match="NaN"):
        fit_pca(np.full((4, 3), np.nan))
    with pytest.raises(ValueError, match=r"expected latents \(N, 5\)"):
        fit_pca(_latents()).transform(np.zeros((2, 4)))


# ------------------------------------------------------------------------------------- encode_image


@pytest.mark.parametrize(
    "config",
    [
        ModelConfig(arch="mlp", latent_dim=2, hidden=(32,)),
        ModelConfig(arch="conv", latent_dim=4, channels=(4, 8)),
    ],
)
def test_encode_image_matches_batch_encoding(config: ModelConfig) -> None:
    model = tiny_model(config)
    images = random_splits(n_train=4, n_test=4).test_x
    post = encode(model, images)
    for x in (images[1], images[1:2], images[1:2].float() / 255):
        out = encode_image(model, x)
        np.testing.assert_allclose(out.mu, post.mu[1].numpy(), atol=1e-5)
        np.testing.assert_allclose(out.std, torch.exp(0.5 * post.logvar[1]).numpy(), rtol=1e-5)
        assert out.x_hat.shape == (1, *config.image_shape)
        assert 0.0 <= float(out.x_hat.min()) and float(out.x_hat.max()) <= 1.0
        assert out.log_prior == pytest.approx(log_prior(post.mu[1]), rel=1e-5)
    assert model.training  # a helper leaves the model's mode as it found it


def test_encode_image_refuses_wrong_shapes() -> None:
    model = tiny_model()
    with pytest.raises(ValueError, match=r"one image of shape \(1, 28, 28\)"):
        encode_image(model, torch.zeros(2, 1, 28, 28))
    with pytest.raises(ValueError, match=r"one image of shape"):
        encode_image(model, torch.zeros(3, 32, 32))


# ------------------------------------------------------------------------------- interpolation_path


@pytest.mark.parametrize("method", ["linear", "slerp"])
def test_interpolation_path_starts_and_ends_at_the_means(method: str) -> None:
    model = tiny_model(ModelConfig(arch="mlp", latent_dim=4, hidden=(32,)))
    images = random_splits(n_train=4, n_test=4).test_x
    mu = encode(model, images[:2]).mu
    path = interpolation_path(model, images[0], images[1:2], steps=7, method=method)
    assert path.z.shape == (7, 4) and path.images.shape == (7, 1, 28, 28)
    torch.testing.assert_close(path.z[0], mu[0])
    torch.testing.assert_close(path.z[-1], mu[1])
    torch.testing.assert_close(path.z, interpolate(mu[0], mu[1], steps=7, method=method))
    np.testing.assert_allclose(path.t, np.linspace(0, 1, 7))
    np.testing.assert_allclose(path.log_prior, log_prior(path.z), rtol=1e-6)
    np.testing.assert_allclose(path.norms, path.z.double().norm(dim=1).numpy(), rtol=1e-6)
    assert path.distance == pytest.approx(float((mu[1] - mu[0]).norm()), rel=1e-5)


def test_slerp_keeps_the_norm_where_linear_shrinks_it() -> None:
    """The reason the page offers slerp: a straight line between two codes cuts inside the shell."""
    model = tiny_model(ModelConfig(arch="mlp", latent_dim=16, hidden=(32,)))
    dark, bright = torch.zeros(1, 28, 28), torch.ones(1, 28, 28)
    linear = interpolation_path(model, dark, bright, steps=9, method="linear")
    slerp = interpolation_path(model, dark, bright, steps=9, method="slerp")
    # Midpoints (t = 0.5): |(z0 + z1) / 2| for the line, |z0 + z1| / (2 cos(w / 2)) on the arc.
    assert linear.norms[4] < max(linear.norms[0], linear.norms[-1])
    assert slerp.norms[4] > linear.norms[4] + 1e-4
    assert slerp.log_prior[4] < linear.log_prior[4]


def test_interpolation_path_refuses_bad_arguments() -> None:
    model = tiny_model()
    x = torch.zeros(1, 1, 28, 28)
    with pytest.raises(ValueError, match="steps must be >= 2"):
        interpolation_path(model, x, x, steps=1)
    with pytest.raises(ValueError, match="method"):
        interpolation_path(model, x, x, steps=3, method="cubic")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="one image"):
        interpolation_path(model, x, torch.zeros(1, 3, 28, 28), steps=3)


# ---------------------------------------------------------------------------------- anomaly verdict


@pytest.mark.parametrize(
    ("percentile", "level"),
    [
        (0.0, "typical"),
        (50.0, "typical"),
        (UNUSUAL_PERCENTILE, "typical"),
        (UNUSUAL_PERCENTILE + 1, "unusual"),
        (VERY_UNUSUAL_PERCENTILE, "unusual"),
        (VERY_UNUSUAL_PERCENTILE + 0.5, "very unusual"),
        (100.0, "very unusual"),
    ],
)
def test_anomaly_verdict_levels(percentile: float, level: str) -> None:
    verdict = anomaly_verdict(percentile)
    assert verdict.level == level
    assert verdict.message.lower().startswith(level)


def test_anomaly_verdict_words() -> None:
    assert "every test image" in anomaly_verdict(100.0).message
    assert "97%" in anomaly_verdict(97.0).message
    with pytest.raises(ValueError, match=r"\[0, 100\]"):
        anomaly_verdict(101.0)


def _digit_png(*, size: int = 200) -> bytes:
    img = Image.new("L", (size, size), 255)
    draw = ImageDraw.Draw(img)
    draw.line([(50, 40), (150, 40), (90, 165)], fill=0, width=18)
    buffer = io.BytesIO()
    img.save(buffer, format="PNG")
    return buffer.getvalue()


def test_upload_pipeline_end_to_end() -> None:
    """What the Encode page does with an upload: prepare, encode, score against reference images."""
    model = tiny_model()
    prepared = prepare_image(_digit_png(), image_shape=(1, 28, 28), style="mnist")
    assert any("inverted" in note for note in prepared.notes)
    encoded = encode_image(model, prepared.x)
    assert encoded.mu.shape == (2,) and np.all(encoded.std > 0)
    reference = per_image_elbo(model, random_splits(n_train=4, n_test=32).test_x).total
    score = float(per_image_elbo(model, prepared.x).total[0])
    verdict = anomaly_verdict(percentile_of(score, reference))
    assert verdict.level in ("typical", "unusual", "very unusual")
    with pytest.raises(ImageError):
        prepare_image(b"\x89PNG\r\n\x1a\n this is not really a PNG", image_shape=(1, 28, 28), style="mnist")


# ------------------------------------------------------------- preprocessing that fits the model (issue 10)


def _square_png(*, size: int = 200, box: tuple[int, int, int, int] = (20, 20, 80, 80)) -> bytes:
    """Return a PNG of a filled white square (``box`` = left, top, right, bottom) on black."""
    img = Image.new("L", (size, size), 0)
    ImageDraw.Draw(img).rectangle([box[0], box[1], box[2] - 1, box[3] - 1], fill=255)
    buffer = io.BytesIO()
    img.save(buffer, format="PNG")
    return buffer.getvalue()


def _ink_box(x: torch.Tensor) -> tuple[int, int, int, int]:
    """Return (top, left, height, width) of the pixels of ``x`` (1, 1, H, W) brighter than one half."""
    rows, cols = np.flatnonzero((x[0, 0] > 0.5).any(dim=1)), np.flatnonzero((x[0, 0] > 0.5).any(dim=0))
    return int(rows[0]), int(cols[0]), int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1)


@pytest.mark.parametrize(
    ("dataset", "preprocessing", "style"),
    [
        ("mnist", "MNIST 28x28 greyscale, pixel/255", "mnist"),
        ("MNIST", "", "mnist"),
        ("digits", "scikit-learn digits ...", "mnist"),
        ("sklearn-digits", "", "mnist"),
        ("fashion-mnist", "Fashion-MNIST 28x28 greyscale, pixel/255", "plain"),
        ("kmnist", "", "plain"),
        ("cifar10", "", "plain"),
        ("random", "random blobs", "plain"),
        (
            "folder:/data/shapes",
            "folder /data/shapes: 90 images in 2 class(es), plain style to 1x28x28",
            "plain",
        ),
        (
            "folder:/data/mine",
            "folder /data/mine: 90 images in 10 class(es), mnist style to 1x28x28",
            "mnist",
        ),
    ],
)
def test_model_style_centres_only_for_digit_datasets(dataset: str, preprocessing: str, style: str) -> None:
    assert model_style(dataset=dataset, preprocessing=preprocessing) == style


def test_every_registry_digit_dataset_is_centred_like_mnist() -> None:
    digit_sets = {name for name, info in DATASETS.items() if info.class_names == tuple("0123456789")}
    assert digit_sets == {"mnist", "digits"}
    assert all(model_style(dataset=name) == "mnist" for name in digit_sets)
    assert all(model_style(dataset=name) == "plain" for name in set(DATASETS) - digit_sets)


def test_a_folder_datasets_recorded_style_is_read_back(tmp_path) -> None:
    for label in ("squares", "frames"):
        (tmp_path / label).mkdir()
        for i in range(3):
            (tmp_path / label / f"{i}.png").write_bytes(_square_png(box=(10 * i, 10, 10 * i + 60, 70)))
    for style in ("plain", "mnist"):
        data = load_dataset(f"folder:{tmp_path}", style=style)
        assert model_style(dataset=data.name, preprocessing=data.preprocessing) == style


def test_plain_style_keeps_a_square_where_and_as_it_is() -> None:
    png = _square_png()  # 60x60 at the top left of 200x200
    plain = prepare_image(png, image_shape=(1, 28, 28), style="plain")
    top, left, height, width = _ink_box(plain.x)
    assert height == width and 7 <= height <= 10 and top <= 4 and left <= 4  # 60/200 of 28 = 8.4 pixels
    mnist = prepare_image(png, image_shape=(1, 28, 28), style="mnist")
    top, left, height, width = _ink_box(mnist.x)
    assert height == width == 20 and top == left == 4  # grown into the 20x20 box, centred


def test_notes_list_every_step_applied() -> None:
    mnist = prepare_image(_digit_png(), image_shape=(1, 28, 28), style="mnist")
    notes = " | ".join(mnist.notes)
    for words in ("inverted", "cropped to the ink", "20x20 box", "centre of mass"):
        assert words in notes, notes
    assert [label for label, _ in mnist.steps] == [
        "original",
        "greyscale",
        "inverted",
        "contrast stretched",
        "cropped & scaled",
        "centred",
    ]
    assert not any("contrast stretched" in note for note in mnist.notes)  # pure black and white already
    paper = Image.new("L", (200, 200), 200)  # grey paper, dark grey ink
    ImageDraw.Draw(paper).line([(50, 40), (150, 40), (90, 165)], fill=60, width=18)
    buffer = io.BytesIO()
    paper.save(buffer, format="PNG")
    notes = prepare_image(buffer.getvalue(), image_shape=(1, 28, 28), style="mnist").notes
    assert "contrast stretched: background level 55 to black, brightest ink 195 to white" in notes
    plain = prepare_image(_square_png(), image_shape=(1, 28, 28), style="plain")
    assert plain.notes == ("resized to 28x28, the size of the model's images",)
    wide = prepare_image(_square_png(size=200), image_shape=(1, 28, 56), style="plain")
    assert any("centre-cropped from 200x200" in note for note in wide.notes)
    # Nothing to do: a greyscale image already of the model's size.
    same = Image.new("L", (28, 28), 0)
    buffer = io.BytesIO()
    same.save(buffer, format="PNG")
    assert prepare_image(buffer.getvalue(), image_shape=(1, 28, 28), style="plain").notes == ()
    colour = Image.new("RGB", (28, 28), (200, 30, 30))
    buffer = io.BytesIO()
    colour.save(buffer, format="PNG")
    assert prepare_image(buffer.getvalue(), image_shape=(1, 28, 28), style="plain").notes == (
        "colour converted to greyscale",
    )


def test_canvas_colours_follow_the_models_images() -> None:
    dark = torch.zeros((4, 1, 28, 28), dtype=torch.uint8)
    dark[:, :, 8:20, 8:20] = 255
    assert canvas_colours(dark) == CanvasColours(background=0, ink=255)
    assert canvas_colours(dark).css == ("#000000", "#ffffff")
    assert canvas_colours(255 - dark) == CanvasColours(background=255, ink=0)
    with pytest.raises(ValueError, match="uint8"):
        canvas_colours(dark.float())


def test_prepare_drawing_matches_an_upload_of_the_same_pixels() -> None:
    rgba = np.zeros((280, 280, 4), dtype=np.uint8)
    rgba[..., 3] = 255
    rgba[60:220, 130:150, :3] = 255  # a white stroke: a "1"
    img = Image.fromarray(rgba, "RGBA")
    buffer = io.BytesIO()
    img.save(buffer, format="PNG")
    for style in ("mnist", "plain"):
        drawn = prepare_drawing(rgba, image_shape=(1, 28, 28), style=style)
        uploaded = prepare_image(buffer.getvalue(), image_shape=(1, 28, 28), style=style)
        torch.testing.assert_close(drawn.x, uploaded.x)
        assert not any("inverted" in note for note in drawn.notes)  # white on black needs no inverting
    top, left, height, width = _ink_box(prepare_drawing(rgba, image_shape=(1, 28, 28), style="mnist").x)
    assert height == 20 and top == 4  # the stroke scaled into MNIST's 20-pixel box
    with pytest.raises(ValueError, match="uint8"):
        prepare_drawing(rgba.astype(np.float32), image_shape=(1, 28, 28))
