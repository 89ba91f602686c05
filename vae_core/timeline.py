"""The training timeline: the latent state after every epoch, recorded while training and saved with the model.

Each frame holds the posterior means of one fixed subset of test images and the decoded
images of one fixed grid of prior draws, so an animation over epochs shows the same points
and the same z moving. ``TimelineRecorder`` is an ``on_epoch`` callback for ``training.fit``;
``timeline_payload`` and ``parse_timeline`` turn a timeline into plain tensors for a
checkpoint and back.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from vae_core.imaging import to_uint8
from vae_core.inference import decode_latents, encode
from vae_core.model import VAE

PRIOR_GRID = 16
TIMELINE_POINTS = 500
TIMELINE_SEED = 1234
PAYLOAD_KEYS = frozenset({"epochs", "mu", "samples", "labels"})


@dataclass(frozen=True)
class TimelineFrame:
    """The latent state recorded after one epoch.

    ``mu`` is float32 (P, D) for the timeline's fixed test images; ``samples`` the decoded
    fixed prior grid, uint8 (PRIOR_GRID, C, H, W).
    """

    epoch: int
    mu: np.ndarray
    samples: np.ndarray


@dataclass(frozen=True)
class Timeline:
    """Every recorded frame of a training run, and the class labels of its P test images (int64 (P,))."""

    frames: tuple[TimelineFrame, ...]
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.frames)


class TimelineRecorder:
    """Record a ``TimelineFrame`` after each epoch; pass it (or call it from) ``fit``'s ``on_epoch``.

    The test images and the prior draws are chosen once with a fixed seed, so a resumed run
    continues the same points: frames of an earlier timeline with the same shapes are kept.
    """

    def __init__(
        self,
        test_x: torch.Tensor,
        test_y: torch.Tensor,
        *,
        latent_dim: int,
        points: int = TIMELINE_POINTS,
        seed: int = TIMELINE_SEED,
        previous: Timeline | None = None,
        on_frame: Callable[[TimelineFrame], None] | None = None,
    ) -> None:
        if len(test_x) == 0:
            raise ValueError("a timeline needs at least one test image")
        gen = torch.Generator().manual_seed(seed)
        index = torch.randperm(len(test_x), generator=gen)[:points]
        self.images = test_x[index]
        self.labels = test_y[index].numpy().astype(np.int64)
        self.prior_z = torch.randn(PRIOR_GRID, latent_dim, generator=gen)
        self.frames: list[TimelineFrame] = []
        if previous is not None and _fits(previous, len(index), latent_dim):
            self.frames = list(previous.frames)
        self._on_frame = on_frame

    def __call__(self, record: Mapping[str, float], model: VAE) -> TimelineFrame:
        """Record the frame after the epoch in ``record`` and return it."""
        frame = TimelineFrame(
            epoch=int(record["epoch"]),
            mu=encode(model, self.images).mu.numpy(),
            samples=to_uint8(decode_latents(model, self.prior_z)),
        )
        self.frames.append(frame)
        if self._on_frame is not None:
            self._on_frame(frame)
        return frame

    def timeline(self) -> Timeline:
        """Return the frames recorded so far as a ``Timeline``."""
        return Timeline(tuple(self.frames), self.labels)


def _fits(timeline: Timeline, points: int, latent_dim: int) -> bool:
    return bool(timeline.frames) and timeline.frames[0].mu.shape == (points, latent_dim)


def timeline_payload(timeline: Timeline | None) -> dict[str, torch.Tensor] | None:
    """Return the timeline as plain tensors for a checkpoint, or None when there is none.

    Returns:
        {"epochs": int64 (E,), "mu": float32 (E, P, D), "samples": uint8 (E, G, C, H, W),
        "labels": int64 (P,)}.
    """
    if timeline is None or not timeline.frames:
        return None
    frames = timeline.frames
    return {
        "epochs": torch.tensor([f.epoch for f in frames], dtype=torch.int64),
        "mu": torch.from_numpy(np.stack([f.mu for f in frames]).astype(np.float32)),
        "samples": torch.from_numpy(np.stack([f.samples for f in frames]).astype(np.uint8)),
        "labels": torch.from_numpy(np.asarray(timeline.labels, dtype=np.int64)),
    }


def parse_timeline(
    raw: Any, *, latent_dim: int, image_shape: tuple[int, int, int], fail: Callable[[str], Exception]
) -> Timeline | None:
    """Rebuild a ``Timeline`` from ``timeline_payload``'s dict, checking every shape and type.

    Args:
        raw: the stored dict, or None.
        latent_dim: the model's D.
        image_shape: the model's (C, H, W).
        fail: makes the exception to raise, given a reason.

    Returns:
        The timeline, or None when ``raw`` is None.
    """
    if raw is None:
        return None
    if not isinstance(raw, dict) or set(raw) != PAYLOAD_KEYS:
        raise fail(f"the training timeline must hold exactly {sorted(PAYLOAD_KEYS)}")
    epochs, mu, samples, labels = raw["epochs"], raw["mu"], raw["samples"], raw["labels"]
    if not all(isinstance(t, torch.Tensor) for t in (epochs, mu, samples, labels)):
        raise fail("the training timeline must hold tensors")
    e = len(epochs)
    if epochs.dtype != torch.int64 or epochs.ndim != 1 or e == 0:
        raise fail("the training timeline's epochs must be int64 (E,) with E >= 1")
    if mu.dtype != torch.float32 or mu.ndim != 3 or mu.shape[0] != e or mu.shape[2] != latent_dim:
        raise fail(f"the training timeline's codes must be float32 ({e}, P, {latent_dim})")
    if (
        samples.dtype != torch.uint8
        or tuple(samples.shape[:1]) != (e,)
        or tuple(samples.shape[2:]) != image_shape
    ):
        raise fail(
            f"the training timeline's samples must be uint8 ({e}, G, {', '.join(map(str, image_shape))})"
        )
    if labels.dtype != torch.int64 or labels.shape != (mu.shape[1],):
        raise fail(f"the training timeline's labels must be int64 ({mu.shape[1]},)")
    if not bool(torch.isfinite(mu).all()):
        raise fail("the training timeline's codes contain NaN or inf")
    frames = tuple(
        TimelineFrame(int(ep), mu[i].numpy(), samples[i].numpy()) for i, ep in enumerate(epochs.tolist())
    )
    return Timeline(frames, labels.numpy())
