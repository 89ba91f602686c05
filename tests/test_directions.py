"""Attribute directions, projections, separation scores, moves along a direction and analogies."""

import numpy as np
import pytest
import torch

from vae_core.directions import (
    analogy,
    attribute_direction,
    auc,
    histogram_overlap,
    move,
    projections,
    separation,
    walk,
)


def clusters(*, d: int = 8, n: int = 200, gap: float = 6.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two Gaussian clusters N(0, I) and N(gap e0, I) in ``d`` dimensions."""
    rng = np.random.default_rng(seed)
    shift = np.zeros(d)
    shift[0] = gap
    return rng.standard_normal((n, d)), rng.standard_normal((n, d)) + shift


def test_direction_between_separated_clusters_separates_them():
    a, b = clusters()
    direction = attribute_direction(a, b)
    assert direction.sizes == (200, 200)
    np.testing.assert_allclose(direction.vector, b.mean(0) - a.mean(0))
    np.testing.assert_allclose(np.linalg.norm(direction.unit), 1.0)
    assert abs(direction.unit[0]) > 0.95  # it found the axis the clusters differ along
    score = separation(a, b)
    assert score.auc > 0.99 and score.held_out_auc > 0.99
    assert score.overlap < 0.05
    assert score.fisher > 10


def test_overlapping_clusters_score_near_chance():
    a, b = clusters(gap=0.0, n=400, seed=3)
    score = separation(a, b)
    # The mean difference of pure noise still flatters the groups in sample; held out it is chance.
    assert 0.4 < score.held_out_auc < 0.6
    assert score.overlap > 0.6
    assert score.held_out_auc < score.auc


def test_projections_put_the_group_means_at_0_and_1():
    a, b = clusters(seed=1)
    direction = attribute_direction(a, b)
    np.testing.assert_allclose(projections(a, direction).mean(), 0.0, atol=1e-12)
    np.testing.assert_allclose(projections(b, direction).mean(), 1.0, atol=1e-12)
    # Moving any code by t shifts its projection by exactly t.
    z = a[5]
    shifted = projections(move(z, direction, t=0.7)[None], direction)[0]
    np.testing.assert_allclose(shifted - projections(z[None], direction)[0], 0.7)


@pytest.mark.parametrize("z", [np.linspace(-1, 1, 8), np.linspace(-1, 1, 8).astype(np.float32)[None]])
def test_moving_by_zero_is_the_identity(z):
    direction = attribute_direction(*clusters())
    assert np.array_equal(move(z, direction, t=0.0), np.asarray(z, dtype=np.float64).reshape(-1))
    np.testing.assert_allclose(move(z, direction, t=1.0), z.reshape(-1) + direction.mean_b - direction.mean_a)


def test_moving_a_group_mean_by_one_reaches_the_other():
    direction = attribute_direction(*clusters(seed=2))
    np.testing.assert_allclose(move(direction.mean_a, direction, t=1.0), direction.mean_b)
    np.testing.assert_allclose(move(direction.mean_b, direction, t=-1.0), direction.mean_a)


def test_walk_is_the_stack_of_moves():
    direction = attribute_direction(*clusters())
    z = torch.arange(8, dtype=torch.float32)
    ts = np.linspace(-1.5, 1.5, 7)
    codes = walk(z, direction, ts=ts)
    assert codes.shape == (7, 8)
    for t, code in zip(ts, codes, strict=True):
        np.testing.assert_allclose(code, move(z, direction, t=t))
    assert np.array_equal(codes[3], z.numpy().astype(np.float64))  # t = 0 in the middle


def test_analogy_identities():
    rng = np.random.default_rng(0)
    a, b, c = rng.standard_normal((3, 5))
    np.testing.assert_allclose(analogy(a, b, c), a - b + c)
    assert np.array_equal(analogy(a, a, c), c)  # no change asked: c itself
    np.testing.assert_allclose(analogy(a, b, b), a)  # b is to b as a is to a
    np.testing.assert_allclose(analogy(torch.tensor(a), b, torch.tensor(c)), a - b + c)


def test_auc_and_overlap_on_known_scores():
    assert auc(np.array([0.0, 1.0]), np.array([2.0, 3.0])) == 1.0
    assert auc(np.array([2.0, 3.0]), np.array([0.0, 1.0])) == 0.0
    assert auc(np.array([1.0]), np.array([1.0])) == 0.5  # a tie counts one half
    assert auc(np.array([0.0, 2.0]), np.array([1.0])) == 0.5
    assert histogram_overlap(np.array([0.0, 0.1]), np.array([5.0, 5.1])) == 0.0
    assert histogram_overlap(np.array([0.0, 1.0]), np.array([0.0, 1.0])) == pytest.approx(1.0)


def test_bad_arguments_fail_with_a_message():
    a, b = clusters(d=4, n=10)
    with pytest.raises(ValueError, match="group A is empty"):
        attribute_direction(np.zeros((0, 4)), b)
    with pytest.raises(ValueError, match="differ in dimension"):
        attribute_direction(a, b[:, :3])
    with pytest.raises(ValueError, match="same mean code"):
        attribute_direction(a, a.copy())
    with pytest.raises(ValueError, match="NaN"):
        attribute_direction(np.full((2, 4), np.nan), b)
    with pytest.raises(ValueError, match=r"codes \(N, D\)"):
        attribute_direction(np.zeros(4), b)
    direction = attribute_direction(a, b)
    with pytest.raises(ValueError, match="one code of 4 dimensions"):
        move(np.zeros(3), direction, t=1.0)
    with pytest.raises(ValueError, match="finite"):
        move(np.zeros(4), direction, t=float("nan"))
    with pytest.raises(ValueError, match="at least one finite"):
        walk(np.zeros(4), direction, ts=np.array([]))
    with pytest.raises(ValueError, match="codes have 3 dimensions"):
        projections(np.zeros((2, 3)), direction)
    with pytest.raises(ValueError, match="one code of 4 dimensions"):
        analogy(np.zeros(4), np.zeros(4), np.zeros(5))
    with pytest.raises(ValueError, match="at least one score"):
        auc(np.array([]), np.array([1.0]))


def test_small_groups_have_no_held_out_score():
    a, b = clusters(n=3)
    assert separation(a, b).held_out_auc is None
