"""Generate images of a chosen class from a trained VAE, without retraining it.

The prior N(0, I) mixes every class; the codes the encoder gives one class's images (its
share of the aggregate posterior) are a region of their own. Fitting a Gaussian mixture to
those codes and decoding samples of it gives "more 7s": it samples the aggregate posterior
rather than the prior, as pythae's GaussianMixtureSampler does (the ex-post density estimation
of Ghosh et al., "From Variational to Deterministic Autoencoders", ICLR 2020). A simple
classifier on the codes (the 10 nearest atlas codes vote) says how many samples land among
the asked class, beside the same share for prior samples.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from sklearn.mixture import GaussianMixture
from sklearn.neighbors import KNeighborsClassifier
from threadpoolctl import threadpool_limits

Covariance = Literal["full", "diag"]
MIN_PER_COMPONENT = 20  # codes each mixture component should have to itself
REG_COVAR = 1e-4  # added to the covariances' diagonals; codes are of order 1
HOLD_OUT = 0.2
NEIGHBOURS = 10  # votes of the code classifier (more accurate than a logistic regression on 2-D codes)


@dataclass(frozen=True, eq=False)
class ClassMixture:
    """A Gaussian mixture fitted to one class's codes, in a form that samples reproducibly.

    ``weights`` (K,), ``means`` (K, D), ``scales`` (K, D, D) lower-triangular: component k
    draws mean_k + scales_k @ eps; ``covariance`` says how the fit was constrained; ``n``
    is how many codes it saw.
    """

    label: int
    weights: np.ndarray
    means: np.ndarray
    scales: np.ndarray
    covariance: Covariance
    n: int


def choose_covariance(n: int, d: int, components: int) -> Covariance:
    """Return "full" when each component has at least 2 (D + 1) codes, else "diag".

    With fewer codes than D + 1 a full covariance is singular; twice that keeps its estimate
    well away from it. Whether a full covariance is worth its D (D + 1) / 2 numbers is then
    for BIC to say (``fit_class_mixture``).
    """
    if n < 1 or d < 1 or components < 1:
        raise ValueError(f"n, d and components must be >= 1, got {n}, {d}, {components}")
    return "full" if n / components >= 2 * (d + 1) else "diag"


def fit_class_mixture(
    latents: np.ndarray,
    *,
    label: int,
    components: int = 3,
    covariance: Covariance | None = None,
    seed: int = 0,
) -> ClassMixture:
    """Fit a Gaussian mixture (scikit-learn, seeded) to one class's codes.

    With ``covariance`` None, every mixture of 1 to ``components`` components with diagonal
    covariances, and with full ones where ``choose_covariance`` allows them, is fitted, and the
    one of lowest BIC (Schwarz 1978) is kept: on the shipped models that is the mixture whose
    samples a classifier most often puts in the asked class.

    Args:
        latents: the class's codes (N, D), N >= 2.
        label: the class these codes belong to.
        components: the most mixture components; fewer when there are under ``MIN_PER_COMPONENT``
            codes per component.
        covariance: "full" or "diag" with exactly min(``components``, N // 20) components; None chooses.
        seed: seeds the fits' initialisation.

    Returns:
        ClassMixture.
    """
    z = np.asarray(latents, dtype=np.float64)
    if z.ndim != 2 or len(z) < 2:
        raise ValueError(
            f"need at least 2 codes (N, D) of class {label} to fit a mixture, got shape {z.shape}"
        )
    if not np.isfinite(z).all():
        raise ValueError("the codes contain NaN or inf")
    if components < 1:
        raise ValueError(f"components must be >= 1, got {components}")
    if covariance not in (None, "full", "diag"):
        raise ValueError(f'covariance must be "full", "diag" or None, got {covariance!r}')
    n, d = z.shape
    most = max(1, min(components, n // MIN_PER_COMPONENT))
    if covariance is not None:
        candidates = [(most, covariance)]
    else:
        candidates = [(k, "diag") for k in range(1, most + 1)]
        candidates += [(k, "full") for k in range(1, most + 1) if choose_covariance(n, d, k) == "full"]
    # One thread: these fits are small, and on a busy machine more threads only contend (50x slower).
    with threadpool_limits(limits=1):
        fits = [
            GaussianMixture(k, covariance_type=kind, reg_covar=REG_COVAR, random_state=seed).fit(z)
            for k, kind in candidates
        ]
        gmm = min(fits, key=lambda g: g.bic(z))
    kind = gmm.covariance_type
    if kind == "full":
        scales = np.linalg.cholesky(gmm.covariances_)
    else:
        scales = np.stack([np.diag(np.sqrt(c)) for c in gmm.covariances_])
    return ClassMixture(int(label), gmm.weights_.copy(), gmm.means_.copy(), scales, kind, n)


def fit_class_mixtures(
    latents: np.ndarray, labels: np.ndarray, *, components: int = 3, seed: int = 0
) -> dict[int, ClassMixture]:
    """Fit one ``fit_class_mixture`` per class that has at least 2 codes.

    Args:
        latents: codes (N, D), e.g. an atlas's mu.
        labels: int (N,) class of each code.
        components: the most components per class.
        seed: seeds every fit.

    Returns:
        {label: ClassMixture}, in label order.
    """
    z, y = _check_labelled(latents, labels)
    return {
        int(c): fit_class_mixture(z[y == c], label=int(c), components=components, seed=seed)
        for c in np.unique(y)
        if (y == c).sum() >= 2
    }


def sample_mixture(mixture: ClassMixture, *, n: int, seed: int, temperature: float = 1.0) -> np.ndarray:
    """Draw ``n`` codes from a class's mixture; the same seed gives the same codes.

    Args:
        mixture: from ``fit_class_mixture``.
        n: codes to draw, >= 1.
        seed: seeds the choice of components and the noise.
        temperature: scales every component's spread (the reduced temperature of Kingma & Dhariwal,
            "Glow", 2018): 1 samples the fit, below 1 stays nearer the components' centres (more
            typical images, less variety), 0 gives the centres themselves.

    Returns:
        float32 (n, D).
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if not 0.0 <= temperature <= 1.0:
        raise ValueError(f"temperature must be in [0, 1], got {temperature}")
    rng = np.random.default_rng(seed)
    which = rng.choice(len(mixture.weights), size=n, p=mixture.weights / mixture.weights.sum())
    eps = temperature * rng.standard_normal((n, mixture.means.shape[1]))
    z = mixture.means[which] + np.einsum("nij,nj->ni", mixture.scales[which], eps)
    return z.astype(np.float32)


def sample_prior(latent_dim: int, *, n: int, seed: int, temperature: float = 1.0) -> np.ndarray:
    """Draw ``n`` codes from the prior N(0, I), or N(0, temperature^2 I), with a fixed seed.

    Returns:
        float32 (n, latent_dim).
    """
    if n < 1 or latent_dim < 1:
        raise ValueError(f"n and latent_dim must be >= 1, got {n} and {latent_dim}")
    if not 0.0 <= temperature <= 1.0:
        raise ValueError(f"temperature must be in [0, 1], got {temperature}")
    return (temperature * np.random.default_rng(seed).standard_normal((n, latent_dim))).astype(np.float32)


@dataclass(frozen=True, eq=False)
class CodeClassifier:
    """A k-nearest-neighbour vote from codes to classes, and its accuracy on held-out codes."""

    model: KNeighborsClassifier
    held_out_accuracy: float
    classes: tuple[int, ...]

    def predict(self, z: np.ndarray) -> np.ndarray:
        """Return the class of each code (N, D): int64 (N,)."""
        with threadpool_limits(limits=1):
            return self.model.predict(np.asarray(z, dtype=np.float64)).astype(np.int64)

    def share(self, z: np.ndarray, label: int) -> float:
        """Return the fraction of codes (N, D) this classifier assigns to ``label``, in [0, 1]."""
        return float((self.predict(z) == label).mean())

    def shares(self, z: np.ndarray) -> np.ndarray:
        """Return the fraction of codes (N, D) assigned to each of ``classes``: float64 (K,), summing to 1."""
        predicted = self.predict(z)
        return np.array([(predicted == c).mean() for c in self.classes], dtype=np.float64)


def fit_code_classifier(latents: np.ndarray, labels: np.ndarray, *, seed: int = 0) -> CodeClassifier:
    """Fit a 10-nearest-neighbour vote from codes to labels; measure it on a held-out fifth, then refit on all.

    Args:
        latents: codes (N, D).
        labels: int (N,) with at least two classes.
        seed: seeds the held-out split.

    Returns:
        CodeClassifier(model, held_out_accuracy, classes).
    """
    z, y = _check_labelled(latents, labels)
    classes = np.unique(y)
    if len(classes) < 2:
        raise ValueError("a classifier needs images of at least two classes; these codes all have one")
    order = np.random.default_rng(seed).permutation(len(z))
    cut = int(round(len(z) * HOLD_OUT))
    test, train = order[:cut], order[cut:]
    accuracy = float("nan")
    with threadpool_limits(limits=1):
        if cut > 0 and len(train) > 0:
            probe = KNeighborsClassifier(min(NEIGHBOURS, len(train))).fit(z[train], y[train])
            accuracy = float((probe.predict(z[test]) == y[test]).mean())
        model = KNeighborsClassifier(min(NEIGHBOURS, len(z))).fit(z, y)
    return CodeClassifier(model, accuracy, tuple(int(c) for c in classes))


def _check_labelled(latents: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    z = np.asarray(latents, dtype=np.float64)
    y = np.asarray(labels).reshape(-1).astype(np.int64)
    if z.ndim != 2 or len(z) != len(y):
        raise ValueError(f"expected codes (N, D) and labels (N,), got shapes {z.shape} and {y.shape}")
    if len(z) == 0:
        raise ValueError("there are no codes")
    if not np.isfinite(z).all():
        raise ValueError("the codes contain NaN or inf")
    return z, y
