"""Latent-space helpers: encode/decode, projections, interpolation, traversals, grids, sampling, caching."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.helpers import tiny_model
from vae_core.config import ModelConfig
from vae_core.geometry import (
    Projection,
    aggregate_gaussian,
    fit_pca,
    interpolate,
    log_prior,
    nearest_neighbours,
    project,
    timeline_projection,
    traversal_ranges,
)
from vae_core.inference import (
    ManifoldGrid,
    decode_latents,
    encode,
    manifold_grid,
    prior_samples,
    sample_aggregate,
    traversal,
)
from vae_core.timeline import TimelineFrame

MLP4 = ModelConfig(latent_dim=4, arch="mlp", hidden=(32,))


def _images(n: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 1, 28, 28), generator=gen, dtype=torch.uint8)


def _clusters(n: int, d: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 4, (3, d))
    return (centres[np.arange(n) % 3] + rng.normal(0, 0.5, (n, d))).astype(np.float32)


# ------------------------------------------------------------------------------ encode / decode


def test_encode_in_batches_equals_one_pass_and_accepts_uint8_or_float():
    model = tiny_model(MLP4)
    x = _images(23)
    whole = encode(model, x, batch_size=1000)
    batched = encode(model, x, batch_size=5)
    assert whole.mu.shape == whole.logvar.shape == (23, 4)
    assert whole.mu.device.type == "cpu" and whole.mu.dtype == torch.float32
    torch.testing.assert_close(batched.mu, whole.mu)
    torch.testing.assert_close(batched.logvar, whole.logvar)
    torch.testing.assert_close(encode(model, x.float() / 255).mu, whole.mu)


def test_inference_helpers_restore_the_training_mode_and_need_no_grad():
    model = tiny_model(MLP4).train()
    mu = encode(model, _images(4)).mu
    assert model.training and not mu.requires_grad
    model.eval()
    decode_latents(model, mu)
    assert not model.training


def test_decode_latents_shapes_and_range_for_numpy_tensor_and_single_latent():
    model = tiny_model(MLP4)
    z = np.random.default_rng(0).normal(0, 3, (7, 4))
    images = decode_latents(model, z, batch_size=3)
    assert images.shape == (7, 1, 28, 28) and images.dtype == torch.float32
    assert images.min() >= 0 and images.max() <= 1
    torch.testing.assert_close(images, decode_latents(model, torch.from_numpy(z)))
    assert decode_latents(model, z[0]).shape == (1, 1, 28, 28)
    with pytest.raises(ValueError, match="latents"):
        decode_latents(model, np.zeros((2, 3)))
    with pytest.raises(ValueError, match="batch_size"):
        decode_latents(model, z, batch_size=0)


def test_encode_rejects_images_of_the_wrong_shape():
    with pytest.raises(ValueError, match="expected images"):
        encode(tiny_model(), torch.zeros(2, 3, 28, 28))


# ---------------------------------------------------------------------------------- projections


def test_project_direct_returns_the_chosen_dimensions():
    latents = _clusters(30, 4)
    out = project(latents, method="direct", dims=(2, 0))
    assert isinstance(out, Projection)
    assert out.coords.dtype == np.float32 and out.coords.shape == (30, 2)
    np.testing.assert_array_equal(out.coords, latents[:, [2, 0]])
    assert out.axis_titles == ("z2", "z0") and out.explained is None
    with pytest.raises(ValueError, match="dims"):
        project(latents, method="direct", dims=(1, 1))
    with pytest.raises(ValueError, match="dims"):
        project(latents, method="direct", dims=(0, 4))


def test_project_pca_explains_at_most_all_variance_and_equals_fit_pca():
    latents = _clusters(40, 6)
    out = project(latents, method="pca")
    assert out.coords.shape == (40, 2)
    assert out.explained is not None and 0 < sum(out.explained) <= 1 + 1e-9
    assert out.explained[0] >= out.explained[1]
    assert out.axis_titles[0].startswith("PC1")
    np.testing.assert_allclose(out.coords, fit_pca(latents).transform(latents), atol=1e-5)


def test_project_rejects_bad_input():
    with pytest.raises(ValueError, match="method"):
        project(_clusters(10, 2), method="tsne")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="NaN"):
        project(np.full((10, 2), np.nan), method="pca")


# -------------------------------------------------------------------------------- interpolation


@pytest.mark.parametrize("method", ["linear", "slerp"])
def test_interpolation_endpoints_equal_the_inputs(method):
    gen = torch.Generator().manual_seed(0)
    z0, z1 = torch.randn(8, generator=gen), torch.randn(8, generator=gen)
    path = interpolate(z0, z1, steps=7, method=method)
    assert path.shape == (7, 8) and path.dtype == torch.float32
    assert torch.equal(path[0], z0) and torch.equal(path[-1], z1)
    np_path = interpolate(z0.numpy(), z1.numpy(), steps=7, method=method)
    torch.testing.assert_close(np_path, path)


def test_linear_interpolation_is_evenly_spaced():
    path = interpolate(np.zeros(2), np.array([4.0, -8.0]), steps=5)
    torch.testing.assert_close(path[2], torch.tensor([2.0, -4.0]))
    steps = (path[1:] - path[:-1]).norm(dim=1)
    torch.testing.assert_close(steps, torch.full((4,), steps[0].item()))


def test_slerp_keeps_the_norm_between_endpoints_of_equal_norm():
    gen = torch.Generator().manual_seed(1)
    z0, z1 = torch.randn(16, generator=gen), torch.randn(16, generator=gen)
    z1 = z1 * z0.norm() / z1.norm()
    norms = interpolate(z0, z1, steps=11, method="slerp").norm(dim=1)
    torch.testing.assert_close(norms, torch.full((11,), z0.norm().item()), rtol=1e-5, atol=1e-5)
    # The straight line cuts inside the sphere.
    assert interpolate(z0, z1, steps=11).norm(dim=1)[5] < z0.norm() * 0.99


@pytest.mark.parametrize(
    "z0, z1", [([1.0, 2.0], [2.0, 4.0]), ([1.0, 2.0], [-1.0, -2.0]), ([0.0, 0.0], [1.0, 1.0])]
)
def test_slerp_falls_back_to_the_line_for_parallel_or_zero_vectors(z0, z1):
    z0, z1 = np.array(z0), np.array(z1)
    slerp = interpolate(z0, z1, steps=5, method="slerp")
    assert torch.isfinite(slerp).all()
    torch.testing.assert_close(slerp, interpolate(z0, z1, steps=5, method="linear"))


def test_interpolate_rejects_bad_arguments():
    with pytest.raises(ValueError, match="steps"):
        interpolate(np.zeros(2), np.ones(2), steps=1)
    with pytest.raises(ValueError, match="method"):
        interpolate(np.zeros(2), np.ones(2), steps=3, method="cubic")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="one length"):
        interpolate(np.zeros(2), np.ones(3), steps=3)


# ---------------------------------------------------------------------------- traversals, grids


def test_a_dimension_the_decoder_ignores_changes_the_image_little_while_another_does():
    model = tiny_model(MLP4)
    dead = 1
    with torch.no_grad():
        model.decoder[0].weight[:, dead] = 0  # like a dimension with zero KL: the decoder ignores it
    z = np.zeros(4, dtype=np.float32)
    images = traversal(model, z, dims=[dead, 2], values=np.linspace(-3, 3, 7))
    assert images.shape == (2, 7, 1, 28, 28)
    assert (images[0] - images[0, :1]).abs().max() < 1e-6
    assert (images[1] - images[1, :1]).abs().max() > 1e-3


def test_traversal_takes_per_row_values_and_checks_them():
    model = tiny_model(MLP4)
    z = np.random.default_rng(0).normal(size=4)
    values = np.array([[-1.0, 0.0, 1.0], [5.0, 6.0, 7.0]])
    images = traversal(model, z, dims=[0, 3], values=values)
    expected = z.copy()
    expected[3] = 6.0
    torch.testing.assert_close(images[1, 1], decode_latents(model, expected)[0])
    with pytest.raises(ValueError, match="values"):
        traversal(model, z, dims=[0, 3], values=np.zeros((3, 3)))
    with pytest.raises(ValueError, match="dims"):
        traversal(model, z, dims=[4], values=[0.0, 1.0])


def test_traversal_ranges_span_width_standard_deviations_with_a_floor():
    rng = np.random.default_rng(0)
    mu = np.column_stack([rng.normal(0, 2.0, 500), np.zeros(500)])
    center = np.array([1.0, 0.5])
    ranges = traversal_ranges(mu, center, steps=5, width=2.0)
    assert ranges.shape == (2, 5)
    std = mu[:, 0].std()
    np.testing.assert_allclose(ranges[0, [0, 2, -1]], [1 - 2 * std, 1.0, 1 + 2 * std], rtol=1e-5)
    np.testing.assert_allclose(ranges[1, [0, -1]], [0.5 - 2e-3, 0.5 + 2e-3], rtol=1e-5)
    with pytest.raises(ValueError, match="center"):
        traversal_ranges(mu, np.zeros(3))


def test_manifold_grid_decodes_gaussian_quantiles_with_y_decreasing_downwards():
    model = tiny_model()
    grid = manifold_grid(model, n=4)
    assert isinstance(grid, ManifoldGrid)
    assert grid.images.shape == (16, 1, 28, 28)
    assert np.all(np.diff(grid.values) > 0)
    np.testing.assert_allclose(grid.values, -grid.values[::-1], atol=1e-6)  # symmetric quantiles
    assert grid.values[-1] == pytest.approx(1.6449, abs=1e-3)  # the 95% quantile of N(0, 1)
    # Row 0, column 3 holds x = the largest value, y = the largest value (top right).
    top_right = torch.tensor([grid.values[3], grid.values[3]])
    bottom_left = torch.tensor([grid.values[0], grid.values[0]])
    torch.testing.assert_close(grid.images[3], decode_latents(model, top_right)[0])
    torch.testing.assert_close(grid.images[12], decode_latents(model, bottom_left)[0])


def test_manifold_grid_holds_other_dimensions_at_base():
    model = tiny_model(MLP4)
    base = np.array([0.3, -0.7, 1.1, 2.0])
    grid = manifold_grid(model, n=3, dims=(2, 0), base=base)
    z = base.copy()
    z[2], z[0] = grid.values[0], grid.values[1]  # row 1 (middle), column 0
    torch.testing.assert_close(grid.images[3], decode_latents(model, z)[0])
    with pytest.raises(ValueError, match="quantile_span"):
        manifold_grid(model, quantile_span=(0.0, 0.5))


# -------------------------------------------------------------------- prior, neighbours, samples


def test_prior_samples_are_seeded_images():
    model = tiny_model()
    a, b = prior_samples(model, n=6, seed=2), prior_samples(model, n=6, seed=2)
    assert a.shape == (6, 1, 28, 28)
    torch.testing.assert_close(a, b)
    assert not torch.equal(a, prior_samples(model, n=6, seed=3))


def test_log_prior_matches_torch_distributions():
    z = np.random.default_rng(0).normal(size=(5, 3))
    expected = torch.distributions.Normal(0.0, 1.0).log_prob(torch.from_numpy(z)).sum(dim=1).numpy()
    np.testing.assert_allclose(log_prior(z), expected)
    assert isinstance(log_prior(z[0]), float)
    assert log_prior(torch.from_numpy(z[0])) == pytest.approx(expected[0])


def test_nearest_neighbours_of_a_member_returns_itself_first():
    latents = _clusters(50, 3)
    idx, dist = nearest_neighbours(latents[17], latents, k=5)
    assert idx.dtype == np.int64 and idx.shape == dist.shape == (5,)
    assert idx[0] == 17 and dist[0] == 0.0
    assert np.all(np.diff(dist) >= 0)
    np.testing.assert_allclose(dist, np.linalg.norm(latents[idx] - latents[17], axis=1), rtol=1e-6)
    assert len(nearest_neighbours(latents[0], latents[:3], k=8)[0]) == 3


def test_aggregate_gaussian_fit_and_its_samples():
    rng = np.random.default_rng(0)
    cov_true = np.array([[1.0, 0.8], [0.8, 1.0]])
    mu = rng.multivariate_normal([2.0, -1.0], cov_true, size=4000)
    mean, cov = aggregate_gaussian(mu)
    np.testing.assert_allclose(mean, [2.0, -1.0], atol=0.06)
    np.testing.assert_allclose(cov, cov_true, atol=0.08)
    model = tiny_model()
    images = sample_aggregate(model, mean, cov, n=5, seed=0)
    assert images.shape == (5, 1, 28, 28)
    torch.testing.assert_close(images, sample_aggregate(model, mean, cov, n=5, seed=0))
    # A collapsed (singular) covariance still samples thanks to the 1e-6 I regulariser.
    assert sample_aggregate(model, mean, np.zeros((2, 2)), n=2, seed=0).shape == (2, 1, 28, 28)


# ------------------------------------------------------------------------------------ timeline


def _frames(mus: list[np.ndarray]) -> list[TimelineFrame]:
    return [TimelineFrame(i + 1, mu, np.zeros((1, 1, 28, 28), np.uint8)) for i, mu in enumerate(mus)]


def test_timeline_projection_uses_one_basis_for_every_frame():
    rng = np.random.default_rng(0)
    last = _clusters(40, 5)
    early = rng.normal(size=(40, 5)).astype(np.float32)
    coords = timeline_projection(_frames([last, early, last]))
    assert len(coords) == 3 and all(c.shape == (40, 2) and c.dtype == np.float32 for c in coords)
    np.testing.assert_array_equal(coords[0], coords[2])
    # The basis is the last frame's PCA: its coordinates match a fresh PCA up to each axis's sign.
    pca = project(last, method="pca").coords
    for axis in range(2):
        assert min(np.abs(coords[2][:, axis] - s * pca[:, axis]).max() for s in (1, -1)) < 1e-3


def test_timeline_projection_shows_two_dimensional_latents_directly():
    mus = [np.random.default_rng(i).normal(size=(10, 2)).astype(np.float32) for i in range(2)]
    coords = timeline_projection(_frames(mus))
    np.testing.assert_array_equal(coords[0], mus[0])
    np.testing.assert_array_equal(
        timeline_projection(_frames([_clusters(10, 4)]), method="direct")[0], _clusters(10, 4)[:, :2]
    )
    assert timeline_projection([]) == []
