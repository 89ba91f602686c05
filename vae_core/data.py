"""Datasets as uint8 tensors, and uploaded images turned into model inputs.

Every source comes back as one ``DatasetSplits``: images (N, C, H, W) uint8 and labels (N,)
int64, held in memory and batched by index (``to_float`` maps a batch to [0, 1]). Sources:
MNIST, Fashion-MNIST, KMNIST and CIFAR-10 through torchvision (downloaded when online, read
from ``root`` or ``$VAE_DATA_DIR``), scikit-learn's bundled ``digits`` (always offline) and
``folder:/path`` (the user's own images, one subfolder per class).

``prepare_image`` turns uploaded bytes into a model input. It refuses what it cannot read
safely (too many bytes or pixels, formats other than PNG/JPEG/WEBP/BMP/GIF, damaged files)
with an ``ImageError`` a user can act on, and never lets a PIL exception escape.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import pickle
import socket
import tarfile
import warnings
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError

Style = Literal["mnist", "plain"]
STYLES: tuple[str, ...] = ("mnist", "plain")

MAX_UPLOAD_BYTES = 20 * 1024 * 1024
MAX_PIXELS = 40_000_000
# PNG decodes row by row: a 60 kB file of 1 x 30 million pixels takes seconds. No real photo
# needs a longer side than this.
MAX_SIDE = 20_000
# Deliberately lower than PIL's default (~89 M): PIL warns above this and refuses above twice
# this already in ``Image.open``; ``prepare_pil`` refuses anything above ``MAX_PIXELS`` itself.
Image.MAX_IMAGE_PIXELS = MAX_PIXELS
ALLOWED_FORMATS: tuple[str, ...] = ("PNG", "JPEG", "WEBP", "BMP", "GIF")
# Phone and camera JPEGs often open as MPO (multi-picture JPEG); the JPEG plugin reads them.
_READ_FORMATS = frozenset(ALLOWED_FORMATS) | {"MPO"}
IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif")
DOWNLOAD_TIMEOUT_S = 10.0
# Large uploads are shrunk to this longest side before any float maths: enough for a 28x28 digit.
WORKING_SIDE = 512
PREVIEW_SIDE = 256
# MNIST digits were scaled to fit a 20x20 box inside the 28x28 field (LeCun et al. 1998).
MNIST_BOX_FRACTION = 20 / 28
INK_THRESHOLD = 0.25
BACKGROUND_FLOOR = 0.1
MIN_CONTRAST = 0.1
DIGITS_TEST_SIZE = 297
FOLDER_TEST_FRACTION = 0.1


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


class PreparedImage(NamedTuple):
    """One uploaded image as a model input, with the pipeline's previews and notes.

    ``x`` is (1, C, H, W) float32 in [0, 1]; ``steps`` pairs a label with a small PIL image
    per stage ("original", "greyscale", ...); ``notes`` says what was done and why.
    """

    x: torch.Tensor
    steps: tuple[tuple[str, Image.Image], ...]
    notes: tuple[str, ...]


class DatasetUnavailable(RuntimeError):
    """A dataset's files are missing and could not be downloaded.

    ``offline_choices`` names the sources that work now (always including ``"digits"``).
    """

    def __init__(self, message: str, *, offline_choices: tuple[str, ...] = ("digits",)) -> None:
        super().__init__(message)
        self.offline_choices = tuple(offline_choices)


class ImageError(ValueError):
    """An image could not be read or is refused; the message says why in plain words."""


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
    shape = _check_shape(image_shape or (1, 28, 28))
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
        return _load_folder(Path(key[7:]), image_shape=_check_shape(image_shape or (1, 28, 28)), style=style)
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


def _first_line(err: BaseException) -> str:
    """Return the error's type and first line, plus its last line when it spans several (the cause)."""
    lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
    if not lines:
        return type(err).__name__
    detail = lines[0] if len(lines) == 1 else f"{lines[0]} {lines[-1]}"
    return f"{type(err).__name__}: {detail}"


def _load_torchvision(key: str, root: Path, *, download: bool) -> DatasetSplits:
    src = _SOURCES[key]
    try:
        if not _files_present(src, root):
            _unpack_local(src, root)
    except _LOAD_ERRORS as err:
        raise _unavailable(key, root, f"its packed files could not be unpacked ({_first_line(err)})") from err
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
            reason = f"its files in {root / src.folder} could not be read ({_first_line(err)})"
        else:
            reason = f"it is not in {root / src.folder} and the download failed ({_first_line(err)})"
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


def _load_folder(
    path: Path, *, image_shape: tuple[int, int, int], style: Style, seed: int = 0
) -> DatasetSplits:
    _check_style(style)
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
    n_test = max(1, round(FOLDER_TEST_FRACTION * len(x)))
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
        f"{c}x{h}x{w}, pixel/255, seeded 90/10 split; " + "; ".join(notes),
    )


# --- uploaded images -------------------------------------------------------------------------


def _check_shape(image_shape: tuple[int, int, int]) -> tuple[int, int, int]:
    shape = tuple(int(s) for s in image_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"image_shape must be (C, H, W) with positive sizes, got {image_shape}")
    if shape[0] not in (1, 3):
        raise ValueError(f"images must have 1 (greyscale) or 3 (RGB) channels, got {shape[0]}")
    return shape  # type: ignore[return-value]


def _check_style(style: str) -> None:
    if style not in STYLES:
        raise ValueError(f"style must be one of {STYLES}, got {style!r}")


# Magic numbers of formats people upload that we refuse, for a message that names them.
_OTHER_FORMATS = (
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"\x00\x00\x01\x00", "ICO"),
    (b"%PDF", "PDF"),
    (b"8BPS", "Photoshop (PSD)"),
    (b"\x00\x00\x00\x0cjP  ", "JPEG 2000"),
    (b"\xff\x4f\xff\x51", "JPEG 2000"),
    (b"qoif", "QOI"),
)
_ALLOWED_TEXT = "PNG, JPEG, WEBP, BMP or GIF"


def _describe_unknown(data: bytes) -> str:
    for magic, kind in _OTHER_FORMATS:
        if data.startswith(magic):
            return f"{kind} images are not supported: upload a {_ALLOWED_TEXT} file"
    if data[4:8] == b"ftyp":
        brand = data[8:12].decode("ascii", "replace").strip()
        kind = (
            "AVIF" if brand.startswith("avi") else "HEIC/HEIF" if brand.startswith(("hei", "mif")) else brand
        )
        return f"{kind} images are not supported: upload a {_ALLOWED_TEXT} file"
    head = data[:512].lstrip()
    if head[:5].lower() == b"<?xml" or b"<svg" in head.lower():
        return f"SVG (vector) images are not supported: upload a {_ALLOWED_TEXT} file"
    try:
        head.decode("utf-8")
        is_text = bool(head) and all(ch >= 32 or ch in b"\t\r\n" for ch in head)
    except UnicodeDecodeError:
        is_text = False
    if is_text:
        return f"this file is text, not an image: upload a {_ALLOWED_TEXT} file"
    return f"this is not a {_ALLOWED_TEXT} image, or the file is damaged"


def _open_image(data: bytes) -> Image.Image:
    """Open ``data`` lazily (header only) with the allowed decoders; the caller decodes."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(f"prepare_image expects the file's bytes, got {type(data).__name__}")
    data = bytes(data)
    if not data:
        raise ImageError("the file is empty")
    if len(data) > MAX_UPLOAD_BYTES:
        raise ImageError(
            f"the file is {len(data) / 1e6:.1f} MB; the limit is {MAX_UPLOAD_BYTES / 1e6:.0f} MB. "
            "Upload a smaller image (a digit needs only a few hundred pixels a side)."
        )
    try:
        img = Image.open(io.BytesIO(data), formats=sorted(ALLOWED_FORMATS))
    except UnidentifiedImageError as err:
        raise ImageError(_describe_unknown(data)) from err
    if img.format not in _READ_FORMATS:
        raise ImageError(f"{img.format} images are not supported: upload a {_ALLOWED_TEXT} file")
    return img


def prepare_image(
    data: bytes,
    *,
    image_shape: tuple[int, int, int] = (1, 28, 28),
    style: Style = "mnist",
    with_steps: bool = True,
) -> PreparedImage:
    """Turn an uploaded file's bytes into a model input, refusing unsafe or unreadable files.

    Args:
        data: the file's bytes (PNG, JPEG, WEBP, BMP or GIF; at most ``MAX_UPLOAD_BYTES`` and
            ``MAX_PIXELS``).
        image_shape: the model's (C, H, W).
        style: ``"mnist"`` (digit crop, scale to a 20/28 box, centre of mass at the centre) or
            ``"plain"`` (centre crop to the aspect ratio, resize).
        with_steps: build the preview images (the folder loader skips them).

    Returns:
        ``PreparedImage`` with x (1, C, H, W) float32 in [0, 1], previews and notes.

    Raises:
        ImageError: empty, too large, of another format, damaged or otherwise unreadable.
        ValueError: an invalid ``image_shape`` or ``style``.
    """
    shape = _check_shape(image_shape)
    _check_style(style)
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            img = _open_image(data)
        except (ImageError, TypeError):
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
            raise ImageError(_too_many_pixels_message()) from err
        except Exception as err:  # any PIL failure becomes a message for the user
            raise ImageError(f"the image could not be read: {_first_line(err)}") from err
        return prepare_pil(img, image_shape=shape, style=style, with_steps=with_steps)


def _too_many_pixels_message(size: tuple[int, int] | None = None) -> str:
    dims = f" ({size[0]}x{size[1]} = {size[0] * size[1] / 1e6:.0f} million pixels)" if size else ""
    return f"the image is too large{dims}; the limit is {MAX_PIXELS / 1e6:.0f} million pixels"


def prepare_pil(
    img: Image.Image,
    *,
    image_shape: tuple[int, int, int] = (1, 28, 28),
    style: Style = "mnist",
    with_steps: bool = True,
) -> PreparedImage:
    """Convert an opened PIL image to a model input (shared by uploads and the folder loader).

    Steps: refuse more than ``MAX_PIXELS``, take the first frame of an animation, apply the
    EXIF orientation, bring every mode (1, L, P, PA, LA, RGB, RGBA, CMYK, I;16, I, F, ...) to
    8-bit L/LA/RGB/RGBA, shrink to ``WORKING_SIDE``, then follow ``style`` (see ``prepare_image``).

    Args:
        img: an image from ``Image.open`` (not necessarily decoded yet).
        image_shape: the model's (C, H, W).
        style: ``"mnist"`` or ``"plain"``.
        with_steps: build the preview images.

    Returns:
        ``PreparedImage`` with x (1, C, H, W) float32 in [0, 1].
    """
    shape = _check_shape(image_shape)
    _check_style(style)
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            return _prepare(img, shape, style, with_steps)
        except ImageError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
            raise ImageError(_too_many_pixels_message()) from err
        except Exception as err:  # any PIL failure becomes a message for the user
            raise ImageError(
                f"the image could not be read (damaged or truncated?): {_first_line(err)}"
            ) from err


def _prepare(img: Image.Image, shape: tuple[int, int, int], style: str, with_steps: bool) -> PreparedImage:
    notes: list[str] = []
    width, height = img.size
    if width < 1 or height < 1:
        raise ImageError(f"the image has no pixels ({width}x{height})")
    if width * height > MAX_PIXELS:
        raise ImageError(_too_many_pixels_message((width, height)))
    if max(width, height) > MAX_SIDE:
        raise ImageError(f"the image is {width}x{height} pixels; the longest side may be at most {MAX_SIDE}")
    if getattr(img, "is_animated", False):
        img.seek(0)
        notes.append(f"{img.format} with several frames (animated): used the first frame")
    img.load()
    try:
        orientation = img.getexif().get(0x0112, 1)
    except Exception:  # a damaged EXIF block should not cost the picture
        orientation = 1
        notes.append("EXIF data unreadable: orientation ignored")
    if orientation in range(2, 9):
        img = ImageOps.exif_transpose(img)
        notes.append("EXIF rotation applied")
    img = _to_8bit(img, notes)
    if max(img.size) > WORKING_SIDE:
        scale = WORKING_SIDE / max(img.size)
        size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
        img = img.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    steps: list[tuple[str, Image.Image]] = []
    if with_steps:
        steps.append(("original", _preview(img)))
    if style == "mnist":
        arr = _mnist_style(img, shape[1:], notes, steps if with_steps else None)
        if shape[0] == 3:
            arr = np.repeat(arr[None], 3, axis=0)
            notes.append("mnist style is greyscale: copied to 3 channels")
        else:
            arr = arr[None]
    else:
        arr = _plain_style(img, shape, notes, steps if with_steps else None)
    arr = np.clip(np.nan_to_num(arr.astype(np.float32), nan=0.0, posinf=1.0, neginf=0.0), 0.0, 1.0)
    x = torch.from_numpy(np.ascontiguousarray(arr)).unsqueeze(0)
    if tuple(x.shape) != (1, *shape):
        raise ImageError(f"internal error: prepared shape {tuple(x.shape)} is not {(1, *shape)}")
    return PreparedImage(x=x, steps=tuple(steps), notes=tuple(notes))


def _to_8bit(img: Image.Image, notes: list[str]) -> Image.Image:
    """Bring any PIL mode to one of L, LA, RGB, RGBA (8 bits per channel)."""
    mode = img.mode
    if mode in ("L", "LA", "RGB", "RGBA"):
        return img
    if mode == "1":
        return img.convert("L")
    if mode in ("P", "PA"):
        has_alpha = mode == "PA" or "transparency" in img.info
        return img.convert("RGBA" if has_alpha else "RGB")
    if mode.startswith("I") or mode == "F":
        arr = np.asarray(img).astype(np.float64)
        arr = np.nan_to_num(arr, nan=0.0, posinf=0.0, neginf=0.0)
        lo, hi = float(arr.min()), float(arr.max())
        if mode.startswith("I;16"):
            arr = arr / 65535.0
            notes.append("16-bit image scaled to 8 bits")
        elif lo >= 0 and hi <= (1.0 if mode == "F" else 255.0):
            arr = arr / (1.0 if mode == "F" else 255.0)
        elif lo >= 0 and hi <= 65535:
            arr = arr / 65535.0
            notes.append("16-bit image scaled to 8 bits")
        else:
            arr = (arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)
            notes.append(f"{mode} image values {lo:g}..{hi:g} stretched to 0..255")
        return Image.fromarray((np.clip(arr, 0, 1) * 255).round().astype(np.uint8), "L")
    if mode in ("La", "RGBa"):
        return img.convert("LA" if mode == "La" else "RGBA")
    # CMYK, YCbCr, LAB, HSV, RGBX, ...: PIL's own conversion.
    return img.convert("RGBA" if "A" in mode else "RGB")


def _preview(img: Image.Image) -> Image.Image:
    preview = img.copy()
    preview.thumbnail((PREVIEW_SIDE, PREVIEW_SIDE), Image.Resampling.LANCZOS)
    return preview


def _grey_image(arr: np.ndarray) -> Image.Image:
    return Image.fromarray((np.clip(arr, 0, 1) * 255).round().astype(np.uint8), "L")


def _border(arr: np.ndarray) -> np.ndarray:
    return np.concatenate([arr[0, :], arr[-1, :], arr[:, 0], arr[:, -1]])


def _mnist_style(
    img: Image.Image, size: tuple[int, int], notes: list[str], steps: list[tuple[str, Image.Image]] | None
) -> np.ndarray:
    """Return an (H, W) array in [0, 1]: bright ink on black, as MNIST digits were made.

    LeCun et al. (1998), MNIST: size-normalise the digit into a 20x20 box preserving its
    aspect ratio, then centre the box's centre of mass in the 28x28 field. Here the box is
    ``round(20/28 * H)`` by ``round(20/28 * W)`` for any H, W.
    """
    height, width = size
    arr = np.asarray(img, dtype=np.float32) / 255.0
    if arr.ndim == 2:
        grey, alpha = arr, None
    elif img.mode == "LA":
        grey, alpha = arr[..., 0], arr[..., 1]
    else:
        # ITU-R 601-2 luma, as PIL's convert("L").
        grey = arr[..., :3] @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        alpha = arr[..., 3] if img.mode == "RGBA" else None
    if alpha is not None and alpha.min() < 1.0:
        # Composite onto a background that contrasts with the opaque strokes: drawn digits are
        # mostly dark strokes on a transparent canvas, so those go onto white.
        weight = float(alpha.sum())
        ink = float((grey * alpha).sum() / weight) if weight > 0 else 0.0
        background = 1.0 if ink < 0.5 else 0.0
        grey = grey * alpha + background * (1.0 - alpha)
        notes.append(f"transparent background: composited onto {'white' if background else 'black'}")
    if steps is not None:
        steps.append(("greyscale", _preview(_grey_image(grey))))
    if float(np.median(_border(grey))) > 0.5:
        grey = 1.0 - grey
        notes.append("light background detected: inverted")
        if steps is not None:
            steps.append(("inverted", _preview(_grey_image(grey))))
    lo, hi = float(np.median(_border(grey))), float(grey.max())
    if hi - lo < MIN_CONTRAST:
        notes.append("no ink found (blank image): resized only")
        resized = _grey_image(grey).resize((width, height), Image.Resampling.LANCZOS)
        out = np.asarray(resized, dtype=np.float32) / 255.0
        if steps is not None:
            steps.append(("centred", _grey_image(out)))
        return out
    grey = np.clip((grey - lo) / (hi - lo), 0.0, 1.0)
    # Paper texture and sensor noise stay just above the background level; MNIST's background is 0.
    grey[grey < BACKGROUND_FLOOR] = 0.0
    if steps is not None:
        steps.append(("contrast stretched", _preview(_grey_image(grey))))
    rows, cols = (
        np.flatnonzero((grey > INK_THRESHOLD).any(axis=1)),
        np.flatnonzero((grey > INK_THRESHOLD).any(axis=0)),
    )
    patch = grey[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    box_h, box_w = max(1, round(MNIST_BOX_FRACTION * height)), max(1, round(MNIST_BOX_FRACTION * width))
    scale = min(box_h / patch.shape[0], box_w / patch.shape[1])
    new_h, new_w = max(1, round(patch.shape[0] * scale)), max(1, round(patch.shape[1] * scale))
    scaled = Image.fromarray(patch.astype(np.float32), "F").resize((new_w, new_h), Image.Resampling.LANCZOS)
    scaled = np.clip(np.asarray(scaled, dtype=np.float32), 0.0, 1.0)
    if steps is not None:
        steps.append(("cropped & scaled", _grey_image(scaled)))
    total = float(scaled.sum())
    if total > 0:
        cy = float(scaled.sum(axis=1) @ (np.arange(new_h) + 0.5)) / total
        cx = float(scaled.sum(axis=0) @ (np.arange(new_w) + 0.5)) / total
    else:
        cy, cx = new_h / 2, new_w / 2
    top, left = round(height / 2 - cy), round(width / 2 - cx)
    canvas = np.zeros((height, width), dtype=np.float32)
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + new_h, height), min(left + new_w, width)
    if y1 > y0 and x1 > x0:
        canvas[y0:y1, x0:x1] = scaled[y0 - top : y1 - top, x0 - left : x1 - left]
    if steps is not None:
        steps.append(("centred", _grey_image(canvas)))
    return canvas


def _plain_style(
    img: Image.Image,
    shape: tuple[int, int, int],
    notes: list[str],
    steps: list[tuple[str, Image.Image]] | None,
) -> np.ndarray:
    """Return a (C, H, W) array in [0, 1]: transparency on white, centre crop to the aspect, resize."""
    channels, height, width = shape
    if img.mode in ("LA", "RGBA"):
        rgba = img.convert("RGBA")
        if rgba.getextrema()[3][0] < 255:
            notes.append("transparent background: composited onto white")
        img = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    img = img.convert("L" if channels == 1 else "RGB")
    if steps is not None:
        steps.append(("greyscale" if channels == 1 else "colour", _preview(img)))
    source_aspect, target_aspect = img.width / img.height, width / height
    if abs(source_aspect - target_aspect) > 0.01 * target_aspect:
        notes.append(
            f"centre-cropped from {img.width}x{img.height} to the model's {width}x{height} aspect ratio"
        )
    fitted = ImageOps.fit(img, (width, height), method=Image.Resampling.LANCZOS)
    if steps is not None:
        steps.append(("cropped & resized", fitted.copy()))
    arr = np.asarray(fitted, dtype=np.float32) / 255.0
    return arr[None] if channels == 1 else arr.transpose(2, 0, 1)
