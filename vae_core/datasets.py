"""Datasets as uint8 tensors: the registry, torchvision files, scikit-learn digits, folders.

Every source comes back as one ``DatasetSplits``: images (N, C, H, W) uint8 and labels (N,)
int64, held in memory and batched by index (``to_float`` maps a batch to [0, 1]). Sources:
MNIST, Fashion-MNIST, KMNIST and CIFAR-10 through torchvision (downloaded when online, read
from ``root`` or ``$VAE_DATA_DIR``), scikit-learn's bundled ``digits`` (always offline) and
``folder:/path`` (the user's own images, one subfolder per class, each file read through
``preprocess.prepare_image``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from vae_core.preprocess import (
    Style,
    check_image_shape,
)

DIGITS_TEST_SIZE = 297


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


def default_data_root() -> Path:
    """Return ``$VAE_DATA_DIR`` if set, else ``~/.cache/vae-explorer/data``."""
    env = os.environ.get("VAE_DATA_DIR", "").strip()
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "vae-explorer" / "data"


def _canonical_name(name: str, folder_roots: Sequence[Path] | None = None) -> str:
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"dataset must be named, got {name!r}")
    name = name.strip()
    if name[:7].lower() == "folder:":
        path = name[7:].strip()
        if not path:
            raise ValueError("a folder source needs a path: folder:/path/to/images")
        from vae_core.folders import resolve_folder

        return "folder:" + str(resolve_folder(path, folder_roots))
    key = _ALIASES.get(name.lower(), name.lower())
    if key not in DATASETS:
        raise ValueError(
            f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}, or folder:/path/to/images"
        )
    return key


def dataset_info(
    name: str,
    *,
    image_shape: tuple[int, int, int] | None = None,
    folder_roots: Sequence[Path] | None = None,
) -> DatasetInfo:
    """Return the description of a named source; ``folder:PATH`` gets one made up on the spot.

    Args:
        name: a key of ``DATASETS`` (aliases such as ``fashion_mnist`` work) or ``folder:/path``.
        image_shape: for a folder, the (C, H, W) its images are converted to (default (1, 28, 28)).
        folder_roots: a folder must lie below one of these (``folders.allowed_roots``); None: anywhere.

    Returns:
        The ``DatasetInfo``; a folder's class names are its subfolders (or ``("images",)``), from one
        bounded listing of the folder (no walk).

    Raises:
        DatasetUnavailable: a folder outside ``folder_roots`` (one message, whatever is there).
    """
    key = _canonical_name(name, folder_roots)
    if not key.startswith("folder:"):
        return DATASETS[key]
    path = Path(key[7:])
    shape = check_image_shape(image_shape or (1, 28, 28))
    from vae_core.folders import folder_class_names

    classes = folder_class_names(path)
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
    from vae_core.torchvision_files import found_under

    found = found_under(base)
    return [name for name in DATASETS if name in found or DATASETS[name].offline]


def load_dataset(
    name: str,
    *,
    root: str | os.PathLike[str] | None = None,
    download: bool = True,
    image_shape: tuple[int, int, int] | None = None,
    style: Style = "plain",
    folder_roots: Sequence[Path] | None = None,
) -> DatasetSplits:
    """Load a named source as uint8 train/test tensors.

    Args:
        name: ``mnist``, ``fashion-mnist``, ``kmnist``, ``cifar10``, ``digits`` or ``folder:/path``.
        root: torchvision root (default ``default_data_root()``, i.e. ``$VAE_DATA_DIR``).
        download: try to download a missing torchvision dataset (bounded by ``torchvision_files.DOWNLOAD_TIMEOUT_S``
            per network operation).
        image_shape: folders only: the (C, H, W) every image is converted to (default (1, 28, 28)).
        style: folders only: ``"plain"`` (centre crop and resize) or ``"mnist"`` (digit-style
            crop and centring), see ``prepare_pil``.
        folder_roots: folders only: the folder must lie below one of these (``folders.allowed_roots``,
            what a server passes); None reads anywhere but /proc, /sys and /dev (the command line).

    Returns:
        ``DatasetSplits`` with x (N, C, H, W) uint8 and y (N,) int64.

    Raises:
        DatasetUnavailable: the files are missing and cannot be downloaded; the message names the
            files, the folder they belong in, and the sources that work offline. A folder outside
            ``folder_roots`` gets one message whatever is there.
        ValueError: an unknown name, or options that do not apply to this source.
    """
    key = _canonical_name(name, folder_roots)
    if key.startswith("folder:"):
        from vae_core.folders import load_folder

        return load_folder(
            Path(key[7:]),
            image_shape=check_image_shape(image_shape or (1, 28, 28)),
            style=style,
            roots=folder_roots,
        )
    info = DATASETS[key]
    if image_shape is not None and tuple(image_shape) != info.image_shape:
        raise ValueError(
            f"{info.title} images are {info.image_shape}; image_shape={image_shape} is for folders"
        )
    if key == "digits":
        return _load_digits()
    base = Path(root).expanduser() if root is not None else default_data_root()
    from vae_core.torchvision_files import load_torchvision

    return load_torchvision(key, base.resolve(), download=download)


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
