"""Attribute directions and analogies in latent space: pure maths over codes, no model.

An attribute vector is the difference between the mean codes of two groups of images
(Liu, Jun, Li & Heer, "Latent Space Cartography: Visual Analysis of Vector Space Embeddings",
EuroVis 2019: attribute vectors between two groups, codes projected onto them; the same
construction as White, "Sampling Generative Networks", 2016). Moving a code along it by ``t``
adds ``t`` times that difference: t = 0 is the code itself, t = 1 moves it by as much as the
group means differ. How well the direction separates the two groups is read off the
projections of their codes onto it, which Liu et al. show as histograms.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

HIST_BINS = 30
MIN_HELD_OUT = 4  # images per group needed for a split-half score


class Direction(NamedTuple):
    """The direction from group A's mean code to group B's.

    ``mean_a`` and ``mean_b`` are float64 (D,); ``vector`` = mean_b - mean_a; ``unit`` is
    ``vector`` / ``length``; ``length`` = |vector|; ``sizes`` the two groups' image counts.
    """

    mean_a: np.ndarray
    mean_b: np.ndarray
    vector: np.ndarray
    unit: np.ndarray
    length: float
    sizes: tuple[int, int]


class Separation(NamedTuple):
    """How well projections onto a direction tell two groups apart.

    ``auc`` is P(a random B image projects further along than a random A image), ties
    counting one half: 0.5 is chance, 1.0 perfect. ``fisher`` is (m_B - m_A)^2 / (var_A + var_B).
    ``overlap`` is the shared area of the two normalised histograms, in [0, 1] (0: disjoint).
    ``held_out_auc`` is the AUC of directions fitted on one half of each group and scored on
    the other half (averaged over the two halves), or None when a group has under 4 images.
    """

    auc: float
    fisher: float
    overlap: float
    held_out_auc: float | None


def _as_latents(latents: np.ndarray | torch.Tensor, *, name: str) -> np.ndarray:
    if isinstance(latents, torch.Tensor):
        latents = latents.detach().cpu().numpy()
    latents = np.asarray(latents, dtype=np.float64)
    if latents.ndim != 2 or latents.shape[1] < 1:
        raise ValueError(f"{name} must be codes (N, D), got shape {latents.shape}")
    if len(latents) == 0:
        raise ValueError(f"{name} is empty: pick at least one image for each group")
    if not np.isfinite(latents).all():
        raise ValueError(f"{name} contains NaN or inf")
    return latents


def _as_code(z: np.ndarray | torch.Tensor, d: int, *, name: str) -> np.ndarray:
    if isinstance(z, torch.Tensor):
        z = z.detach().cpu().numpy()
    z = np.asarray(z, dtype=np.float64)
    if z.shape not in ((d,), (1, d)):
        raise ValueError(f"{name} must be one code of {d} dimensions, got shape {z.shape}")
    if not np.isfinite(z).all():
        raise ValueError(f"{name} contains NaN or inf")
    return z.reshape(d)


def attribute_direction(
    latents_a: np.ndarray | torch.Tensor, latents_b: np.ndarray | torch.Tensor
) -> Direction:
    """Return the direction from the mean code of group A to that of group B (Liu et al. 2019).

    Args:
        latents_a: group A's codes (N_A, D), N_A >= 1.
        latents_b: group B's codes (N_B, D), N_B >= 1.

    Returns:
        Direction(mean_a, mean_b, vector, unit, length, sizes).

    Raises:
        ValueError: A group is empty, the dimensions differ, or the two means coincide.
    """
    a = _as_latents(latents_a, name="group A")
    b = _as_latents(latents_b, name="group B")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"the groups' codes differ in dimension: {a.shape[1]} and {b.shape[1]}")
    mean_a, mean_b = a.mean(axis=0), b.mean(axis=0)
    vector = mean_b - mean_a
    length = float(np.linalg.norm(vector))
    if length <= 1e-12:
        raise ValueError("the two groups have the same mean code, so there is no direction between them")
    return Direction(mean_a, mean_b, vector, vector / length, length, (len(a), len(b)))


def projections(latents: np.ndarray | torch.Tensor, direction: Direction) -> np.ndarray:
    """Return where codes lie along a direction, in units of it: group A's mean at 0, group B's at 1.

    The projection of z is (z - mean_a) . vector / |vector|^2, the same scale as ``move``'s t.

    Args:
        latents: codes (N, D).
        direction: from ``attribute_direction``.

    Returns:
        float64 (N,).
    """
    z = _as_latents(latents, name="codes")
    if z.shape[1] != len(direction.vector):
        raise ValueError(f"codes have {z.shape[1]} dimensions, the direction has {len(direction.vector)}")
    return (z - direction.mean_a) @ direction.vector / direction.length**2


def auc(scores_a: np.ndarray, scores_b: np.ndarray) -> float:
    """Return P(score_B > score_A) + P(score_B = score_A) / 2 over all pairs (the Mann-Whitney AUC).

    Args:
        scores_a: (N_A,) scores of group A, N_A >= 1.
        scores_b: (N_B,) scores of group B, N_B >= 1.

    Returns:
        A number in [0, 1]; 0.5 means the scores do not tell the groups apart.
    """
    a = np.sort(np.asarray(scores_a, dtype=np.float64).reshape(-1))
    b = np.asarray(scores_b, dtype=np.float64).reshape(-1)
    if len(a) == 0 or len(b) == 0:
        raise ValueError("both groups need at least one score")
    below = np.searchsorted(a, b, side="left")  # A scores strictly below each B score
    ties = np.searchsorted(a, b, side="right") - below
    return float((below + 0.5 * ties).sum() / (len(a) * len(b)))


def histogram_overlap(scores_a: np.ndarray, scores_b: np.ndarray, *, bins: int = HIST_BINS) -> float:
    """Return the shared area of the two groups' normalised histograms on common bins, in [0, 1]."""
    a = np.asarray(scores_a, dtype=np.float64).reshape(-1)
    b = np.asarray(scores_b, dtype=np.float64).reshape(-1)
    if len(a) == 0 or len(b) == 0:
        raise ValueError("both groups need at least one score")
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    edges = np.histogram_bin_edges(np.concatenate([a, b]), bins=bins)
    pa = np.histogram(a, bins=edges)[0] / len(a)
    pb = np.histogram(b, bins=edges)[0] / len(b)
    return float(np.minimum(pa, pb).sum())


def separation(
    latents_a: np.ndarray | torch.Tensor, latents_b: np.ndarray | torch.Tensor, *, bins: int = HIST_BINS
) -> Separation:
    """Score how well the direction between two groups separates them (Liu et al. 2019).

    Scores on the codes that defined the direction flatter it (in many dimensions a few
    codes are always separable), so a split-half score is given too: the direction is
    fitted on every other image of each group and scored on the rest, and the other way round.

    Args:
        latents_a: group A's codes (N_A, D).
        latents_b: group B's codes (N_B, D).
        bins: histogram bins for ``overlap``.

    Returns:
        Separation(auc, fisher, overlap, held_out_auc).
    """
    a = _as_latents(latents_a, name="group A")
    b = _as_latents(latents_b, name="group B")
    direction = attribute_direction(a, b)
    pa, pb = projections(a, direction), projections(b, direction)
    spread = pa.var() + pb.var()
    fisher = float((pb.mean() - pa.mean()) ** 2 / spread) if spread > 0 else float("inf")
    held_out = None
    if min(len(a), len(b)) >= MIN_HELD_OUT:
        scores = []
        for fit, test in ((0, 1), (1, 0)):
            try:
                half = attribute_direction(a[fit::2], b[fit::2])
            except ValueError:
                continue
            scores.append(auc(projections(a[test::2], half), projections(b[test::2], half)))
        held_out = float(np.mean(scores)) if scores else None
    return Separation(auc(pa, pb), fisher, histogram_overlap(pa, pb, bins=bins), held_out)


def move(z: np.ndarray | torch.Tensor, direction: Direction, *, t: float) -> np.ndarray:
    """Return the code ``z`` moved along ``direction`` by ``t``: z + t (mean_b - mean_a).

    Args:
        z: one code (D,) or (1, D).
        direction: from ``attribute_direction``.
        t: how far; 0 returns ``z`` unchanged, 1 moves it by the full difference of the means.

    Returns:
        float64 (D,).
    """
    code = _as_code(z, len(direction.vector), name="the code to move")
    if not np.isfinite(t):
        raise ValueError(f"t must be a finite number, got {t}")
    return code + float(t) * direction.vector


def walk(z: np.ndarray | torch.Tensor, direction: Direction, *, ts: np.ndarray) -> np.ndarray:
    """Return ``z`` moved by each of ``ts`` along ``direction``: the codes of a strip of images.

    Args:
        z: one code (D,) or (1, D).
        direction: from ``attribute_direction``.
        ts: (T,) finite values of t, T >= 1.

    Returns:
        float64 (T, D); row i is ``move(z, direction, t=ts[i])``.
    """
    code = _as_code(z, len(direction.vector), name="the code to move")
    ts = np.asarray(ts, dtype=np.float64).reshape(-1)
    if len(ts) == 0 or not np.isfinite(ts).all():
        raise ValueError("ts must hold at least one finite value")
    return code[None, :] + ts[:, None] * direction.vector[None, :]


def analogy(
    a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor, c: np.ndarray | torch.Tensor
) -> np.ndarray:
    """Return the code a - b + c: the code that is to c as a is to b (White 2016; Mikolov et al. 2013 for words).

    Args:
        a: one code (D,).
        b: one code (D,).
        c: one code (D,).

    Returns:
        float64 (D,).
    """
    a = np.asarray(a.detach().cpu() if isinstance(a, torch.Tensor) else a, dtype=np.float64).reshape(-1)
    d = len(a)
    return _as_code(a, d, name="a") - _as_code(b, d, name="b") + _as_code(c, d, name="c")
