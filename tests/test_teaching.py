"""Pictures for teaching: the reparameterisation drawn on Home, and exports big enough for slides."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageSequence

from tests.app_support import app_test, assert_no_exception, chart_by_key, plotly_array, select_model
from tests.helpers import tiny_model
from vae_core.config import ModelConfig
from vae_core.export import traversal_gif
from vae_core.geometry import ellipse_outline
from vae_core.imaging import (
    EXPORT_SCALES,
    MIN_EXPORT_SCALE,
    SLIDE_SCALE,
    animation_gif,
    export_scale,
    scatter_frames,
    to_uint8,
)
from vae_core.inference import reparameterised_draws, seeded_eps
from vae_core.model import reparameterize

CONFIG = ModelConfig(arch="mlp", latent_dim=3, hidden=(16,))


def _frames(gif: bytes) -> list[np.ndarray]:
    with Image.open(io.BytesIO(gif)) as img:
        return [np.asarray(frame.convert("L")) for frame in ImageSequence.Iterator(img)]


def _assert_crisp(picture: np.ndarray, source: np.ndarray, scale: int, top: int = 0, left: int = 0) -> None:
    """Every source pixel must be one flat scale x scale block of the picture (nearest, no smoothing)."""
    h, w = source.shape
    region = picture[top : top + h * scale, left : left + w * scale].astype(int)
    blocks = region.reshape(h, scale, w, scale)
    assert (blocks.max(axis=(1, 3)) == blocks.min(axis=(1, 3))).all(), "pixels are smoothed, not blocks"
    np.testing.assert_array_equal(blocks[:, 0, :, 0], source)


# ---------------------------------------------------------------------------- the reparameterisation


def test_draws_are_mu_plus_sigma_times_the_seeded_eps():
    model = tiny_model(CONFIG)
    mu = np.array([0.5, -1.0, 2.0], np.float32)
    logvar = np.array([-2.0, 0.0, -4.0], np.float32)
    draws = reparameterised_draws(model, mu, logvar, n=5, seed=7)
    eps = seeded_eps((5, 3), generator=torch.Generator().manual_seed(7), device=torch.device("cpu")).numpy()
    np.testing.assert_array_equal(draws.eps, eps)
    np.testing.assert_allclose(draws.z, mu + np.exp(0.5 * logvar) * eps, rtol=1e-6)
    assert draws.images.shape == (5, *CONFIG.image_shape)
    assert 0.0 <= float(draws.images.min()) and float(draws.images.max()) <= 1.0
    again = reparameterised_draws(model, mu, logvar, n=5, seed=7)
    np.testing.assert_array_equal(again.z, draws.z)
    other = reparameterised_draws(model, mu, logvar, n=5, seed=8)
    assert not np.allclose(other.z, draws.z)


def test_many_draws_have_the_posterior_mean_and_spread():
    model = tiny_model(CONFIG)
    mu = np.array([0.5, -1.0, 2.0], np.float32)
    logvar = np.array([-2.0, 0.0, -4.0], np.float32)
    z = reparameterised_draws(model, mu, logvar, n=20_000, seed=0).z
    np.testing.assert_allclose(z.mean(axis=0), mu, atol=0.03)
    np.testing.assert_allclose(z.std(axis=0), np.exp(0.5 * logvar), rtol=0.03)


def test_draws_reject_bad_input():
    model = tiny_model(CONFIG)
    with pytest.raises(ValueError, match="n must be"):
        reparameterised_draws(model, np.zeros(3), np.zeros(3), n=0, seed=0)
    with pytest.raises(ValueError, match="latents"):
        reparameterised_draws(model, np.zeros(2), np.zeros(2), n=2, seed=0)
    with pytest.raises(ValueError, match="one posterior"):
        reparameterised_draws(model, np.zeros((2, 3)), np.zeros((2, 3)), n=2, seed=0)


def test_the_gradient_reaches_mu_and_sigma_through_z():
    # What the Home page claims (Kingma & Welling 2014, sec. 2.4): with the noise outside, z is a
    # differentiable function of mu and logvar: dz/dmu = 1 and dz/dlogvar = sigma * eps / 2.
    mu = torch.tensor([0.3, -0.7], requires_grad=True)
    logvar = torch.tensor([-1.0, 0.5], requires_grad=True)
    eps = torch.tensor([1.5, -0.4])
    reparameterize(mu, logvar, eps).sum().backward()
    torch.testing.assert_close(mu.grad, torch.ones(2))
    torch.testing.assert_close(logvar.grad, 0.5 * torch.exp(0.5 * logvar.detach()) * eps)


@pytest.mark.parametrize("k", [1.0, 2.0])
def test_ellipse_outline_is_the_k_sigma_contour(k):
    centre, radii = np.array([0.5, -1.0]), np.array([0.2, 0.7])
    ring = ellipse_outline(centre, radii, k=k, points=64)
    assert ring.shape == (65, 2)
    np.testing.assert_allclose(ring[0], ring[-1])
    np.testing.assert_allclose((((ring - centre) / radii) ** 2).sum(axis=1), k**2)
    # The share of draws inside it is 1 - exp(-k^2 / 2) in two dimensions: 39% at 1σ, 86% at 2σ,
    # the figures the Home page quotes.
    model = tiny_model(ModelConfig(arch="mlp", latent_dim=2, hidden=(8,)))
    z = reparameterised_draws(model, centre, 2 * np.log(radii), n=20_000, seed=1).z
    inside = ((((z - centre) / radii) ** 2).sum(axis=1) <= k**2).mean()
    assert inside == pytest.approx(1 - math.exp(-(k**2) / 2), abs=0.01)


def test_ellipse_outline_rejects_bad_input():
    with pytest.raises(ValueError, match="2 numbers"):
        ellipse_outline([0, 0, 0], [1, 1])
    with pytest.raises(ValueError, match="> 0"):
        ellipse_outline([0, 0], [1, 0])
    with pytest.raises(ValueError, match="> 0"):
        ellipse_outline([0, 0], [1, 1], k=0)


# ---------------------------------------------------------------------------- exports for slides


@pytest.mark.parametrize("scale", [MIN_EXPORT_SCALE, SLIDE_SCALE])
def test_animation_gif_is_at_least_three_times_the_model_pixels_and_crisp(scale):
    images = torch.rand((4, 1, 28, 28), generator=torch.Generator().manual_seed(0))
    frames = _frames(animation_gif(images, scale=scale, boomerang=True))
    assert len(frames) == 4 + 2
    assert frames[0].shape == (28 * scale, 28 * scale)
    assert min(frames[0].shape) >= 3 * 28
    for frame, source in zip(frames, images):
        _assert_crisp(frame, to_uint8(source[0]), scale)


def test_animation_gif_of_grids_scales_every_tile():
    grids = torch.rand((3, 6, 1, 8, 8), generator=torch.Generator().manual_seed(1))
    frames = _frames(animation_gif(grids, scale=4, ncols=3))
    assert len(frames) == 3
    # image_grid: 3 tiles of 8 * 4 pixels per row, 2-pixel padding around and between.
    assert frames[0].shape == (2 * 32 + 3 * 2, 3 * 32 + 4 * 2)
    _assert_crisp(frames[2], to_uint8(grids[2, 4, 0]), 4, top=2 + 32 + 2, left=2 + 32 + 2)


@pytest.mark.parametrize("bad", [0, 1, 2, 2.5, True])
def test_export_scale_refuses_less_than_three_times(bad):
    with pytest.raises(ValueError, match="at least 3"):
        export_scale(bad)
    with pytest.raises(ValueError, match="at least 3"):
        animation_gif(torch.zeros((2, 1, 4, 4)), scale=bad)
    with pytest.raises(ValueError, match="at least 3"):
        traversal_gif(torch.zeros((1, 3, 1, 4, 4)), scale=bad)
    assert all(export_scale(s) == s for s in EXPORT_SCALES)
    assert SLIDE_SCALE in EXPORT_SCALES and min(EXPORT_SCALES) == MIN_EXPORT_SCALE


def test_animation_gif_rejects_other_shapes():
    with pytest.raises(ValueError, match="frames"):
        animation_gif(torch.zeros((4, 4)), scale=3)


@pytest.mark.parametrize("scale", [3, 8])
def test_traversal_gif_tiles_are_scaled_and_crisp(scale):
    images = torch.rand((1, 3, 1, 28, 28), generator=torch.Generator().manual_seed(2))
    frames = _frames(traversal_gif(images, scale=scale))  # no labels: the tile starts at (2, 2)
    assert len(frames) == 3 + 1
    assert frames[0].shape == (28 * scale + 4, 28 * scale + 4)
    _assert_crisp(frames[1], to_uint8(images[0, 1, 0]), scale, top=2, left=2)


def test_scatter_frames_zoom_doubles_every_length():
    coords = [np.array([[0.0, 0.0], [1.0, 1.0]])]
    labels = np.array([0, 1])
    (plain,) = scatter_frames(coords, labels, size=100, pad=10, class_names=["a", "b"])
    (big,) = scatter_frames(coords, labels, size=100, pad=10, class_names=["a", "b"], zoom=2)
    assert big.size == (2 * plain.width, 2 * plain.height)
    with pytest.raises(ValueError, match="zoom"):
        scatter_frames(coords, labels, zoom=0)


def test_timeline_gifs_follow_the_export_size():
    from vae_app import cache
    from vae_core.timeline import Timeline, TimelineFrame

    rng = np.random.default_rng(0)
    frames = tuple(
        TimelineFrame(
            e, rng.normal(size=(20, 2)).astype(np.float32), rng.integers(0, 256, (16, 1, 28, 28), np.uint8)
        )
        for e in (1, 2)
    )
    timeline = Timeline(frames, rng.integers(0, 3, 20))
    key = cache.timeline_key(timeline)
    for scale, map_side in ((3, 320), (8, 640)):
        scatter, prior = cache.timeline_gifs(key, timeline, ("a", "b", "c"), scale)
        assert _frames(scatter)[0].shape[1] == map_side
        grid = _frames(prior)[1]
        assert grid.shape == (4 * 28 * scale + 5 * 2,) * 2  # 4 x 4 samples, 2-pixel padding
        _assert_crisp(grid, frames[1].samples[0, 0], scale, top=2, left=2)


# ---------------------------------------------------------------------------- the pages


def _reparam_points(at) -> tuple[np.ndarray, np.ndarray]:
    spec = chart_by_key(at, "home_reparam")
    assert spec is not None, "Home shows no reparameterisation figure"
    trace = next(t for t in spec["data"] if t.get("name") == "z = μ + σ ⊙ ε")
    return plotly_array(trace["x"]), plotly_array(trace["y"])


def test_home_draws_the_posterior_and_new_eps_moves_the_points(app_env: Path):
    at = app_test()
    assert_no_exception(at)
    spec = chart_by_key(at, "home_reparam")
    names = {t.get("name") for t in spec["data"]}
    assert {"prior N(0, I), 1σ", "q(z|x), 1σ", "q(z|x), 2σ", "μ", "z = μ + σ ⊙ ε"} <= names
    x0, y0 = _reparam_points(at)
    assert len(x0) == 8
    assert any("Kingma & Welling 2014, §2.4" in m.value for m in at.markdown)
    at.button(key="home_draw_eps").click().run()
    assert_no_exception(at)
    assert at.session_state["home_eps_draws"] == 1
    x1, y1 = _reparam_points(at)
    assert not np.allclose(x0, x1) and not np.allclose(y0, y1)


def test_home_dimensions_default_to_the_highest_kl_and_can_be_changed(app_env: Path):
    at = app_test()
    x_box = at.selectbox(key="home_reparam_x")
    y_box = at.selectbox(key="home_reparam_y")
    # The options are listed by this image's KL, and the first two are shown.
    assert x_box.options[0].startswith(f"z{x_box.value} ") and y_box.options[0].startswith(f"z{y_box.value} ")
    assert x_box.options[1].startswith(f"z{y_box.value} ")
    kl = [float(o.split("KL ")[1].split(" ")[0]) for o in x_box.options]
    assert kl == sorted(kl, reverse=True)
    other = int(x_box.options[-1].split(" ")[0][1:])
    x_box.set_value(other).run()
    assert_no_exception(at)
    spec = chart_by_key(at, "home_reparam")
    assert spec["layout"]["xaxis"]["title"]["text"] == f"z{other}"


def test_home_with_a_two_dimensional_model(app_env: Path):
    at = select_model(app_test(), app_env / "tiny-mlp-2.pt")
    x, _ = _reparam_points(at)
    assert len(x) == 8


@pytest.mark.parametrize("page", ["vae_app/views/traversals.py", "vae_app/views/timeline.py"])
def test_pages_offer_slide_sized_exports(app_env: Path, page: str):
    at = app_test(page)
    assert_no_exception(at)
    key = "traversals_export_scale" if "traversals" in page else "timeline_export_scale"
    box = at.selectbox(key=key)
    assert box.value == MIN_EXPORT_SCALE
    box.set_value(SLIDE_SCALE).run()
    assert_no_exception(at)
    assert at.session_state[key] == SLIDE_SCALE


def _panel_script(latent_dim: int) -> None:
    import numpy as np

    from tests.helpers import tiny_model
    from vae_app.teaching import reparameterisation_panel
    from vae_core.config import ModelConfig

    model = tiny_model(ModelConfig(arch="mlp", latent_dim=latent_dim, hidden=(8,)))
    mu = np.linspace(-1.0, 1.0, latent_dim).astype(np.float32)
    reparameterisation_panel(model, mu, np.full(latent_dim, -1.0, np.float32), label=3, ident="test")


@pytest.mark.parametrize("latent_dim", [1, 5])
def test_the_panel_alone_with_one_and_with_five_dimensions(latent_dim: int):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_function(_panel_script, args=(latent_dim,), default_timeout=60).run()
    assert_no_exception(at)
    if latent_dim == 1:
        assert any("one latent dimension" in i.value for i in at.info)
        assert chart_by_key(at, "home_reparam") is None
    else:
        # Equal KL in every dimension but for mu: the two largest |mu| come first (z0 and z4).
        assert {at.selectbox(key="home_reparam_x").value, at.selectbox(key="home_reparam_y").value} == {0, 4}
        x, _ = _reparam_points(at)
        assert len(x) == 8
