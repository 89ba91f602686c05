"""A folder of the user's own images as a dataset: one subfolder per class (or none), a seeded test split.

Every file goes through ``preprocess.prepare_image``, as an upload does; unreadable files are
skipped and counted.
"""

from __future__ import annotations

from pathlib import Path

import torch

from vae_core.datasets import DatasetSplits, DatasetUnavailable
from vae_core.preprocess import (
    IMAGE_SUFFIXES,
    MAX_UPLOAD_BYTES,
    ImageError,
    Style,
    check_style,
    prepare_image,
)

# A folder keeps a fifth of its images for testing, and at least FOLDER_MIN_TEST (at most half the
# folder): the analysis pages work on the test split, and 30 images are too few to map or rank.
FOLDER_TEST_FRACTION = 0.2
FOLDER_MIN_TEST = 200


def _image_files(folder: Path, *, recursive: bool) -> list[Path]:
    found = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(
        p
        for p in found
        if p.suffix.lower() in IMAGE_SUFFIXES
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
        and p.is_file()
    )


def class_folders(path: Path) -> list[tuple[str, list[Path]]]:
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


def load_folder(
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
    groups = class_folders(path)
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
