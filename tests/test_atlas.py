"""The atlas: codes, per-image -ELBO, a neighbour-preserving map, placement of new points, storage."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from tests.helpers import random_splits, tiny_model
from vae_core.atlas import (
    PLACE_NEIGHBOURS,
    TSNE_MIN_POINTS,
    Atlas,
    atlas_payload,
    build_atlas,
    images_key,
    knn_accuracy,
    layout_codes,
    parse_atlas,
)
from vae_core.checkpoints import load_checkpoint
from vae_core.config import ModelConfig
from vae_core.inference import encode
from vae_core.metrics import ELBO_ESTIMATOR, per_image_elbo
from vae_core.safeload import CheckpointError
from vae_core.saving import save_checkpoint


def clusters(n_per: int = 40, d: int = 6, k: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Return k well-separated Gaussian clusters in d dimensions, with their labels."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 8, size=(k, d))
    mu = np.concatenate([c + rng.normal(0, 1, size=(n_per, d)) for c in centres])
    return mu.astype(np.float32), np.repeat(np.arange(k), n_per)


def atlas_of(mu: np.ndarray, labels: np.ndarray) -> Atlas:
    coords, layout = layout_codes(mu)
    zeros = np.zeros(len(mu), np.float32)
    return Atlas(mu, np.zeros_like(mu), zeros, zeros, coords, labels.astype(np.int64), layout, "test")


@pytest.fixture(scope="module")
def four_d():
    config = ModelConfig(arch="mlp", latent_dim=4, hidden=(32,))
    data = random_splits(n_test=80)
    return tiny_model(config), data


def test_build_atlas_holds_the_codes_and_the_one_elbo_estimate(four_d):
    model, data = four_d
    calls: list[float] = []
    atlas = build_atlas(model, data.test_x, data.test_y, on_progress=lambda f, m: calls.append(f))
    post = encode(model, data.test_x)
    np.testing.assert_allclose(atlas.mu, post.mu.numpy(), atol=1e-6)
    np.testing.assert_allclose(atlas.std, np.exp(0.5 * post.logvar.numpy()), rtol=1e-5)
    np.testing.assert_allclose(atlas.elbo, per_image_elbo(model, data.test_x).total, rtol=1e-5)
    assert atlas.layout == "t-SNE" and atlas.coords.shape == (80, 2) and np.isfinite(atlas.coords).all()
    assert atlas.data_key == images_key(data.test_x) and atlas.estimator == ELBO_ESTIMATOR
    assert calls[0] == 0.0 and calls[-1] == 1.0 and calls == sorted(calls)


def test_a_two_dimensional_latent_is_its_own_map_and_places_points_exactly():
    mu, labels = clusters(d=2)
    atlas = atlas_of(mu, labels)
    assert atlas.layout == "latent" and atlas.axis_titles == ("z0", "z1")
    np.testing.assert_array_equal(atlas.coords, mu)
    np.testing.assert_allclose(atlas.place(np.array([0.5, -2.0])), [[0.5, -2.0]])


def test_small_sets_get_a_pca_map_and_the_t_sne_map_keeps_clusters_apart():
    mu, labels = clusters(n_per=5)
    assert layout_codes(mu[: TSNE_MIN_POINTS - 1])[1] == "PCA"
    mu, labels = clusters()
    coords, layout = layout_codes(mu)
    assert layout == "t-SNE"
    assert knn_accuracy(coords, labels) > 0.95
    again, _ = layout_codes(mu)
    np.testing.assert_array_equal(coords, again)  # seeded: the same map every time


def test_placement_is_deterministic_fast_and_lands_among_the_points_own_neighbours():
    mu, labels = clusters(n_per=60)
    held = np.arange(0, len(mu), 10)  # every tenth point is new to the atlas
    keep = np.setdiff1d(np.arange(len(mu)), held)
    atlas = atlas_of(mu[keep], labels[keep])
    placed = atlas.place(mu[held])
    np.testing.assert_array_equal(placed, atlas.place(mu[held]))
    spread = np.sqrt(((atlas.coords - atlas.coords.mean(0)) ** 2).sum(1).mean())
    for point, position in zip(mu[held], placed):
        index, _ = atlas.neighbours(point, k=PLACE_NEIGHBOURS)
        # Close to where the point's own latent neighbours lie on the map (scale-free).
        assert np.linalg.norm(position - atlas.coords[index].mean(0)) < 0.25 * spread
    # and in its own cluster: the nearest mapped point to where it lands has its class
    nearest = [atlas.labels[np.argmin(((atlas.coords - p) ** 2).sum(1))] for p in placed]
    assert np.mean(np.array(nearest) == labels[held]) > 0.95


def test_placement_checks_its_input():
    atlas = atlas_of(*clusters())
    with pytest.raises(ValueError, match="expected latents"):
        atlas.place(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="NaN"):
        atlas.place(np.full(6, np.nan))


def test_images_key_names_the_images_not_the_tensor():
    x = random_splits().test_x
    assert images_key(x) == images_key(x.clone())
    y = x.clone()
    y[0, 0, 0, 0] ^= 1
    assert images_key(y) != images_key(x)
    assert images_key(x[:10]) != images_key(x)


def test_atlas_save_load_round_trip(tmp_path, four_d):
    model, data = four_d
    atlas = build_atlas(model, data.test_x, data.test_y)
    path = save_checkpoint(
        tmp_path / "m.pt",
        model=model,
        train_config=None,
        dataset="random",
        history=[],
        sample=(data.test_x, data.test_y),
        atlas=atlas,
    )
    loaded = load_checkpoint(path)
    assert loaded.info.has_atlas
    for field in ("mu", "logvar", "recon", "kl", "coords", "labels"):
        np.testing.assert_array_equal(getattr(loaded.atlas, field), getattr(atlas, field))
    assert (loaded.atlas.layout, loaded.atlas.data_key, loaded.atlas.estimator) == (
        atlas.layout,
        atlas.data_key,
        atlas.estimator,
    )
    new = torch.rand(3, 1, 28, 28)
    np.testing.assert_array_equal(
        loaded.atlas.place(encode(loaded.model, new).mu), atlas.place(encode(model, new).mu)
    )


def test_an_atlas_needs_the_sample_it_describes(tmp_path, four_d):
    model, data = four_d
    atlas = build_atlas(model, data.test_x, data.test_y)
    with pytest.raises(ValueError, match="sample"):
        save_checkpoint(
            tmp_path / "m.pt", model=model, train_config=None, dataset="r", history=[], atlas=atlas
        )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"coords": torch.zeros(5, 2)}, "coords must be float32"),
        ({"mu": torch.zeros(80, 4, dtype=torch.float64)}, "mu must be float32"),
        ({"kl": torch.full((80,), float("nan"))}, "NaN"),
        ({"layout": 3}, "short strings"),
        ({"extra": 1}, "exactly"),
    ],
)
def test_parse_atlas_refuses_what_does_not_fit(four_d, change, message):
    model, data = four_d
    raw = atlas_payload(build_atlas(model, data.test_x, data.test_y))
    raw.update(change)
    with pytest.raises(CheckpointError, match=message):
        parse_atlas(raw, n=80, latent_dim=4, fail=CheckpointError)


def test_a_replaced_atlas_keeps_its_identity_fields():
    atlas = atlas_of(*clusters())
    moved = dataclasses.replace(atlas, coords=atlas.coords * 2)
    assert moved.data_key == atlas.data_key and moved.layout == atlas.layout
