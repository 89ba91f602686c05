"""The computations behind the Insight pages: health, traversals, evaluation, comparison, export."""

from __future__ import annotations

import io
import math
import re
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from tests.helpers import random_splits, tiny_model
from vae_core.config import ModelConfig, TrainConfig
from vae_core.export import (
    CONFIG_FILE,
    METADATA_FILE,
    VECTORS_FILE,
    export_projector,
    export_zip,
    labelled_grid,
    latents_csv,
    traversal_frames,
    traversal_gif,
    traversal_sheet,
)
from vae_core.geometry import dims_by_kl, mu_histograms, standard_normal_pdf, traversal_ranges
from vae_core.health import (
    active_units,
    active_units_of,
    kl_per_dimension,
    kl_per_dimension_of,
    latent_health,
    latent_health_of,
)
from vae_core.imaging import to_uint8
from vae_core.inference import encode, traversal
from vae_core.metrics import (
    LITERATURE_NLL,
    decode_seconds,
    elbo_means,
    evaluate_elbo,
    iwae_cost,
    model_summary,
    model_summary_of,
    per_image_elbo,
    rank_typicality,
)
from vae_core.training import fit

DEAD = 2  # the dimension the fixtures switch off


@pytest.fixture(scope="module")
def data():
    return random_splits(n_train=128, n_test=48)


@pytest.fixture(scope="module")
def trained(data):
    model = tiny_model(ModelConfig(arch="mlp", latent_dim=4, hidden=(32,)))
    fit(model, data, TrainConfig(dataset="random", epochs=2, batch_size=32, device="cpu"))
    model.eval()
    return model


def _switch_off(model, dim: int, *, decoder_too: bool):
    """Make q(z_dim | x) = N(0, 1) for every x (KL exactly 0); optionally make the decoder ignore z_dim."""
    with torch.no_grad():
        for layer in (model.to_mu, model.to_logvar):
            layer.weight[dim].zero_()
            layer.bias[dim].zero_()
        if decoder_too:
            model.decoder[0].weight[:, dim].zero_()
    return model


# Latent health ------------------------------------------------------------------------------------------


def test_kl_per_dimension_sums_to_the_total_kl(trained, data):
    health = latent_health(trained, data.test_x)
    assert health.kl_per_dim.shape == (4,)
    assert (health.kl_per_dim >= 0).all()
    assert health.kl_per_dim.sum() == pytest.approx(evaluate_elbo(trained, data.test_x).kl, rel=1e-5)


def test_a_switched_off_dimension_has_zero_kl_and_is_inactive(data):
    model = _switch_off(
        tiny_model(ModelConfig(arch="mlp", latent_dim=4, hidden=(32,))), DEAD, decoder_too=False
    )
    health = latent_health(model, data.test_x)
    assert health.kl_per_dim[DEAD] == pytest.approx(0.0, abs=1e-7)
    assert health.active.variances[DEAD] == pytest.approx(0.0, abs=1e-12)
    assert dims_by_kl(health.kl_per_dim)[-1] == DEAD


def test_kl_per_dimension_of_posteriors_is_the_closed_form_kl_of_each_dimension():
    rng = np.random.default_rng(0)
    mu, logvar = rng.normal(size=(50, 3)), rng.normal(scale=0.5, size=(50, 3))
    q = torch.distributions.Normal(torch.from_numpy(mu), torch.from_numpy(np.exp(0.5 * logvar)))
    p = torch.distributions.Normal(0.0, 1.0)
    expected = torch.distributions.kl_divergence(q, p).mean(dim=0).numpy()
    np.testing.assert_allclose(kl_per_dimension_of(mu, logvar), expected, rtol=1e-5)
    assert kl_per_dimension_of(np.zeros((0, 3)), np.zeros((0, 3))).tolist() == [0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="same shape"):
        kl_per_dimension_of(mu, logvar[:, :2])
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        kl_per_dimension_of(mu[0], logvar[0])


def test_active_units_of_codes_counts_dimensions_whose_mean_varies():
    rng = np.random.default_rng(1)
    mu = np.column_stack([rng.normal(size=40), np.full(40, 0.3), rng.normal(scale=0.05, size=40)])
    active = active_units_of(mu)
    assert active.count == 1 and active.threshold == 0.01
    np.testing.assert_allclose(active.variances, mu.var(axis=0), rtol=1e-5, atol=1e-12)  # population variance
    assert active_units_of(mu, threshold=1e-4).count == 2
    assert active_units_of(mu[:1]).count == 0  # one image: nothing varies


def test_the_model_calling_metrics_are_the_ones_on_its_codes(trained, data):
    """One formula: measuring a model on images equals measuring its codes of them (an atlas's)."""
    mu, logvar = encode(trained, data.test_x)
    np.testing.assert_array_equal(kl_per_dimension(trained, data.test_x), kl_per_dimension_of(mu, logvar))
    np.testing.assert_array_equal(active_units(trained, data.test_x).variances, active_units_of(mu).variances)
    on_model, on_codes = latent_health(trained, data.test_x), latent_health_of(mu, logvar)
    np.testing.assert_array_equal(on_model.kl_per_dim, on_codes.kl_per_dim)
    assert on_model.warnings == on_codes.warnings
    parts = per_image_elbo(trained, data.test_x)
    assert elbo_means(parts.recon, parts.kl) == evaluate_elbo(trained, data.test_x)
    summary = model_summary_of(mu=mu, recon=parts.recon, kl=parts.kl, parameters=trained.num_parameters())
    assert summary == model_summary(trained, data.test_x)


def test_elbo_means_of_per_image_parts():
    means = elbo_means(np.array([10.0, 20.0]), np.array([1.0, 3.0]))
    assert means == pytest.approx((17.0, 15.0, 2.0))
    assert elbo_means(np.zeros(0), np.zeros(0)) == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="KL terms"):
        elbo_means(np.zeros(3), np.zeros(2))


def test_dims_by_kl_orders_most_informative_first():
    kl = np.array([0.5, 3.0, 0.0, 3.0, 1.0])
    assert dims_by_kl(kl).tolist() == [1, 3, 4, 0, 2]  # ties keep index order
    assert dims_by_kl(kl, top=2).tolist() == [1, 3]
    assert dims_by_kl(kl, top=99).tolist() == [1, 3, 4, 0, 2]
    with pytest.raises(ValueError, match="top must be"):
        dims_by_kl(kl, top=0)
    with pytest.raises(ValueError, match="at least one"):
        dims_by_kl(np.array([]))


# Aggregate posterior against the prior -------------------------------------------------------------------


def test_standard_normal_pdf_matches_torch():
    z = np.linspace(-5, 5, 101)
    expected = torch.distributions.Normal(0.0, 1.0).log_prob(torch.from_numpy(z)).exp().numpy()
    np.testing.assert_allclose(standard_normal_pdf(z), expected, rtol=1e-10)
    grid = np.linspace(-10, 10, 20001)
    assert np.trapezoid(standard_normal_pdf(grid), grid) == pytest.approx(1.0, abs=1e-6)


def test_mu_histograms_are_densities_over_a_span_covering_prior_and_data():
    rng = np.random.default_rng(0)
    mu = np.column_stack([rng.normal(0, 1, 2000), rng.normal(0, 0.01, 2000), rng.normal(9, 0.5, 2000)])
    hists = mu_histograms(mu, dims=[2, 0, 1], bins=30)
    assert [h.dim for h in hists] == [2, 0, 1]
    for h in hists:
        assert h.edges.shape == (31,) and h.density.shape == (30,)
        assert (h.density * np.diff(h.edges)).sum() == pytest.approx(1.0)
        assert h.edges[0] <= -4.0 and h.edges[-1] >= 4.0
        np.testing.assert_allclose(h.prior_pdf, standard_normal_pdf(h.prior_z))
    far, matched, spike = hists
    assert far.edges[-1] >= np.percentile(mu[:, 2], 99.5) and far.mean == pytest.approx(9, abs=0.1)
    assert matched.std == pytest.approx(1.0, abs=0.05)
    centres = (spike.edges[:-1] + spike.edges[1:]) / 2
    near_zero = np.abs(centres) < 0.3
    # An unused dimension is one spike at 0: all its mass in the bins next to 0.
    assert (spike.density * np.diff(spike.edges))[near_zero].sum() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="outside"):
        mu_histograms(mu, dims=[3])
    with pytest.raises(ValueError, match="bins"):
        mu_histograms(mu, dims=[0], bins=1)


# Traversals ---------------------------------------------------------------------------------------------


def _copy(model):
    twin = tiny_model(model.config)
    twin.load_state_dict(model.state_dict())
    return twin.eval()


def test_traversing_a_zero_kl_dimension_over_the_data_range_changes_little(trained, data):
    model = _switch_off(_copy(trained), DEAD, decoder_too=False)
    mu = encode(model, data.test_x).mu.numpy()
    kl = latent_health(model, data.test_x).kl_per_dim
    assert kl[DEAD] == pytest.approx(0.0, abs=1e-7)
    live = int(dims_by_kl(kl)[0])
    ranges = traversal_ranges(mu, mu[0], steps=7, width=2.0)
    images = traversal(model, mu[0], dims=[DEAD, live], values=ranges[[DEAD, live]])
    assert images.shape == (2, 7, 1, 28, 28)
    change = (images[:, -1] - images[:, 0]).abs().mean(dim=(1, 2, 3))
    assert change[0] < 1e-3
    assert change[1] > 20 * change[0]


def test_a_collapsed_dimension_changes_nothing_even_over_the_prior_range(trained, data):
    model = _switch_off(_copy(trained), DEAD, decoder_too=True)
    z = encode(model, data.test_x[:1]).mu[0]
    images = traversal(model, z, dims=[DEAD], values=np.linspace(-3, 3, 9))
    assert (images[0] - images[0, 0]).abs().max() < 1e-6


def _tile(img: Image.Image, left: int, top: int, w: int, h: int) -> np.ndarray:
    return np.asarray(img.crop((left, top, left + w, top + h)))


def test_traversal_sheet_places_each_step_in_its_cell_and_makes_room_for_labels():
    gen = torch.Generator().manual_seed(0)
    images = torch.rand((3, 5, 1, 8, 8), generator=gen)
    plain = traversal_sheet(images, scale=2)
    assert plain.size == (5 * 16 + 6 * 2, 3 * 16 + 4 * 2)
    sheet = traversal_sheet(
        images, row_labels=["z0 · KL 1.00", "z1", "z2"], column_labels=list("abcde"), scale=2
    )
    left, top = sheet.width - plain.width, sheet.height - plain.height
    assert left > 20 and top > 10
    expected = to_uint8(images[1, 3, 0]).repeat(2, axis=0).repeat(2, axis=1)
    np.testing.assert_array_equal(_tile(sheet, left + 2 + 3 * 18, top + 2 + 1 * 18, 16, 16), expected)
    assert np.asarray(sheet)[:top].min() < 128  # the column labels drew dark text
    with pytest.raises(ValueError, match="row labels"):
        traversal_sheet(images, row_labels=["only one"])
    with pytest.raises(ValueError, match="rows, steps"):
        traversal_sheet(images[0])


def test_traversal_frames_sweep_every_row_at_once():
    gen = torch.Generator().manual_seed(1)
    images = torch.rand((5, 4, 1, 6, 6), generator=gen)
    frames = traversal_frames(images, scale=1)
    assert len(frames) == 4
    assert len({f.size for f in frames}) == 1
    # ceil(sqrt(5)) = 3 columns, 2 rows of 6-pixel tiles, 2-pixel gaps.
    assert frames[0].size == (3 * 8 + 2, 2 * 8 + 2)
    for j, frame in enumerate(frames):
        for r in range(5):
            gr, gc = divmod(r, 3)
            tile = _tile(frame, 2 + gc * 8, 2 + gr * 8, 6, 6)
            np.testing.assert_array_equal(tile, to_uint8(images[r, j, 0]))
    labelled = traversal_frames(images, labels=[f"z{i}" for i in range(5)], scale=2, ncols=5)
    assert labelled[0].width == 5 * 14 + 2 and labelled[0].height > 14 + 2


def test_labelled_grid_puts_each_image_under_its_label():
    images = torch.rand((5, 3, 4, 6))
    grid = labelled_grid(images, labels=list("abcde"), ncols=2, scale=2, font_size=10)
    assert grid.mode == "RGB" and grid.size == (2 * 14 + 2, 3 * (8 + 16 + 2) + 2)
    tile = np.asarray(grid)[2 + 26 * 2 + 16 : 2 + 26 * 2 + 16 + 8, 2 : 2 + 12]  # image 4: row 2, column 0
    expected = to_uint8(images[4]).transpose(1, 2, 0).repeat(2, axis=0).repeat(2, axis=1)
    np.testing.assert_array_equal(tile, expected)
    assert labelled_grid(images, ncols=5, scale=1).size == (5 * 8 + 2, 4 + 2 + 2)
    with pytest.raises(ValueError, match="labels"):
        labelled_grid(images, labels=["a"], ncols=2)


def test_labels_fall_back_to_ascii_without_a_unicode_font(monkeypatch):
    import vae_core.export as export

    monkeypatch.setattr(export, "_UNICODE_FONTS", ())
    sheet = traversal_sheet(
        torch.rand((1, 3, 1, 4, 4)), row_labels=["z0 · KL 1"], column_labels=["−2σ", "μ", "+2σ"]
    )
    assert sheet.height > 8


def test_traversal_gif_plays_forwards_then_back():
    images = torch.linspace(0, 1, 6).view(1, 6, 1, 1, 1).expand(2, 6, 1, 4, 4)
    gif = Image.open(io.BytesIO(traversal_gif(images, labels=["z0", "z1"], scale=3)))
    assert gif.format == "GIF" and gif.n_frames == 6 + 4


# Evaluation ---------------------------------------------------------------------------------------------


def test_literature_references_are_burda_2015():
    assert [r.nats for r in LITERATURE_NLL] == [86.76, 84.78]
    assert all("5000" in r.setting and "binarized" in r.setting for r in LITERATURE_NLL)


def test_iwae_cost_is_images_times_samples():
    cost = iwae_cost(n=200, k=50, seconds_per_decode=1e-4)
    assert cost.decodes == 10_000 and cost.seconds == pytest.approx(1.0)
    with pytest.raises(ValueError, match="k >= 1"):
        iwae_cost(n=10, k=0, seconds_per_decode=1e-4)


def test_decode_seconds_is_a_positive_rate(trained, data):
    rate = decode_seconds(trained, data.test_x, decodes=256)
    assert 0 < rate < 0.1 and math.isfinite(rate)
    with pytest.raises(ValueError, match="at least one image"):
        decode_seconds(trained, data.test_x[:0])


def test_rank_typicality_returns_both_ends():
    scores = np.array([5.0, 1.0, 9.0, 3.0, 7.0])
    ranking = rank_typicality(scores, k=2)
    assert ranking.most_typical.tolist() == [1, 3]
    assert ranking.least_typical.tolist() == [2, 4]
    assert rank_typicality(scores, k=10).most_typical.tolist() == [1, 3, 0, 4, 2]
    with pytest.raises(ValueError, match="NaN"):
        rank_typicality(np.array([1.0, np.nan]), k=1)


# Comparison ---------------------------------------------------------------------------------------------


def test_num_parameters_includes_frozen_parameters(trained, data):
    model = tiny_model(ModelConfig(arch="mlp", latent_dim=4, hidden=(32,)))
    expected = sum(p.numel() for p in model.parameters())
    for p in model.parameters():
        p.requires_grad_(False)
    assert model.num_parameters() == expected > 0
    summary = model_summary(trained, data.test_x)
    assert summary.latent_dim == 4 and summary.parameters == expected
    assert summary.elbo.total == pytest.approx(summary.elbo.recon + summary.elbo.kl)
    assert 0 <= summary.active <= 4


# Export -------------------------------------------------------------------------------------------------


def test_exported_vectors_match_the_latents_and_the_config_points_at_real_files(tmp_path):
    rng = np.random.default_rng(2)
    latents = rng.normal(size=(10, 3))
    labels = np.arange(10) % 2
    images = torch.rand((10, 1, 8, 8))
    files = export_projector(tmp_path, latents=latents, labels=labels, images=images, class_names=("a", "b"))
    rows = np.loadtxt(files.vectors, delimiter="\t", ndmin=2)
    np.testing.assert_allclose(rows, latents, rtol=1e-8)
    meta = files.metadata.read_text().splitlines()
    assert meta[0] == "index\tlabel\tclass" and meta[4] == "3\t1\tb"
    config = files.config.read_text()
    paths = re.findall(r'(?:tensor|metadata|image)_path: "([^"]+)"', config)
    assert len(paths) == 3 and all((tmp_path / p).is_file() for p in paths)
    archive = zipfile.ZipFile(
        io.BytesIO(export_zip(latents=latents, labels=labels, images=images, class_names=()))
    )
    assert {VECTORS_FILE, METADATA_FILE, CONFIG_FILE} <= set(archive.namelist())
    assert all(p in archive.namelist() for p in paths)
    csv_rows = latents_csv(latents, labels).splitlines()
    assert csv_rows[0] == "index,label,z0,z1,z2" and len(csv_rows) == 11
    np.testing.assert_allclose([float(v) for v in csv_rows[1].split(",")[2:]], latents[0], rtol=1e-8)
