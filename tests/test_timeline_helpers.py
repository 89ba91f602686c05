"""The training timeline: recorded per epoch, saved with a checkpoint, drawn as GIF frames with class colours."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from tests.helpers import random_splits, tiny_model
from vae_core.bundle import save_trained
from vae_core.checkpoints import load_checkpoint
from vae_core.config import ModelConfig, TrainConfig
from vae_core.geometry import timeline_projection
from vae_core.imaging import PALETTE, gif_bytes, label_colour, scatter_frames
from vae_core.timeline import PRIOR_GRID, TimelineFrame, TimelineRecorder
from vae_core.training import fit


def test_scatter_frames_colours_points_by_label_on_shared_axes() -> None:
    coords = np.array([[0.0, 0.0], [1.0, 1.0], [0.5, 0.5]])
    labels = np.array([0, 1, 0])
    moved = coords.copy()
    moved[2] = [0.25, 0.75]  # only the third point moves; the others must stay on their pixels
    first, second = scatter_frames([coords, moved], labels, size=100, radius=2, pad=10)
    assert first.size == second.size == (100, 100)
    assert first.mode == "RGB"
    # Bounds span [0, 1] on both axes: (0, 0) sits bottom left, (1, 1) top right (y grows upwards).
    inner = 100 - 1 - 2 * 10
    bottom_left = (10, 99 - 10)
    top_right = (10 + inner, 99 - (10 + inner))
    for img in (first, second):
        assert img.getpixel(bottom_left) == label_colour(0)
        assert img.getpixel(top_right) == label_colour(1)
    middle = (10 + inner // 2, 99 - (10 + inner // 2))
    assert first.getpixel(middle) == label_colour(0)
    assert second.getpixel(middle) == (255, 255, 255)


def test_scatter_frames_titles_legend_and_gif() -> None:
    rng = np.random.default_rng(0)
    coords = [rng.normal(size=(50, 2)) * (i + 1) for i in range(3)]
    labels = rng.integers(0, 12, 50)
    names = [f"class {i}" for i in range(12)]
    frames = scatter_frames(
        coords, labels, size=200, titles=["epoch 1", "epoch 2", "epoch 3"], class_names=names
    )
    assert len(frames) == 3
    assert len({f.size for f in frames}) == 1
    assert frames[0].height > 200  # the legend strip sits below the plot
    title_box = frames[0].crop((0, 0, 60, 16)).convert("L")
    assert np.asarray(title_box).min() < 100  # dark title text
    gif = Image.open(io.BytesIO(gif_bytes(frames)))
    assert gif.n_frames == 3
    # The palette repeats after its last colour.
    assert label_colour(len(PALETTE)) == label_colour(0) == PALETTE[0]
    assert label_colour(10) != label_colour(0)


def test_scatter_frames_draws_single_point_and_constant_frames() -> None:
    frames = scatter_frames([np.zeros((1, 2)), np.zeros((1, 2))], np.array([3]), size=64, pad=8)
    assert frames[0].tobytes() == frames[1].tobytes()
    assert label_colour(3) in {c for _, c in frames[0].getcolors(64 * 64)}


@pytest.mark.parametrize(
    ("coords", "labels", "message"),
    [
        ([], np.array([0]), "at least one frame"),
        ([np.zeros((3, 2)), np.zeros((2, 2))], np.zeros(3, int), "every frame must be"),
        ([np.zeros((3, 3))], np.zeros(3, int), "every frame must be"),
        ([np.full((2, 2), np.nan)], np.zeros(2, int), "finite"),
    ],
)
def test_scatter_frames_rejects_bad_input(coords, labels, message) -> None:
    with pytest.raises(ValueError, match=message):
        scatter_frames(coords, labels)


def test_scatter_frames_rejects_wrong_title_count() -> None:
    with pytest.raises(ValueError, match="titles"):
        scatter_frames([np.zeros((2, 2))], np.zeros(2, int), titles=["a", "b"])


def test_timeline_projection_feeds_scatter_frames() -> None:
    rng = np.random.default_rng(1)
    samples = np.zeros((16, 1, 28, 28), np.uint8)
    timeline = [
        TimelineFrame(epoch, rng.normal(size=(40, 6)).astype(np.float32), samples) for epoch in (1, 2)
    ]
    coords = timeline_projection(timeline)
    frames = scatter_frames(coords, rng.integers(0, 10, 40), titles=[f"epoch {f.epoch}" for f in timeline])
    assert [c.shape for c in coords] == [(40, 2), (40, 2)]
    assert len(frames) == 2


@pytest.mark.parametrize(
    "config",
    [
        ModelConfig(arch="mlp", latent_dim=2, hidden=(16,)),
        ModelConfig(arch="conv", latent_dim=3, channels=(4, 8)),
    ],
    ids=lambda c: c.arch,
)
def test_a_recorded_timeline_survives_save_and_load(tmp_path, config: ModelConfig) -> None:
    data = random_splits(n_train=64, n_test=40)
    model = tiny_model(config)
    recorder = TimelineRecorder(data.test_x, data.test_y, latent_dim=config.latent_dim, points=30)
    train = TrainConfig(dataset="random", epochs=3, batch_size=32, device="cpu")
    history = fit(model, data, train, on_epoch=recorder).history
    timeline = recorder.timeline()
    path = save_trained(
        tmp_path / "run.pt",
        model=model,
        data=data,
        train_config=train,
        history=history,
        timeline=timeline,
        sample_size=20,
    )
    loaded = load_checkpoint(path).timeline
    assert [f.epoch for f in loaded.frames] == [f.epoch for f in timeline.frames] == [1, 2, 3]
    assert np.array_equal(loaded.labels, timeline.labels) and loaded.labels.dtype == np.int64
    for got, want in zip(loaded.frames, timeline.frames, strict=True):
        assert got.mu.shape == (30, config.latent_dim) and np.array_equal(got.mu, want.mu)
        assert got.samples.shape == (PRIOR_GRID, *config.image_shape) and np.array_equal(
            got.samples, want.samples
        )
    # The frames differ from epoch to epoch, so the equalities above test the stored frames, not a copy of one.
    assert not np.array_equal(loaded.frames[0].mu, loaded.frames[-1].mu)
    # A model saved without a timeline loads with none.
    bare = save_trained(
        tmp_path / "bare.pt", model=model, data=data, train_config=train, history=history, sample_size=0
    )
    assert load_checkpoint(bare).timeline is None
