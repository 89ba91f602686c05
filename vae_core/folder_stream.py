"""Folders too large to hold in memory: their training images streamed from disk by DataLoader workers.

``open_folder`` reads a folder as ``folders.load_folder`` does when its images fit in the memory
budget (``VAE_FOLDER_MEMORY_MB``, 2 GB unless set; uint8 C x H x W bytes per image). Past it, the
training split stays on disk as a ``FolderImages`` dataset (each file read and prepared when a
batch needs it, in ``batches.LoaderBatches``' worker processes) and only the test split is read,
at most ``STREAM_TEST_IMAGES`` of them: the evaluation after each epoch and the saved model's
sample need them in memory. Both splits come from the same seeded shuffle as ``load_folder``'s.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import torch
from torch.utils.data import Dataset

from vae_core.datasets import DatasetSplits
from vae_core.folders import (
    class_folders,
    env_limit,
    folder_test_size,
    load_folder,
    read_image,
    resolve_folder,
)
from vae_core.preprocess import ImageError, Style, check_style

FOLDER_MEMORY_MB = env_limit("VAE_FOLDER_MEMORY_MB", 2048)
STREAM_TEST_IMAGES = 2000
# An unreadable file in a streamed folder is replaced by the next readable one, looking this far.
MAX_SUBSTITUTES = 16


class FolderImages(Dataset):
    """Image files read one at a time as uint8 (C, H, W): a training split too large for memory."""

    def __init__(self, files: Sequence[Path], *, image_shape: tuple[int, int, int], style: Style) -> None:
        check_style(style)
        self.files, self.image_shape, self.style = tuple(files), tuple(image_shape), style

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> torch.Tensor:
        """Return image ``index``, or the next readable one when that file cannot be read."""
        if not 0 <= index < len(self.files):
            raise IndexError(f"image {index} of a folder of {len(self.files)}")
        for offset in range(MAX_SUBSTITUTES):
            file = self.files[(index + offset) % len(self.files)]
            try:
                return read_image(file, image_shape=self.image_shape, style=self.style)
            except (ImageError, OSError):
                continue
        raise ImageError(f"{MAX_SUBSTITUTES} image files in a row from {self.files[index]} on are unreadable")


class StreamedSplits(NamedTuple):
    """A folder's splits with the training images on disk (``FolderImages``) and the test images in memory.

    The fields mirror ``DatasetSplits``, so code that needs only ``len(train_x)`` and the test split
    takes either.
    """

    name: str
    train_x: FolderImages
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    class_names: tuple[str, ...]
    preprocessing: str


def open_folder(
    path: str | os.PathLike[str],
    *,
    image_shape: tuple[int, int, int],
    style: Style = "plain",
    seed: int = 0,
    roots: Sequence[Path] | None = None,
    memory_mb: float | None = None,
) -> DatasetSplits | StreamedSplits:
    """Return a folder's splits, in memory when its images fit in ``memory_mb``, else streamed.

    Args:
        path: the folder (one subfolder per class, or none), checked as ``load_folder`` checks it.
        image_shape: the (C, H, W) every image is converted to.
        style: ``"plain"`` or ``"mnist"`` (``preprocess.prepare_pil``).
        seed: the seed of the train/test split.
        roots: allowed folders (``folders.allowed_roots``); None reads anywhere but /proc, /sys, /dev.
        memory_mb: the budget for the images as uint8 (default ``FOLDER_MEMORY_MB``).

    Raises:
        DatasetUnavailable: as ``load_folder``.
    """
    budget = (FOLDER_MEMORY_MB if memory_mb is None else memory_mb) * 1024**2
    resolved = resolve_folder(path, roots)
    groups, loose, _ = class_folders(resolved) if resolved.is_dir() else ([], [], None)
    if not groups:
        groups = [("images", loose)]
    files = [(file, label) for label, (_, members) in enumerate(groups) for file in members]
    if len(files) < 2 or len(files) * math.prod(image_shape) <= budget:
        return load_folder(resolved, image_shape=image_shape, style=style, seed=seed, roots=roots)
    perm = torch.randperm(len(files), generator=torch.Generator().manual_seed(seed))
    n_test = folder_test_size(len(files))
    test_idx = perm[:n_test].sort().values[:STREAM_TEST_IMAGES].tolist()
    train_idx = perm[n_test:].sort().values.tolist()
    test_x, test_y = [], []
    for i in test_idx:
        try:
            test_x.append(read_image(files[i][0], image_shape=image_shape, style=style))
        except (ImageError, OSError):
            continue
        test_y.append(files[i][1])
    if not test_x:
        return load_folder(
            resolved, image_shape=image_shape, style=style, seed=seed, roots=roots
        )  # its message
    c, h, w = image_shape
    return StreamedSplits(
        name=f"folder:{resolved}",
        train_x=FolderImages([files[i][0] for i in train_idx], image_shape=image_shape, style=style),
        train_y=torch.tensor([files[i][1] for i in train_idx], dtype=torch.int64),
        test_x=torch.stack(test_x),
        test_y=torch.tensor(test_y, dtype=torch.int64),
        class_names=tuple(name for name, _ in groups),
        preprocessing=f"folder {resolved}: {len(files)} images in {len(groups)} class(es), {style} style to "
        f"{c}x{h}x{w}, pixel/255, seeded split; {len(train_idx)} training images streamed from disk "
        f"(over the {budget / 1024**2:,.0f} MB memory budget), {len(test_x)} test images in memory",
    )
