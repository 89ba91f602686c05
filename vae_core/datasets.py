"""Datasets as uint8 tensors: the registry, torchvision files, scikit-learn digits, folders.

Every source comes back as one ``DatasetSplits``: images (N, C, H, W) uint8 and labels (N,)
int64, held in memory and batched by index (``to_float`` maps a batch to [0, 1]). Sources:
MNIST, Fashion-MNIST, KMNIST and CIFAR-10 through torchvision (downloaded when online, read
from ``root`` or ``$VAE_DATA_DIR``), scikit-learn's bundled ``digits`` (always offline) and
``folder:/path`` (the user's own images, one subfolder per class, each file read through
``preprocess.prepare_image``).
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
from typing import Literal, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from vae_core.preprocess import (
    IMAGE_SUFFIXES,
    MAX_UPLOAD_BYTES,
    ImageError,
    Style,
    check_image_shape,
    check_style,
    error_text,
    prepare_image,
)

DOWNLOAD_TIMEOUT_S = 10.0
DIGITS_TEST_SIZE = 297
# A folder keeps a fifth of its images for testing, and at least FOLDER_MIN_TEST (at most half the
# folder): the analysis pages work on the test split, and 30 images are too few to map or rank.
FOLDER_TEST_FRACTION = 0.2
FOLDER_MIN_TEST = 200


@dataclass(frozen=True)
class DatasetInfo:
    """Describe one data source: what it holds and whether it works without a network."""

    name: str
    title: str
    image_shape: tuple[int, int, int]
    likelihood: Literal["bernoulli", "gaussian"]
    class_names: tuple[str, ...]
    offline: bool
    description: str


class DatasetSplits(NamedTuple):
    """Train and test images as uint8 (N, C, H, W) with int64 labels (N,)."""

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    class_names: tuple[str, ...]
    preprocessing: str


class DatasetUnavailable(RuntimeError):
    """A dataset's files are missing and could not be downloaded.

    ``offline_choices`` names the sources that work now (always including ``"digits"``).
    """

    def __init__(self, message: str, *, offline_choices: tuple[str, ...] = ("digits",)) -> None:
        super().__init__(message)
        self.offline_choices = tuple(offline_choices)


_DIGIT_NAMES = tuple(str(d) for d in range(10))

DATASETS: dict[str, DatasetInfo] = {
    info.name: info
    for info in (
        DatasetInfo(
            name="mnist",
            title="MNIST",
            image_shape=(1, 28, 28),
            likelihood="bernoulli",
            class_names=_DIGIT_NAMES,
            offline=False,
            description="Handwritten digits, 60,000 train / 10,000 test, 28x28 greyscale.",
        ),
        DatasetInfo(
            name="fashion-mnist",
            title="Fashion-MNIST",
            image_shape=(1, 28, 28),
            likelihood="bernoulli",
            class_names=(
                "T-shirt/top",
                "Trouser",
                "Pullover",
                "Dress",
                "Coat",
                "Sandal",
                "Shirt",
                "Sneaker",
                "Bag",
                "Ankle boot",
            ),
            offline=False,
            description="Zalando clothing photos, 60,000 train / 10,000 test, 28x28 greyscale.",
        ),
        DatasetInfo(
            name="kmnist",
            title="KMNIST",
            image_shape=(1, 28, 28),
            likelihood="bernoulli",
            class_names=("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),
            offline=False,
            description="Kuzushiji (cursive Japanese) characters, 60,000 train / 10,000 test, 28x28 greyscale.",
        ),
        DatasetInfo(
            name="cifar10",
            title="CIFAR-10",
            image_shape=(3, 32, 32),
            likelihood="gaussian",
            class_names=(
                "airplane",
                "automobile",
                "bird",
                "cat",
                "deer",
                "dog",
                "frog",
                "horse",
                "ship",
                "truck",
            ),
            offline=False,
            description="Small colour photos in 10 classes, 50,000 train / 10,000 test, 32x32 RGB.",
        ),
        DatasetInfo(
            name="digits",
            title="scikit-learn digits",
            image_shape=(1, 28, 28),
            likelihood="bernoulli",
            class_names=_DIGIT_NAMES,
            offline=True,
            description="1,797 handwritten digits bundled with scikit-learn (8x8, upsampled to 28x28); "
            "works offline.",
        ),
    )
}

_ALIASES = {
    "fashion_mnist": "fashion-mnist",
    "fashionmnist": "fashion-mnist",
    "cifar-10": "cifar10",
    "cifar_10": "cifar10",
    "sklearn-digits": "digits",
}


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


def default_data_root() -> Path:
    """Return ``$VAE_DATA_DIR`` if set, else ``~/.cache/vae-explorer/data``."""
    env = os.environ.get("VAE_DATA_DIR", "").strip()
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "vae-explorer" / "data"


def _canonical_name(name: str) -> str:
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"dataset must be named, got {name!r}")
    name = name.strip()
    if name[:7].lower() == "folder:":
        path = name[7:].strip()
        if not path:
            raise ValueError("a folder source needs a path: folder:/path/to/images")
        return "folder:" + str(Path(path).expanduser().resolve())
    key = _ALIASES.get(name.lower(), name.lower())
    if key not in DATASETS:
        raise ValueError(
            f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}, or folder:/path/to/images"
        )
    return key


def dataset_info(name: str, *, image_shape: tuple[int, int, int] | None = None) -> DatasetInfo:
    """Return the description of a named source; ``folder:PATH`` gets one made up on the spot.

    Args:
        name: a key of ``DATASETS`` (aliases such as ``fashion_mnist`` work) or ``folder:/path``.
        image_shape: for a folder, the (C, H, W) its images are converted to (default (1, 28, 28)).

    Returns:
        The ``DatasetInfo``; a folder's class names are its subfolders (or ``("images",)``).
    """
    key = _canonical_name(name)
    if not key.startswith("folder:"):
        return DATASETS[key]
    path = Path(key[7:])
    shape = check_image_shape(image_shape or (1, 28, 28))
    classes = tuple(name for name, _ in _class_folders(path)) if path.is_dir() else ()
    return DatasetInfo(
        name=key,
        title=f"Folder {path.name or path}",
        image_shape=shape,
        likelihood="bernoulli" if shape[0] == 1 else "gaussian",
        class_names=classes or ("images",),
        offline=True,
        description=f"Your own images from {path}, converted to {shape[0]}x{shape[1]}x{shape[2]}.",
    )


def to_float(x: torch.Tensor) -> torch.Tensor:
    """Map uint8 images to float32 in [0, 1] on the same device.

    Args:
        x: uint8 images of any shape, usually (B, C, H, W).

    Returns:
        ``x / 255`` as float32.
    """
    if x.dtype != torch.uint8:
        raise ValueError(f"to_float expects uint8 images, got {x.dtype}")
    return x.to(torch.float32).div_(255.0)


def available_offline(root: str | os.PathLike[str] | None = None) -> list[str]:
    """Return the source names that load without a network now: ``digits`` plus those under ``root``.

    A torchvision dataset counts when its files (or their ``.gz`` / the CIFAR archive) are present.
    """
    base = Path(root).expanduser() if root is not None else default_data_root()
    found = [key for key, src in _SOURCES.items() if _files_present(src, base) or _packed_present(src, base)]
    return [name for name in DATASETS if name in found or DATASETS[name].offline]


def load_dataset(
    name: str,
    *,
    root: str | os.PathLike[str] | None = None,
    download: bool = True,
    image_shape: tuple[int, int, int] | None = None,
    style: Style = "plain",
) -> DatasetSplits:
    """Load a named source as uint8 train/test tensors.

    Args:
        name: ``mnist``, ``fashion-mnist``, ``kmnist``, ``cifar10``, ``digits`` or ``folder:/path``.
        root: torchvision root (default ``default_data_root()``, i.e. ``$VAE_DATA_DIR``).
        download: try to download a missing torchvision dataset (bounded by ``DOWNLOAD_TIMEOUT_S``
            per network operation).
        image_shape: folders only: the (C, H, W) every image is converted to (default (1, 28, 28)).
        style: folders only: ``"plain"`` (centre crop and resize) or ``"mnist"`` (digit-style
            crop and centring), see ``prepare_pil``.

    Returns:
        ``DatasetSplits`` with x (N, C, H, W) uint8 and y (N,) int64.

    Raises:
        DatasetUnavailable: the files are missing and cannot be downloaded; the message names the
            files, the folder they belong in, and the sources that work offline.
        ValueError: an unknown name, or options that do not apply to this source.
    """
    key = _canonical_name(name)
    if key.startswith("folder:"):
        return _load_folder(
            Path(key[7:]), image_shape=check_image_shape(image_shape or (1, 28, 28)), style=style
        )
    info = DATASETS[key]
    if image_shape is not None and tuple(image_shape) != info.image_shape:
        raise ValueError(
            f"{info.title} images are {info.image_shape}; image_shape={image_shape} is for folders"
        )
    if key == "digits":
        return _load_digits()
    base = Path(root).expanduser() if root is not None else default_data_root()
    return _load_torchvision(key, base.resolve(), download=download)


def _load_digits() -> DatasetSplits:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    # 8x8 values 0..16 -> 0..255, bilinear to 20x20, pad 4 each side: a 28x28 field with the digit
    # inside a 20x20 box, as MNIST was made.
    x = torch.from_numpy(bunch.images.astype(np.float32) * (255.0 / 16.0)).unsqueeze(1)
    x = F.interpolate(x, size=(20, 20), mode="bilinear", align_corners=False)
    x = F.pad(x, (4, 4, 4, 4)).round().clamp_(0, 255).to(torch.uint8)
    y = torch.from_numpy(bunch.target.astype(np.int64))
    n_train = len(x) - DIGITS_TEST_SIZE
    return DatasetSplits(
        name="digits",
        train_x=x[:n_train].contiguous(),
        train_y=y[:n_train].contiguous(),
        test_x=x[n_train:].contiguous(),
        test_y=y[n_train:].contiguous(),
        class_names=_DIGIT_NAMES,
        preprocessing="scikit-learn digits: 8x8 values 0..16 scaled to 0..255, bilinear upsampled to 20x20, "
        f"padded to 28x28 greyscale, pixel/255; the last {DIGITS_TEST_SIZE} images are the test split",
    )


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


def _load_torchvision(key: str, root: Path, *, download: bool) -> DatasetSplits:
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


def _image_files(folder: Path, *, recursive: bool) -> list[Path]:
    found = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(
        p
        for p in found
        if p.suffix.lower() in IMAGE_SUFFIXES
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
        and p.is_file()
    )


def _class_folders(path: Path) -> list[tuple[str, list[Path]]]:
    subdirs = sorted(d for d in path.iterdir() if d.is_dir() and not d.name.startswith("."))
    groups = [(d.name, _image_files(d, recursive=True)) for d in subdirs]
    return [(name, files) for name, files in groups if files]


def folder_test_size(n: int) -> int:
    """Return how many of a folder's ``n`` images go to its test split.

    A fifth, but at least ``FOLDER_MIN_TEST`` while that leaves half the folder for training:
    a 300-image folder keeps 150 test images rather than 30, which is too few to map or rank.
    """
    if n < 2:
        raise ValueError(f"a train/test split needs at least 2 images, got {n}")
    return max(1, min(max(round(FOLDER_TEST_FRACTION * n), FOLDER_MIN_TEST), n // 2))


def _load_folder(
    path: Path, *, image_shape: tuple[int, int, int], style: Style, seed: int = 0
) -> DatasetSplits:
    check_style(style)
    choices = ("digits",)
    if not path.is_dir():
        raise DatasetUnavailable(
            f"the folder {path} does not exist (or is not a folder). Point folder: at a folder of images "
            f"({', '.join(IMAGE_SUFFIXES)}), optionally one subfolder per class. "
            "Offline sources that work now: digits (scikit-learn, bundled).",
            offline_choices=choices,
        )
    groups = _class_folders(path)
    ignored = 0
    if groups:
        ignored = len(_image_files(path, recursive=False))
    else:
        groups = [("images", _image_files(path, recursive=False))]
    if not any(files for _, files in groups):
        raise DatasetUnavailable(
            f"the folder {path} holds no images ({', '.join(IMAGE_SUFFIXES)}), neither directly nor in "
            "class subfolders. Offline sources that work now: digits (scikit-learn, bundled).",
            offline_choices=choices,
        )
    xs, ys, skipped = [], [], 0
    for label, (_, files) in enumerate(groups):
        for file in files:
            try:
                if file.stat().st_size > MAX_UPLOAD_BYTES:
                    raise ImageError("too large")
                prepared = prepare_image(
                    file.read_bytes(), image_shape=image_shape, style=style, with_steps=False
                )
            except (ImageError, OSError):
                skipped += 1
                continue
            xs.append((prepared.x[0] * 255.0).round().to(torch.uint8))
            ys.append(label)
    if len(xs) < 2:
        raise DatasetUnavailable(
            f"the folder {path} has {len(xs)} readable image(s) ({skipped} unreadable); a train/test split "
            "needs at least 2. Offline sources that work now: digits (scikit-learn, bundled).",
            offline_choices=choices,
        )
    x, y = torch.stack(xs), torch.tensor(ys, dtype=torch.int64)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    n_test = folder_test_size(len(x))
    test_idx, train_idx = perm[:n_test].sort().values, perm[n_test:].sort().values
    c, h, w = image_shape
    notes = [f"{skipped} unreadable file(s) skipped"]
    if ignored:
        notes.append(f"{ignored} file(s) outside the class subfolders ignored")
    names = tuple(name for name, _ in groups)
    return DatasetSplits(
        name=f"folder:{path}",
        train_x=x[train_idx].contiguous(),
        train_y=y[train_idx].contiguous(),
        test_x=x[test_idx].contiguous(),
        test_y=y[test_idx].contiguous(),
        class_names=names,
        preprocessing=f"folder {path}: {len(x)} images in {len(names)} class(es), {style} style to "
        f"{c}x{h}x{w}, pixel/255, seeded split with {n_test} test images; " + "; ".join(notes),
    )
