"""The vae_core helpers behind the Encode and Interpolate pages: PCA kept for new points, one-image
encoding, decoded interpolation paths, and the anomaly verdict."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from tests.helpers import random_splits, tiny_model
from vae_core.config import ModelConfig
from vae_core.geometry import PCAProjector, fit_pca, interpolate, log_prior, project
from vae_core.inference import encode, encode_image, interpolation_path
from vae_core.metrics import (
    UNUSUAL_PERCENTILE,
    VERY_UNUSUAL_PERCENTILE,
    anomaly_verdict,
    per_image_elbo,
    percentile_of,
)
from vae_core.preprocess import ImageError, prepare_image


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
