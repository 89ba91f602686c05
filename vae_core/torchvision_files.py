"""MNIST, Fashion-MNIST, KMNIST and CIFAR-10 read with torchvision: where the files go, unpacking, downloading.

A download is tried only when asked for and is bounded by ``DOWNLOAD_TIMEOUT_S`` per network
operation; a missing dataset becomes a ``DatasetUnavailable`` that names the files, the folder they
belong in, and the sources that work offline now.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import pickle
import socket
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vae_core.datasets import DATASETS, DatasetSplits, DatasetUnavailable, available_offline
from vae_core.preprocess import error_text

DOWNLOAD_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class _TorchvisionSource:
    """Where torchvision keeps one dataset under its root, and where to get it by hand."""

    class_name: str
    folder: str
    files: tuple[str, ...]
    url: str
    archive: str | None = None

    @property
    def gzipped(self) -> bool:
        return self.archive is None


_MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)

# File names and mirrors as in torchvision.datasets.mnist / cifar (torchvision 0.17 to 0.29).
_SOURCES: dict[str, _TorchvisionSource] = {
    "mnist": _TorchvisionSource(
        "MNIST", "MNIST/raw", _MNIST_FILES, "https://ossci-datasets.s3.amazonaws.com/mnist/"
    ),
    "fashion-mnist": _TorchvisionSource(
        "FashionMNIST",
        "FashionMNIST/raw",
        _MNIST_FILES,
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    ),
    "kmnist": _TorchvisionSource(
        "KMNIST", "KMNIST/raw", _MNIST_FILES, "http://codh.rois.ac.jp/kmnist/dataset/kmnist/"
    ),
    "cifar10": _TorchvisionSource(
        "CIFAR10",
        "cifar-10-batches-py",
        (
            "data_batch_1",
            "data_batch_2",
            "data_batch_3",
            "data_batch_4",
            "data_batch_5",
            "test_batch",
            "batches.meta",
        ),
        "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        archive="cifar-10-python.tar.gz",
    ),
}
# What torchvision raises when a download fails or files are damaged: RuntimeError (not found,
# bad checksum), OSError (URLError, timeouts, BadGzipFile), tar/zlib/pickle errors, EOFError.
_LOAD_ERRORS = (
    RuntimeError,
    OSError,
    ValueError,
    EOFError,
    tarfile.TarError,
    zlib.error,
    pickle.UnpicklingError,
)


def found_under(root: Path) -> list[str]:
    """Return the torchvision sources whose files (or their packed forms) are under ``root``."""
    return [key for key, src in _SOURCES.items() if _files_present(src, root) or _packed_present(src, root)]


def _files_present(src: _TorchvisionSource, root: Path) -> bool:
    folder = root / src.folder
    if all((folder / f).is_file() for f in src.files):
        return True
    # torchvision < 0.9 cached MNIST-like data as processed/training.pt and test.pt; it still reads them.
    processed = root / src.class_name / "processed"
    return src.gzipped and all((processed / f).is_file() for f in ("training.pt", "test.pt"))


def _packed_present(src: _TorchvisionSource, root: Path) -> bool:
    if src.archive is not None:
        return (root / src.archive).is_file()
    folder = root / src.folder
    return all((folder / f).is_file() or (folder / f"{f}.gz").is_file() for f in src.files)


def _unpack_local(src: _TorchvisionSource, root: Path) -> None:
    """Unpack ``.gz`` files or the CIFAR archive found under ``root``, without any network."""
    if src.archive is not None:
        archive = root / src.archive
        if archive.is_file():
            from torchvision.datasets.utils import extract_archive

            extract_archive(str(archive), str(root))
        return
    folder = root / src.folder
    for name in src.files:
        target, packed = folder / name, folder / f"{name}.gz"
        if target.is_file() or not packed.is_file():
            continue
        partial = target.with_name(target.name + ".partial")
        with gzip.open(packed, "rb") as fin, open(partial, "wb") as fout:
            while chunk := fin.read(1 << 20):
                fout.write(chunk)
        os.replace(partial, target)


@contextlib.contextmanager
def _socket_timeout(seconds: float) -> Iterator[None]:
    # torchvision downloads through urllib without a timeout; without a network that can hang.
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def _unavailable(key: str, root: Path, reason: str) -> DatasetUnavailable:
    info, src = DATASETS[key], _SOURCES[key]
    folder = root / src.folder
    if src.archive is None:
        where = f"  {folder}{os.sep}{', '.join(src.files)} (or their .gz)\n"
        fetch = f"(download the .gz files from {src.url})"
    else:
        where = (
            f"  {folder}{os.sep}{', '.join(src.files)}\n"
            f"  or the archive {root / src.archive}, which is unpacked for you\n"
        )
        fetch = f"(download the archive from {src.url})"
    offline = available_offline(root)
    found = [f"{name} (found in {root})" for name in offline if not DATASETS[name].offline]
    choices = ", ".join(["digits (scikit-learn, bundled)", *found])
    return DatasetUnavailable(
        f"{info.title} is not available: {reason}.\n"
        f"To use it offline, put these files in place {fetch}:\n{where}"
        f"The folder is the data root ({root}); set VAE_DATA_DIR to use another one.\n"
        f"Offline sources that work now: {choices}, or a folder of your own images (folder:/path).",
        offline_choices=tuple(offline),
    )


def load_torchvision(key: str, root: Path, *, download: bool) -> DatasetSplits:
    src = _SOURCES[key]
    try:
        if not _files_present(src, root):
            _unpack_local(src, root)
    except _LOAD_ERRORS as err:
        raise _unavailable(key, root, f"its packed files could not be unpacked ({error_text(err)})") from err
    present = _files_present(src, root)
    if not present and not download:
        raise _unavailable(key, root, f"its files are not in {root / src.folder} and download=False")

    import torchvision.datasets

    cls = getattr(torchvision.datasets, src.class_name)
    try:
        with _socket_timeout(DOWNLOAD_TIMEOUT_S):
            train = cls(str(root), train=True, download=not present)
            test = cls(str(root), train=False, download=False)
    except _LOAD_ERRORS as err:
        if present:
            reason = f"its files in {root / src.folder} could not be read ({error_text(err)})"
        else:
            reason = f"it is not in {root / src.folder} and the download failed ({error_text(err)})"
        raise _unavailable(key, root, reason) from err

    info = DATASETS[key]
    c, h, w = info.image_shape
    if key == "cifar10":
        # torchvision keeps CIFAR as an HWC numpy array and a list of labels.
        def images(ds):
            return torch.from_numpy(np.ascontiguousarray(ds.data)).permute(0, 3, 1, 2).contiguous()

        def labels(ds):
            return torch.as_tensor(ds.targets, dtype=torch.int64)
    else:

        def images(ds):
            return ds.data.to(torch.uint8).unsqueeze(1).contiguous()

        def labels(ds):
            return ds.targets.to(torch.int64)

    colour = "greyscale" if c == 1 else "RGB"
    return DatasetSplits(
        name=key,
        train_x=images(train),
        train_y=labels(train),
        test_x=images(test),
        test_y=labels(test),
        class_names=info.class_names,
        preprocessing=f"{info.title} {h}x{w} {colour}, pixel/255",
    )
