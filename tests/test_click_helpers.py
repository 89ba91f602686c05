"""The maths behind clicking the map and ranking Decode's sliders: plane grid, local manifold, KL ranking."""

import numpy as np
import pytest
import torch

from tests.helpers import tiny_model
from vae_core.config import ModelConfig
from vae_core.geometry import plane_grid
from vae_core.health import kl_per_dimension_of, rank_dimensions_of
from vae_core.inference import decode_one, manifold_around

# Plane grid


def test_plane_grid_covers_the_points_with_a_margin_row_by_row():
    coords = np.array([[0.0, -1.0], [4.0, 1.0], [2.0, 0.0]])
    grid = plane_grid(coords, n=5, margin=0.25)
    assert grid.shape == (25, 2)
    np.testing.assert_allclose(grid.min(axis=0), [-1.0, -1.5])  # extents 4 and 2, a quarter of each beyond
    np.testing.assert_allclose(grid.max(axis=0), [5.0, 1.5])
    np.testing.assert_allclose(grid[:5, 1], -1.5)  # the first row is the lowest y; x varies fastest
    np.testing.assert_allclose(grid[:5, 0], [-1.0, 0.5, 2.0, 3.5, 5.0])
    # every point of the plane within the grid is at most half a cell from a grid point
    probe = np.random.default_rng(0).uniform([-1.0, -1.5], [5.0, 1.5], size=(200, 2))
    nearest = np.sqrt(((probe[:, None] - grid[None]) ** 2).sum(-1)).min(axis=1)
    assert nearest.max() <= np.hypot(1.5, 0.75) / 2 + 1e-9


def test_plane_grid_around_a_single_point_is_not_degenerate():
    grid = plane_grid(np.array([[1.0, 2.0]]), n=3)
    assert np.ptp(grid[:, 0]) > 0 and np.ptp(grid[:, 1]) > 0
    np.testing.assert_allclose(grid.mean(axis=0), [1.0, 2.0])


@pytest.mark.parametrize(
    ("coords", "n", "margin"),
    [
        (np.zeros((0, 2)), 5, 0.1),
        (np.zeros((3, 3)), 5, 0.1),
        (np.zeros((3, 2)), 1, 0.1),
        (np.zeros((3, 2)), 5, -1),
    ],
)
def test_plane_grid_refuses_bad_input(coords, n, margin):
    with pytest.raises(ValueError):
        plane_grid(coords, n=n, margin=margin)


# Manifold around a point


@pytest.mark.parametrize(
    "config",
    [
        ModelConfig(arch="mlp", latent_dim=2, hidden=(32,)),
        ModelConfig(arch="mlp", latent_dim=4, hidden=(16,)),
    ],
)
def test_manifold_around_centres_on_z_and_keeps_the_other_dimensions(config):
    model = tiny_model(config)
    z = np.linspace(-0.8, 0.9, config.latent_dim)
    patch = manifold_around(model, z, half_width=0.5, n=5, dims=(1, 0))
    assert patch.images.shape == (25, 1, 28, 28)
    np.testing.assert_allclose(patch.xs, z[1] + np.linspace(-0.5, 0.5, 5), atol=1e-6)
    np.testing.assert_allclose(patch.ys, z[0] + np.linspace(-0.5, 0.5, 5), atol=1e-6)
    # the middle cell is z itself
    torch.testing.assert_close(patch.images[12], decode_one(model, z))
    # top-left cell: the lowest x and the highest y
    corner = z.copy()
    corner[1], corner[0] = patch.xs[0], patch.ys[-1]
    torch.testing.assert_close(patch.images[0], decode_one(model, corner))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"half_width": 0.0}, "half_width"),
        ({"half_width": float("nan")}, "half_width"),
        ({"half_width": 1.0, "n": 1}, "n must"),
        ({"half_width": 1.0, "dims": (0, 0)}, "dims"),
        ({"half_width": 1.0, "dims": (0, 2)}, "dims"),
    ],
)
def test_manifold_around_refuses_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        manifold_around(tiny_model(), np.zeros(2), **kwargs)


# KL ranking


def test_rank_dimensions_orders_by_kl_and_marks_the_inactive_ones():
    rng = np.random.default_rng(0)
    n = 500
    # dim 0: varies a little, dim 1: copies the prior (inactive), dim 2: varies most, dim 3: in between
    mu = np.column_stack([rng.normal(0, 0.5, n), np.zeros(n), rng.normal(0, 2.0, n), rng.normal(0, 1.0, n)])
    logvar = np.column_stack([np.full(n, -1.0), np.zeros(n), np.full(n, -4.0), np.full(n, -2.0)])
    ranking = rank_dimensions_of(mu.astype(np.float32), logvar.astype(np.float32))
    assert ranking.order.tolist() == [2, 3, 0, 1]
    np.testing.assert_allclose(ranking.kl, kl_per_dimension_of(mu, logvar), rtol=1e-6)
    assert ranking.active.tolist() == [True, False, True, True]
    assert np.all(np.diff(ranking.kl[ranking.order]) <= 0)


def test_rank_dimensions_breaks_ties_by_index():
    mu = np.zeros((10, 3), np.float32)
    ranking = rank_dimensions_of(mu, np.zeros((10, 3), np.float32))
    assert ranking.order.tolist() == [0, 1, 2]
    assert not ranking.active.any()
