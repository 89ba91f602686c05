"""What a saved model carries beyond its weights: test figures and a sample of its evaluation data.

The sample (uint8 test images with labels) lets the app draw the latent map, pick
interpolation endpoints, find neighbours and rank anomalies with no dataset on disk.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from vae_core.atlas import build_atlas
from vae_core.checkpoints import Sample
from vae_core.config import TrainConfig
from vae_core.datasets import DatasetSplits
from vae_core.health import active_units
from vae_core.metrics import evaluate_elbo, iwae_nll
from vae_core.model import VAE
from vae_core.saving import save_checkpoint
from vae_core.timeline import Timeline
from vae_core.train_state import TrainState

SAMPLE_SIZE = 2000


def evaluation_sample(data: DatasetSplits, *, size: int = SAMPLE_SIZE, seed: int = 0) -> Sample:
    """Return a seeded random subset of the test split: uint8 images (n, C, H, W) and int64 labels (n,)."""
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(data.test_x), generator=gen)[: min(size, len(data.test_x))].sort().values
    return Sample(data.test_x[idx].clone(), data.test_y[idx].clone().long())


def test_metrics(
    model: VAE,
    x: torch.Tensor,
    *,
    nll_k: int = 100,
    nll_images: int | None = None,
    seed: int = 0,
    on_progress: Callable[[float], None] | None = None,
) -> dict[str, float]:
    """Return test ELBO parts, the importance-weighted NLL and active units for ``model``.

    Args:
        x: test images, uint8 (N, C, H, W).
        nll_k: importance samples for the NLL (0 skips it).
        nll_images: evaluate the NLL on the first this many test images (None: all).
    """
    elbo = evaluate_elbo(model, x)
    metrics = {
        "test_total": elbo.total,
        "test_recon": elbo.recon,
        "test_kl": elbo.kl,
        "active_units": float(active_units(model, x).count),
        "test_images": float(len(x)),
    }
    if nll_k > 0:
        subset = x[:nll_images] if nll_images else x
        metrics["test_nll"] = iwae_nll(model, subset, k=nll_k, seed=seed, on_progress=on_progress)
        metrics["nll_k"] = float(nll_k)
        metrics["nll_images"] = float(len(subset))
    return metrics


def save_trained(
    path: str | Path,
    *,
    model: VAE,
    data: DatasetSplits,
    train_config: TrainConfig,
    history: Sequence[dict[str, float]],
    metrics: dict[str, float] | None = None,
    sample_size: int = SAMPLE_SIZE,
    extra: dict | None = None,
    timeline: Timeline | None = None,
    train_state: TrainState | None = None,
    on_progress: Callable[[float, str], None] | None = None,
    overwrite: bool = True,
) -> Path:
    """Save ``model`` with its configs, history, test figures, data description, sample, atlas and timeline.

    The atlas of the evaluation sample (codes, per-image -ELBO, 2-D map) is computed here, so
    the app opens the saved model's map without computing anything. ``overwrite=False`` refuses
    a name that exists when the file is written (``saving.save_checkpoint``: CheckpointExists).
    ``train_state`` (``fit``'s ``result.state``) lets ``fit(resume=...)`` continue exactly.
    """
    info = {
        "train_images": len(data.train_x)
        if train_config.max_train_images is None
        else min(len(data.train_x), train_config.max_train_images),
        "test_images": len(data.test_x),
        "seed": train_config.seed,
        **(extra or {}),
    }
    sample = evaluation_sample(data, size=sample_size, seed=train_config.seed) if sample_size else None
    atlas = build_atlas(model, *sample, on_progress=on_progress) if sample is not None else None
    return save_checkpoint(
        path,
        model=model,
        train_config=train_config,
        dataset=data.name,
        history=list(history),
        preprocessing=data.preprocessing,
        class_names=tuple(data.class_names),
        metrics=metrics,
        sample=sample,
        extra=info,
        atlas=atlas,
        timeline=timeline,
        train_state=train_state,
        overwrite=overwrite,
    )
