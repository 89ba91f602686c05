"""Datasets: digits offline, MNIST from the shared root, missing-data messages, folders, to_float."""

from __future__ import annotations

import gzip
import io
import socket
import struct
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
import torch
from PIL import Image

from vae_core import torchvision_files as data_module
from vae_core.datasets import (
    DATASETS,
    DatasetSplits,
    DatasetUnavailable,
    available_offline,
    dataset_info,
    default_data_root,
    load_dataset,
    to_float,
)
from vae_core.folders import folder_test_size
from vae_core.preprocess import prepare_image

MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
CIFAR_FILES = ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch")


def assert_splits(splits: DatasetSplits, shape: tuple[int, int, int], n_classes: int) -> None:
    for x, y in ((splits.train_x, splits.train_y), (splits.test_x, splits.test_y)):
        assert x.dtype == torch.uint8 and y.dtype == torch.int64
        assert x.shape[1:] == shape and x.shape[0] == y.shape[0] and y.ndim == 1
        assert x.is_contiguous()
        assert int(y.min()) >= 0 and int(y.max()) < n_classes
    assert len(splits.class_names) == n_classes
    assert splits.preprocessing


def idx_bytes(arr: np.ndarray) -> bytes:
    """Return ``arr`` (uint8) in the IDX format of the MNIST files (magic 0x08, then dimensions)."""
    header = struct.pack(">HBB", 0, 0x08, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + arr.astype(np.uint8).tobytes()


def write_mnist_like(folder: Path, *, n_train: int, n_test: int, gz: bool) -> None:
    """Write tiny MNIST-format files: image i is filled with value i, its label is i % 10."""
    folder.mkdir(parents=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = np.broadcast_to(np.arange(n, dtype=np.uint8)[:, None, None], (n, 28, 28))
        labels = np.arange(n, dtype=np.uint8) % 10
        for name, arr in ((f"{prefix}-images-idx3-ubyte", images), (f"{prefix}-labels-idx1-ubyte", labels)):
            raw = idx_bytes(np.ascontiguousarray(arr))
            if gz:
                (folder / f"{name}.gz").write_bytes(gzip.compress(raw))
            else:
                (folder / name).write_bytes(raw)


def test_digits_load_offline_like_mnist() -> None:
    splits = load_dataset("digits")
    assert_splits(splits, (1, 28, 28), 10)
    assert len(splits.train_x) == 1500 and len(splits.test_x) == 297
    assert splits.name == "digits"
    assert set(splits.train_y.tolist()) == set(range(10))
    # Digit inside a 20x20 box, 4-pixel empty border, full 0..255 range, ink bright on black.
    border = torch.ones(28, 28, dtype=torch.bool)
    border[4:24, 4:24] = False
    assert splits.train_x[:, 0][:, border].max() == 0
    assert splits.train_x.max() == 255
    assert splits.train_x.float().mean() < 60
    again = load_dataset("DIGITS")
    assert torch.equal(again.train_x, splits.train_x) and torch.equal(again.test_y, splits.test_y)


@pytest.mark.real_data
def test_mnist_subset_from_shared_root(mnist_root: Path) -> None:
    splits = load_dataset("mnist", root=mnist_root, download=False)
    assert_splits(splits, (1, 28, 28), 10)
    assert len(splits.train_x) == 5000 and len(splits.test_x) == 10000
    assert torch.equal(torch.bincount(splits.train_y), torch.full((10,), 500))
    assert splits.train_x.max() == 255 and splits.train_x.min() == 0
    assert splits.preprocessing == "MNIST 28x28 greyscale, pixel/255"
    assert "mnist" in available_offline(mnist_root)


@pytest.mark.real_data
def test_uploaded_mnist_digits_on_paper_come_back_close(mnist_root: Path) -> None:
    """Print MNIST digits dark on noisy grey paper, photograph them as JPEG: the pipeline recovers them."""
    test_x = load_dataset("mnist", root=mnist_root, download=False).test_x[:40, 0]
    rng = np.random.default_rng(0)
    correlations = []
    for digit in test_x.numpy():
        page = Image.new("L", (300, 260), 255)
        page.paste(
            Image.fromarray(255 - digit).resize((196, 196), Image.Resampling.BICUBIC),
            tuple(rng.integers(0, 60, 2)),
        )
        photo = np.asarray(page, dtype=np.float64) * 0.8 + 30 + rng.normal(0, 4, (260, 300))
        buf = io.BytesIO()
        Image.fromarray(np.clip(photo, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=85)
        x = prepare_image(buf.getvalue()).x[0, 0]
        pair = torch.stack([x.flatten(), torch.from_numpy(digit / 255.0).float().flatten()])
        correlations.append(float(torch.corrcoef(pair)[0, 1]))
    assert np.mean(correlations) > 0.7, correlations


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist", "kmnist", "cifar10"])
def test_missing_dataset_names_files_folder_and_offline_sources(tmp_path: Path, name: str) -> None:
    with pytest.raises(DatasetUnavailable) as caught:
        load_dataset(name, root=tmp_path, download=False)
    message = str(caught.value)
    folder = {"mnist": "MNIST/raw", "fashion-mnist": "FashionMNIST/raw", "kmnist": "KMNIST/raw"}
    if name == "cifar10":
        assert str(tmp_path / "cifar-10-batches-py") in message
        assert all(f in message for f in (*CIFAR_FILES, "batches.meta", "cifar-10-python.tar.gz"))
    else:
        assert str(tmp_path / folder[name]) in message
        assert all(f in message for f in MNIST_FILES) and ".gz" in message
    assert "digits" in message and "folder:" in message
    assert caught.value.offline_choices == ("digits",)
    assert not any(tmp_path.iterdir()), "download=False must not create anything"


def test_failed_download_is_reported_and_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.datasets.mnist

    seen_timeouts = []

    def offline(*args, **kwargs):
        seen_timeouts.append(socket.getdefaulttimeout())
        raise URLError("no network here")

    monkeypatch.setattr(torchvision.datasets.mnist, "download_and_extract_archive", offline)
    socket.setdefaulttimeout(3.0)
    try:
        with pytest.raises(DatasetUnavailable, match="download failed") as caught:
            load_dataset("mnist", root=tmp_path, download=True)
        assert socket.getdefaulttimeout() == 3.0, "the socket timeout must be restored"
    finally:
        socket.setdefaulttimeout(None)
    assert seen_timeouts and set(seen_timeouts) == {data_module.DOWNLOAD_TIMEOUT_S}
    assert "no network here" in str(caught.value) and "train-images-idx3-ubyte" in str(caught.value)


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
def test_mnist_format_files_load_raw_or_gzipped(tmp_path: Path, gz: bool) -> None:
    write_mnist_like(tmp_path / "FashionMNIST" / "raw", n_train=30, n_test=12, gz=gz)
    assert available_offline(tmp_path) == ["fashion-mnist", "digits"]
    splits = load_dataset("fashion_mnist", root=tmp_path, download=False)
    assert_splits(splits, (1, 28, 28), 10)
    assert splits.name == "fashion-mnist" and splits.class_names[9] == "Ankle boot"
    assert splits.train_x.shape == (30, 1, 28, 28) and splits.test_x.shape == (12, 1, 28, 28)
    assert torch.equal(splits.train_x[:, 0, 5, 7], torch.arange(30, dtype=torch.uint8))
    assert torch.equal(splits.test_y, torch.arange(12) % 10)


def test_cifar_images_become_channels_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.datasets

    class FakeCIFAR10:
        """Stands in for torchvision's CIFAR10: HWC uint8 numpy data, labels as a list."""

        def __init__(self, root: str, train: bool, download: bool) -> None:
            n = 6 if train else 2
            self.data = np.zeros((n, 32, 32, 3), dtype=np.uint8)
            self.data[..., 0], self.data[..., 1], self.data[..., 2] = 10, 20, 30
            self.data[:, 0, 31, :] = 200  # top-right pixel
            self.targets = list(range(n))

    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in (*CIFAR_FILES, "batches.meta"):
        (folder / name).write_bytes(b"")
    monkeypatch.setattr(torchvision.datasets, "CIFAR10", FakeCIFAR10)
    splits = load_dataset("cifar10", root=tmp_path, download=False)
    assert_splits(splits, (3, 32, 32), 10)
    assert splits.train_x.shape == (6, 3, 32, 32)
    assert splits.train_x[0, :, 10, 10].tolist() == [10, 20, 30]
    assert splits.train_x[0, :, 0, 31].tolist() == [200, 200, 200] and splits.train_x[0, 0, 31, 0] == 10
    assert dataset_info("cifar10").likelihood == "gaussian"


def test_data_root_comes_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VAE_DATA_DIR", raising=False)
    assert default_data_root() == Path.home() / ".cache" / "vae-explorer" / "data"
    monkeypatch.setenv("VAE_DATA_DIR", str(tmp_path))
    assert default_data_root() == tmp_path
    with pytest.raises(DatasetUnavailable, match=str(tmp_path)):
        load_dataset("kmnist", download=False)


def write_image(path: Path, value: int, size: tuple[int, int] = (40, 30), mode: str = "RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, (value,) * len(mode)).save(path)


def test_folder_with_class_subfolders(tmp_path: Path) -> None:
    for i in range(10):
        write_image(tmp_path / "cats" / f"c{i}.png", 40)
        write_image(tmp_path / "dogs" / "nested" / f"d{i}.jpg", 200, size=(16, 48))
    (tmp_path / "dogs" / "broken.png").write_bytes(b"not really a png")
    (tmp_path / "dogs" / "notes.txt").write_text("ignored: not an image suffix")
    (tmp_path / "loose.png").write_bytes((tmp_path / "cats" / "c0.png").read_bytes())
    splits = load_dataset(f"folder:{tmp_path}")
    assert_splits(splits, (1, 28, 28), 2)
    assert splits.class_names == ("cats", "dogs")
    assert splits.name == f"folder:{tmp_path.resolve()}"
    # 20 readable images: the test split is capped at half the folder.
    assert len(splits.train_x) == 10 and len(splits.test_x) == 10
    assert "1 unreadable file(s) skipped" in splits.preprocessing
    assert "1 file(s) outside the class subfolders ignored" in splits.preprocessing
    x, y = torch.cat([splits.train_x, splits.test_x]), torch.cat([splits.train_y, splits.test_y])
    # Plain style: a uniform grey image stays that grey (RGB 40 -> L 40).
    assert torch.all((x[y == 0] - 40).abs() <= 1) and torch.all((x[y == 1] - 200).abs() <= 1)
    again = load_dataset(f"folder:{tmp_path}")
    assert torch.equal(again.test_y, splits.test_y) and torch.equal(again.train_x, splits.train_x)
    assert dataset_info(f"folder:{tmp_path}").class_names == ("cats", "dogs")


def test_folder_without_subfolders_is_one_class_in_the_asked_shape(tmp_path: Path) -> None:
    for i in range(5):
        write_image(tmp_path / f"img{i}.bmp", 30 * i, mode="RGB")
    splits = load_dataset(f"folder:{tmp_path}", image_shape=(3, 16, 16))
    assert_splits(splits, (3, 16, 16), 1)
    assert splits.class_names == ("images",)
    assert len(splits.train_x) == 3 and len(splits.test_x) == 2  # at most half of 5 is tested
    info = dataset_info(f"folder:{tmp_path}", image_shape=(3, 16, 16))
    assert info.likelihood == "gaussian" and info.offline


def test_folder_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(DatasetUnavailable, match="does not exist"):
        load_dataset(f"folder:{tmp_path / 'nope'}")
    with pytest.raises(DatasetUnavailable, match="no images"):
        load_dataset(f"folder:{tmp_path}")
    write_image(tmp_path / "only.png", 10)
    with pytest.raises(DatasetUnavailable, match="at least 2"):
        load_dataset(f"folder:{tmp_path}")
    with pytest.raises(ValueError, match="path"):
        load_dataset("folder:")


def test_unknown_names_and_misplaced_options() -> None:
    with pytest.raises(ValueError, match="unknown dataset 'svhn'.*mnist"):
        load_dataset("svhn")
    with pytest.raises(ValueError, match="image_shape"):
        load_dataset("digits", image_shape=(3, 32, 32))
    assert set(DATASETS) == {"mnist", "fashion-mnist", "kmnist", "cifar10", "digits"}
    assert [name for name, info in DATASETS.items() if info.offline] == ["digits"]
    assert dataset_info("CIFAR-10").name == "cifar10"


def test_to_float() -> None:
    x = torch.tensor([[0, 51, 255]], dtype=torch.uint8)
    out = to_float(x)
    assert out.dtype == torch.float32 and out.device == x.device
    assert torch.allclose(out, torch.tensor([[0.0, 0.2, 1.0]]))
    assert x.tolist() == [[0, 51, 255]], "the input is left alone"
    with pytest.raises(ValueError, match="uint8"):
        to_float(out)


@pytest.mark.parametrize(
    ("n", "expected"),
    [(2, 1), (20, 10), (300, 150), (1000, 200), (5000, 1000)],
)
def test_folder_test_split_is_large_enough_to_analyse(n: int, expected: int) -> None:
    assert folder_test_size(n) == expected
