"""Dataset metrics: IWAE bound, active units, per-dimension KL, percentiles."""

import numpy as np
import pytest
import torch

from tests.helpers import random_splits, tiny_model
from vae_core.config import ModelConfig, TrainConfig
from vae_core.health import active_units, collapse_warnings, kl_per_dimension
from vae_core.losses import kl_divergence
from vae_core.metrics import elbo_breakdown, evaluate_elbo, iwae_nll, per_image_elbo, percentile_of
from vae_core.training import fit


@pytest.fixture(scope="module")
def trained():
    data = random_splits(n_train=256, n_test=48)
    model = tiny_model(ModelConfig(arch="mlp", latent_dim=3, hidden=(32,)))
    fit(model, data, TrainConfig(dataset="random", epochs=3, batch_size=32, seed=0, device="cpu"))
    return model, data


def test_iwae_with_k1_equals_the_elbo_in_expectation(trained):
    model, data = trained
    x = data.test_x[:16]
    elbo = evaluate_elbo(model, x, samples=200).total
    iwae_k1 = np.mean([iwae_nll(model, x, k=1, seed=s) for s in range(200)])
    assert iwae_k1 == pytest.approx(elbo, rel=0.01)


def test_iwae_tightens_as_k_grows(trained):
    model, data = trained
    x = data.test_x[:16]
    k1 = np.mean([iwae_nll(model, x, k=1, seed=s) for s in range(20)])
    k50 = iwae_nll(model, x, k=50)
    k500 = iwae_nll(model, x, k=500)
    assert k500 <= k50 + 0.05 and k50 < k1


def test_iwae_does_not_depend_on_how_it_is_batched(trained):
    model, data = trained
    x = data.test_x[:10]
    a = iwae_nll(model, x, k=64, seed=3, batch_size=10)
    b = iwae_nll(model, x, k=64, seed=3, batch_size=10)
    assert a == pytest.approx(b)
    c = iwae_nll(model, x, k=64, seed=3, batch_size=3)
    assert c == pytest.approx(a, abs=1.0)  # same estimator, different draws


def test_iwae_rejects_k_below_one(trained):
    with pytest.raises(ValueError, match="k must be"):
        iwae_nll(trained[0], trained[1].test_x[:2], k=0)


def test_kl_per_dimension_sums_to_the_mean_kl(trained):
    model, data = trained
    per_dim = kl_per_dimension(model, data.test_x)
    mu, logvar = model.encode(data.test_x.float() / 255)
    assert per_dim.shape == (3,)
    assert per_dim.sum() == pytest.approx(kl_divergence(mu, logvar).mean().item(), rel=1e-4)
    assert evaluate_elbo(model, data.test_x).kl == pytest.approx(per_dim.sum(), rel=1e-4)


def test_active_units_counts_dimensions_whose_mean_varies():
    model = tiny_model(ModelConfig(arch="mlp", latent_dim=4, hidden=(16,)))
    with torch.no_grad():
        model.to_mu.weight[2:] = 0  # dims 2 and 3 ignore the input
        model.to_mu.weight[:2] *= 10
    result = active_units(model, random_splits().test_x)
    assert result.count == 2
    assert result.variances[2] == pytest.approx(0) and result.variances[0] > 0.01


def test_per_image_elbo_is_reproducible_and_ranks_an_outlier_last(trained):
    model, data = trained
    x = torch.cat([data.test_x[:20], torch.full((1, 1, 28, 28), 255, dtype=torch.uint8)])
    scores = per_image_elbo(model, x, seed=1).total
    assert np.array_equal(scores, per_image_elbo(model, x, seed=1).total)
    assert scores.argmax() == 20


def test_an_images_elbo_does_not_depend_on_its_batch_or_neighbours(trained):
    """The one estimator: the same image gets the same number alone, in any batch, at any position."""
    model, data = trained
    x = data.test_x[:30]
    together = per_image_elbo(model, x, batch_size=7)
    alone = np.concatenate([per_image_elbo(model, x[i : i + 1]).total for i in (0, 13, 29)])
    np.testing.assert_allclose(alone, together.total[[0, 13, 29]], rtol=1e-5)
    shuffled = per_image_elbo(model, x.flip(0), batch_size=11).total[::-1]
    np.testing.assert_allclose(shuffled, together.total, rtol=1e-5)
    np.testing.assert_allclose(together.total, together.recon + together.kl, rtol=1e-6)


def test_evaluate_elbo_is_the_mean_of_the_per_image_scores(trained):
    model, data = trained
    parts = per_image_elbo(model, data.test_x)
    result = evaluate_elbo(model, data.test_x)
    assert result.total == pytest.approx(float(parts.total.mean()), rel=1e-5)
    assert result.kl == pytest.approx(float(parts.kl.mean()), rel=1e-5)


def test_collapse_warning_names_the_remedies():
    from vae_core.health import ActiveUnits

    collapsed = collapse_warnings(np.array([0.01, 0.02]), ActiveUnits(0, np.zeros(2), 0.01))
    assert collapsed and "warm-up" in collapsed[0] and "beta" in collapsed[0]
    healthy = collapse_warnings(np.array([3.0, 2.0]), ActiveUnits(2, np.ones(2), 0.01))
    assert healthy == ()


def test_percentile_of():
    ref = np.arange(100)
    assert percentile_of(50, ref) == 50.0
    assert percentile_of(-1, ref) == 0.0
    assert percentile_of(1000, ref) == 100.0
    with pytest.raises(ValueError):
        percentile_of(1, np.array([]))


def test_elbo_breakdown_is_consistent(trained):
    model, data = trained
    b = elbo_breakdown(model, data.test_x[0], seed=3)
    assert b.mu.shape == b.logvar.shape == b.eps.shape == b.z.shape == (3,)
    assert np.allclose(b.z, b.mu + np.exp(0.5 * b.logvar) * b.eps, atol=1e-6)
    assert b.elbo == pytest.approx(-b.recon - b.kl)
    assert b.kl > 0 and b.x_hat.shape == (1, 28, 28)
    mu, logvar = model.encode(data.test_x[:1].float() / 255)
    assert b.kl == pytest.approx(kl_divergence(mu, logvar).item(), rel=1e-5)
    assert np.array_equal(elbo_breakdown(model, data.test_x[0], seed=3).z, b.z)
