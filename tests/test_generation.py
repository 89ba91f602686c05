"""Class-conditional sampling from Gaussian mixtures fitted to codes, and the classifier that checks it."""

import numpy as np
import pytest

from vae_core.generation import (
    choose_covariance,
    fit_class_mixture,
    fit_class_mixtures,
    fit_code_classifier,
    sample_mixture,
    sample_prior,
)


def three_classes(*, d: int = 6, n: int = 150, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three well separated clusters of codes (std 0.3) at +-2.5 on different axes, labelled 0, 1, 2."""
    rng = np.random.default_rng(seed)
    centres = np.zeros((3, d))
    centres[0, 0], centres[1, 1], centres[2, 0] = 2.5, 2.5, -2.5
    z = np.concatenate([c + 0.3 * rng.standard_normal((n, d)) for c in centres])
    return z, np.repeat(np.arange(3), n)


@pytest.mark.parametrize("label", [0, 1, 2])
def test_mixture_samples_land_in_the_asked_class(label):
    z, y = three_classes()
    mixtures = fit_class_mixtures(z, y, components=3, seed=0)
    assert sorted(mixtures) == [0, 1, 2]
    classifier = fit_code_classifier(z, y)
    assert classifier.held_out_accuracy > 0.95
    samples = sample_mixture(mixtures[label], n=200, seed=1)
    assert samples.shape == (200, 6) and samples.dtype == np.float32
    assert classifier.share(samples, label) > 0.95
    shares = classifier.shares(samples)
    assert shares.shape == (3,) and shares.sum() == pytest.approx(1.0)
    assert shares[label] == classifier.share(samples, label)
    # The prior spreads over every class, and mostly over none of them: a much lower share.
    assert classifier.share(sample_prior(6, n=200, seed=1), label) < 0.7


def test_sampling_is_reproducible_and_the_seed_matters():
    z, y = three_classes()
    mixture = fit_class_mixture(z[y == 1], label=1, seed=0)
    again = fit_class_mixture(z[y == 1], label=1, seed=0)
    assert np.array_equal(sample_mixture(mixture, n=20, seed=7), sample_mixture(again, n=20, seed=7))
    assert not np.array_equal(sample_mixture(mixture, n=20, seed=7), sample_mixture(mixture, n=20, seed=8))
    assert np.array_equal(sample_prior(4, n=5, seed=3), sample_prior(4, n=5, seed=3))


def test_temperature_shrinks_the_spread_towards_the_centres():
    z, y = three_classes(n=400)
    mixture = fit_class_mixture(z[y == 0], label=0, components=1, seed=0)
    full, half = (sample_mixture(mixture, n=2000, seed=0, temperature=t) for t in (1.0, 0.5))
    np.testing.assert_allclose(half - mixture.means[0], 0.5 * (full - mixture.means[0]), atol=1e-5)
    cold = sample_mixture(mixture, n=3, seed=0, temperature=0.0)
    np.testing.assert_allclose(cold, np.repeat(mixture.means[:1], 3, axis=0), atol=1e-6)
    with pytest.raises(ValueError, match="temperature"):
        sample_mixture(mixture, n=3, seed=0, temperature=1.5)


def test_mixture_matches_the_class_statistics():
    z, y = three_classes(n=400)
    mixture = fit_class_mixture(z[y == 2], label=2, components=1, covariance="full", seed=0)
    samples = sample_mixture(mixture, n=4000, seed=0)
    np.testing.assert_allclose(samples.mean(0), z[y == 2].mean(0), atol=0.05)
    np.testing.assert_allclose(samples.std(0), z[y == 2].std(0), rtol=0.1)


def test_covariance_and_components_follow_the_amount_of_data():
    assert choose_covariance(1000, 16, 3) == "full"  # 333 codes per component >= 2 x 17
    assert choose_covariance(60, 16, 3) == "diag"
    assert choose_covariance(100, 64, 1) == "diag"  # fewer than 2 x 65 codes for a 64 x 64 covariance
    z, y = three_classes(d=64, n=30)
    few = fit_class_mixture(z[y == 0], label=0, components=5)
    assert len(few.weights) == 1 and few.covariance == "diag"  # 30 codes: one component, no full 64x64
    assert few.scales.shape == (1, 64, 64)
    np.testing.assert_allclose(few.weights.sum(), 1.0)


def test_bic_prefers_a_full_covariance_for_correlated_codes_and_two_components_for_two_blobs():
    rng = np.random.default_rng(0)
    line = rng.standard_normal((400, 1)) @ np.ones((1, 4)) + 0.05 * rng.standard_normal((400, 4))
    assert fit_class_mixture(line, label=0).covariance == "full"  # strongly correlated dimensions
    blobs = np.concatenate([rng.standard_normal((200, 3)) * 0.2 - 3, rng.standard_normal((200, 3)) * 0.2 + 3])
    mixture = fit_class_mixture(blobs, label=0, components=3)
    assert len(mixture.weights) == 2
    np.testing.assert_allclose(np.sort(mixture.means[:, 0]), [-3, 3], atol=0.1)


def test_bad_input_fails_with_a_message():
    z, y = three_classes()
    with pytest.raises(ValueError, match="at least two classes"):
        fit_code_classifier(z[y == 0], y[y == 0])
    with pytest.raises(ValueError, match="at least 2 codes"):
        fit_class_mixture(z[:1], label=0)
    with pytest.raises(ValueError, match="labels"):
        fit_class_mixtures(z, y[:-1])
    with pytest.raises(ValueError, match="n must be"):
        sample_mixture(fit_class_mixture(z[y == 0], label=0), n=0, seed=0)
    with pytest.raises(ValueError, match="covariance"):
        fit_class_mixture(z[y == 0], label=0, covariance="spherical")
    # A class with a single code gets no mixture (nothing to fit), the others do.
    keep = np.concatenate([np.flatnonzero(y != 2), np.flatnonzero(y == 2)[:1]])
    assert sorted(fit_class_mixtures(z[keep], y[keep])) == [0, 1]
