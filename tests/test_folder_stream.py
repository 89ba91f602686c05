"""Folders past the memory budget stream through a DataLoader; the 64x64 RGB faces preset builds and trains."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch
from PIL import Image

from tests.helpers import random_splits
from vae_core.batches import LoaderBatches
from vae_core.checkpoints import load_checkpoint
from vae_core.cli import main
from vae_core.config import PRESETS, ModelConfig, TrainConfig
from vae_core.datasets import DatasetSplits
from vae_core.folder_stream import FolderImages, StreamedSplits, open_folder
from vae_core.model import VAE
from vae_core.training import fit

SHAPE = (1, 28, 28)


def _png(value: int, mode: str = "L", size: tuple[int, int] = (20, 20)) -> bytes:
    out = io.BytesIO()
    Image.new(mode, size, value if mode == "L" else (value, 255 - value, 90)).save(out, format="PNG")
    return out.getvalue()


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "pets"
    for label, value in (("cats", 40), ("dogs", 200)):
        (root / label).mkdir(parents=True)
        for i in range(30):
            (root / label / f"{i:02d}.png").write_bytes(_png(value + i))
    return root


def test_a_folder_within_the_budget_loads_into_memory(folder: Path):
    data = open_folder(folder, image_shape=SHAPE, memory_mb=10)
    assert isinstance(data, DatasetSplits) and isinstance(data.train_x, torch.Tensor)


def test_a_folder_past_the_budget_streams_and_keeps_the_same_split(folder: Path):
    budget = 59 * 784 / 1024**2  # one image short of the 60 images' bytes
    streamed = open_folder(folder, image_shape=SHAPE, memory_mb=budget)
    loaded = open_folder(folder, image_shape=SHAPE, memory_mb=1)
    assert isinstance(streamed, StreamedSplits) and isinstance(streamed.train_x, FolderImages)
    assert "streamed from disk" in streamed.preprocessing
    assert len(streamed.train_x) == len(loaded.train_x) and torch.equal(streamed.test_x, loaded.test_x)
    # The files decode to the very images the in-memory path holds, in the same order.
    streamed_images = torch.stack([streamed.train_x[i] for i in range(len(streamed.train_x))])
    assert torch.equal(streamed_images, loaded.train_x)
    assert torch.equal(streamed.train_y, loaded.train_y)


def test_an_epoch_of_worker_batches_covers_every_image_once_in_a_seeded_order(folder: Path):
    data = open_folder(folder, image_shape=SHAPE, memory_mb=0.001)
    batches = LoaderBatches(data.train_x, batch_size=8, seed=3, device=torch.device("cpu"), workers=2)
    first = torch.cat(list(batches.epoch(1)))
    assert first.dtype == torch.uint8 and first.shape == (len(data.train_x), *SHAPE)
    sums = sorted(first.flatten(1).sum(1).tolist())
    assert sums == sorted(torch.stack(list(data.train_x)).flatten(1).sum(1).tolist())
    assert torch.equal(torch.cat(list(batches.epoch(1))), first)  # the same epoch, the same order
    assert not torch.equal(torch.cat(list(batches.epoch(2))), first)  # the next epoch reshuffles


def test_an_unreadable_file_is_replaced_by_the_next_readable_one(folder: Path):
    data = open_folder(folder, image_shape=SHAPE, memory_mb=0.001)
    broken = data.train_x.files[0]
    broken.write_bytes(b"not an image")
    assert torch.equal(data.train_x[0], data.train_x[1])


def test_fit_trains_on_a_streamed_folder_with_workers(folder: Path):
    data = open_folder(folder, image_shape=SHAPE, memory_mb=0.001)
    torch.manual_seed(0)
    model = VAE(ModelConfig(latent_dim=2, arch="mlp", hidden=(16,)))
    config = TrainConfig(dataset=data.name, epochs=2, batch_size=16, device="cpu")
    result = fit(model, data, config, loader_workers=2)
    assert [r["epoch"] for r in result.history] == [1, 2]
    assert result.history[1]["train_total"] < result.history[0]["train_total"]
    assert result.state.step == 2 * -(-len(data.train_x) // 16)


def test_the_faces64_preset_builds_and_trains_one_step_on_random_64x64_images():
    config = PRESETS["faces64"]
    assert config.image_shape == (3, 64, 64) and config.arch == "conv" and config.likelihood == "gaussian"
    torch.manual_seed(0)
    model = VAE(config)
    assert model.num_parameters() == config.num_parameters()
    data = random_splits(n_train=16, n_test=8, shape=(3, 64, 64))
    before = [p.detach().clone() for p in model.parameters()]
    result = fit(model, data, TrainConfig(dataset="random", epochs=1, batch_size=16, device="cpu"))
    assert result.state.step == 1 and torch.isfinite(torch.tensor(result.history[0]["val_total"]))
    assert all(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert model(torch.rand(2, 3, 64, 64)).x_hat.shape == (2, 3, 64, 64)


def test_the_command_line_streams_a_folder_past_its_memory_budget(folder: Path, tmp_path: Path, capsys):
    out = tmp_path / "pets.pt"
    argv = ["train", "--dataset", f"folder:{folder}", "--arch", "mlp", "--latent-dim", "2", "--hidden", "16"]
    argv += ["--epochs", "1", "--nll-k", "0", "--device", "cpu", "--memory-mb", "0.01", "--workers", "1"]
    assert main([*argv, "--out", str(out)]) == 0
    assert "30 train (streamed from disk) / 30 test images" in capsys.readouterr().out
    loaded = load_checkpoint(out)
    assert loaded.info.epochs == 1 and loaded.info.class_names == ("cats", "dogs")
    assert "streamed from disk" in loaded.info.preprocessing
