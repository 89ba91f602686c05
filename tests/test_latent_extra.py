"""Helpers the Latent map and Decode pages use: selection parsing, prior draws, grid positions."""

import numpy as np
import pytest
import torch

from tests.helpers import tiny_model
from vae_core.geometry import grid_position, prior_latent, selected_indices
from vae_core.inference import decode_latents, decode_one, manifold_grid


def test_selected_indices_reads_scalar_and_list_customdata_in_order_without_duplicates():
    points = [
        {"customdata": 7, "point_index": 0, "curve_number": 1},
        {"customdata": [3], "point_index": 0, "curve_number": 0},
        {"customdata": 7.0},  # the same point from a second selection box
        {"point_index": 4},  # a trace without customdata (e.g. the manifold marker) is skipped
        {"customdata": []},
        {"customdata": "x"},
        "not a point",
        {"customdata": np.array([11])},
    ]
    out = selected_indices(points)
    assert out.dtype == np.int64
    assert out.tolist() == [7, 3, 11]


def test_selected_indices_drops_indices_outside_the_shown_points():
    points = [{"customdata": i} for i in (-1, 0, 4, 5, 9)]
    assert selected_indices(points, size=5).tolist() == [0, 4]
    assert selected_indices([]).shape == (0,)


def test_prior_latent_is_seeded_and_standard_normal():
    a, b = prior_latent(16, seed=3), prior_latent(16, seed=3)
    assert a.shape == (16,)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, prior_latent(16, seed=4))
    many = prior_latent(20_000, seed=0)
    assert abs(many.mean()) < 0.05 and abs(many.std() - 1) < 0.05
    with pytest.raises(ValueError, match="latent_dim"):
        prior_latent(0, seed=0)


def test_grid_position_hits_cell_centres_interpolates_and_clips_to_the_edges():
    values = np.array([-2.0, -1.0, 0.5, 2.0])
    assert grid_position(values, -2.0) == pytest.approx(0.5)
    assert grid_position(values, 0.5) == pytest.approx(2.5)
    assert grid_position(values, -0.25) == pytest.approx(2.0)  # halfway between centres 1.5 and 2.5
    assert grid_position(values, -2.5) == pytest.approx(0.0)  # half a cell spacing below the first centre
    assert grid_position(values, 2.75) == pytest.approx(4.0)
    assert grid_position(values, -100.0) == 0.0 and grid_position(values, 100.0) == 4.0
    with pytest.raises(ValueError, match="increasing"):
        grid_position(np.array([1.0, 0.0]), 0.0)


def test_grid_position_finds_the_manifold_cell_that_decodes_a_grid_value():
    grid = manifold_grid(tiny_model(), n=5)
    for c, v in enumerate(grid.values):
        assert int(grid_position(grid.values, float(v))) == c


def test_decode_one_matches_decode_latents_and_restores_the_thread_count():
    model = tiny_model()
    z = np.array([0.5, -1.0])
    before = torch.get_num_threads()
    image = decode_one(model, z)
    assert image.shape == (1, 28, 28)
    torch.testing.assert_close(image, decode_latents(model, z)[0])
    assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match="single latent"):
        decode_one(model, np.zeros((2, 2)))
