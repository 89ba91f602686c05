"""A folder of the user's own images as a dataset: one subfolder per class (or none), a seeded test split.

Every file goes through ``preprocess.prepare_image``, as an upload does; unreadable files are
skipped and counted.

Where a folder may be: a server reads folders only below its allowed roots (``allowed_roots``:
``$VAE_FOLDER_ROOTS``, else the data directory and the home folder when it listens on localhost
only, else none), checked after links and ``..`` are resolved; every path outside them gets the
same message, whether it exists or not. The command line, run by the user on their own machine,
reads anywhere (``roots=None``). Walks never follow links, never enter /proc, /sys or /dev, and stop
at named limits of depth, entries, images and time.
"""

from __future__ import annotations

import ipaddress
import os
import stat
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from vae_core.datasets import DatasetSplits, DatasetUnavailable, default_data_root
from vae_core.preprocess import (
    IMAGE_SUFFIXES,
    MAX_UPLOAD_BYTES,
    ImageError,
    Style,
    check_style,
    prepare_image,
)


def env_limit(name: str, default: int | float) -> int | float:
    """Return the positive number in environment variable ``name``, or ``default`` when it is unset."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = type(default)(raw)
    except ValueError:
        value = 0
    if value <= 0:
        raise ValueError(f"{name} must be a positive {type(default).__name__}, got {raw!r}")
    return value


# A folder keeps a fifth of its images for testing, and at least FOLDER_MIN_TEST (at most half the
# folder): the analysis pages work on the test split, and 30 images are too few to map or rank.
FOLDER_TEST_FRACTION = 0.2
FOLDER_MIN_TEST = 200
FOLDER_ROOTS_ENV = "VAE_FOLDER_ROOTS"  # os.pathsep-separated; set but empty: no folder at all
# Walk limits: subfolder levels below the chosen folder (a class folder is level 1), directory
# entries looked at, image files kept, seconds spent listing.
MAX_FOLDER_DEPTH = env_limit("VAE_FOLDER_MAX_DEPTH", 8)
MAX_FOLDER_ENTRIES = env_limit("VAE_FOLDER_MAX_ENTRIES", 500_000)
MAX_FOLDER_IMAGES = env_limit("VAE_FOLDER_MAX_IMAGES", 100_000)
FOLDER_WALK_SECONDS = env_limit("VAE_FOLDER_WALK_SECONDS", 20.0)
# Kernel and device trees: reading them can block, change under the walk or reveal the server.
PSEUDO_FILESYSTEMS = (Path("/proc"), Path("/sys"), Path("/dev"))
_OFFLINE = "Offline sources that work now: digits (scikit-learn, bundled)."


def listens_locally(address: str | None) -> bool:
    """Return whether a server bound to ``address`` (Streamlit's ``server.address``) is reachable from this machine only.

    Unset or empty means every interface, so it is not local.
    """
    host = (address or "").strip().strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _real(path: Path) -> Path | None:
    """Return ``path`` with ``~``, links and ``..`` resolved (it need not exist), or None if it cannot be."""
    try:
        return Path(os.path.realpath(path.expanduser()))
    except (OSError, RuntimeError, ValueError):  # unknown ~user, a link loop, a NUL byte
        return None


def _below(path: Path, root: Path) -> bool:
    return path == root or path.is_relative_to(root)


def _pseudo(path: Path) -> bool:
    return any(_below(path, p) for p in PSEUDO_FILESYSTEMS)


def allowed_roots(*, address: str | None) -> tuple[Path, ...]:
    """Return the resolved folders below which a server reads image folders.

    ``$VAE_FOLDER_ROOTS`` (paths separated by ``os.pathsep``; set but empty allows none) when set;
    otherwise the data directory (``default_data_root()``) and the user's home when the server
    listens on localhost only, and none when it listens on other addresses.

    Args:
        address: the address the server listens on (Streamlit's ``server.address``; None: all).
    """
    raw = os.environ.get(FOLDER_ROOTS_ENV)
    if raw is not None:
        candidates = [Path(p.strip()) for p in raw.split(os.pathsep) if p.strip()]
    elif listens_locally(address):
        candidates = [default_data_root(), Path.home()]
    else:
        candidates = []
    roots: list[Path] = []
    for candidate in candidates:
        root = _real(candidate)
        if root is not None and not _pseudo(root) and root not in roots:
            roots.append(root)
    return tuple(roots)


def refused_message(roots: Sequence[Path] | None) -> str:
    """Return the one message for every refused folder path: it names no path and tests no existence."""
    if roots is None:
        return (
            "folders under /proc, /sys and /dev, and paths that do not resolve, are never read. Point folder: at "
            f"a folder of images. {_OFFLINE}"
        )
    if not roots:
        where = (
            "this server reads no folders of its own (it listens on addresses beyond localhost, or "
            f"{FOLDER_ROOTS_ENV} allows none)"
        )
    else:
        where = f"this server reads image folders only inside {', '.join(str(r) for r in roots)}"
    return (
        f"{where}. Upload a zip of your images instead, or (as the server's operator) run it with "
        f"--server.address localhost, or set {FOLDER_ROOTS_ENV} to the folders to allow, separated by "
        f"{os.pathsep!r}. {_OFFLINE}"
    )


def resolve_folder(path: str | os.PathLike[str], roots: Sequence[Path] | None = None) -> Path:
    """Return ``path`` with ``~``, links and ``..`` resolved, refused unless it lies below one of ``roots``.

    Args:
        path: what the user gave.
        roots: resolved folders from ``allowed_roots``; None allows any folder but /proc, /sys and
            /dev (the command line, on the user's own machine).

    Returns:
        The resolved path (it may not exist).

    Raises:
        DatasetUnavailable: ``refused_message(roots)``, the same for every refused path, without
            looking at whether it exists.
    """
    resolved = _real(Path(path))
    if (
        resolved is not None
        and not _pseudo(resolved)
        and (roots is None or any(_below(resolved, root) for root in roots))
    ):
        return resolved
    raise DatasetUnavailable(refused_message(roots))


def _limit_message(what: str, limit: float, env: str, path: Path) -> str:
    return (
        f"the folder {path} {what}; the limit is {limit:,}. Point folder: at a smaller folder, or (on your own "
        f"machine) raise the limit with the environment variable {env}. {_OFFLINE}"
    )


@dataclass
class _Walk:
    """One bounded walk of a folder: never follows links, counts what it skips, stops at the limits."""

    folder: Path
    deadline: float
    entries: int = 0
    images: int = 0
    too_deep: int = 0
    links: int = 0
    unreadable: int = 0

    def scan(self, directory: Path) -> tuple[list[Path], list[Path]]:
        """Return the (subfolders, image files) directly in ``directory``, sorted, hidden names skipped."""
        dirs, files = [], []
        try:
            with os.scandir(directory) as found:
                for entry in found:
                    self.entries += 1
                    if self.entries > MAX_FOLDER_ENTRIES:
                        raise DatasetUnavailable(
                            _limit_message(
                                f"holds more than {MAX_FOLDER_ENTRIES:,} files and folders",
                                MAX_FOLDER_ENTRIES,
                                "VAE_FOLDER_MAX_ENTRIES",
                                self.folder,
                            )
                        )
                    if self.entries % 256 == 0 and time.monotonic() > self.deadline:
                        raise DatasetUnavailable(
                            _limit_message(
                                f"took longer than {FOLDER_WALK_SECONDS:g} s to list",
                                FOLDER_WALK_SECONDS,
                                "VAE_FOLDER_WALK_SECONDS",
                                self.folder,
                            )
                        )
                    if entry.name.startswith("."):
                        continue
                    if entry.is_symlink():
                        self.links += 1
                    elif entry.is_dir(follow_symlinks=False):
                        if not _pseudo(Path(entry.path)):
                            dirs.append(Path(entry.path))
                    elif (
                        entry.is_file(follow_symlinks=False)
                        and Path(entry.name).suffix.lower() in IMAGE_SUFFIXES
                    ):
                        files.append(Path(entry.path))
        except OSError:  # unreadable, or gone meanwhile (a process under /proc)
            self.unreadable += 1
        return sorted(dirs), sorted(files)

    def images_below(self, directory: Path, *, levels: int) -> list[Path]:
        """Return every image file below ``directory``, entering at most ``levels`` levels of subfolders."""
        found, pending = [], [(directory, levels)]
        while pending:
            current, left = pending.pop()
            dirs, files = self.scan(current)
            self.count_images(len(files))
            found.extend(files)
            if left > 0:
                pending.extend((d, left - 1) for d in dirs)
            else:
                self.too_deep += len(dirs)
        return sorted(found)

    def count_images(self, n: int) -> None:
        self.images += n
        if self.images > MAX_FOLDER_IMAGES:
            raise DatasetUnavailable(
                _limit_message(
                    f"holds more than {MAX_FOLDER_IMAGES:,} images",
                    MAX_FOLDER_IMAGES,
                    "VAE_FOLDER_MAX_IMAGES",
                    self.folder,
                )
            )

    def notes(self) -> list[str]:
        notes = []
        if self.too_deep:
            notes.append(f"{self.too_deep} folder(s) deeper than {MAX_FOLDER_DEPTH} levels not read")
        if self.links:
            notes.append(f"{self.links} symbolic link(s) not followed")
        if self.unreadable:
            notes.append(f"{self.unreadable} unreadable folder(s) skipped")
        return notes


def _new_walk(folder: Path) -> _Walk:
    return _Walk(folder, deadline=time.monotonic() + FOLDER_WALK_SECONDS)


def folder_class_names(path: Path) -> tuple[str, ...]:
    """Return the names of ``path``'s class subfolders from one bounded listing (no recursion, no links)."""
    dirs, _ = _new_walk(path).scan(path)
    return tuple(d.name for d in dirs)


def class_folders(path: Path) -> tuple[list[tuple[str, list[Path]]], list[Path], _Walk]:
    """Walk ``path`` within the limits: (class name, its image files) per subfolder with images, the loose
    image files beside them, and the walk (for its notes)."""
    walk = _new_walk(path)
    dirs, loose = walk.scan(path)
    walk.count_images(len(loose))
    groups = [(d.name, walk.images_below(d, levels=MAX_FOLDER_DEPTH - 1)) for d in dirs]
    return [(name, files) for name, files in groups if files], loose, walk


def _read_file(path: Path) -> bytes:
    """Return a regular file's bytes, refusing links, devices, pipes and files over ``MAX_UPLOAD_BYTES``."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    with open(os.open(path, flags), "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise ImageError("not a regular file")
        if info.st_size > MAX_UPLOAD_BYTES:
            raise ImageError("too large")
        return f.read(MAX_UPLOAD_BYTES + 1)


def read_image(file: Path, *, image_shape: tuple[int, int, int], style: Style) -> torch.Tensor:
    """Return one image file as uint8 (C, H, W), prepared as an upload is.

    Raises:
        ImageError, OSError: the file cannot be read as an image.
    """
    prepared = prepare_image(_read_file(file), image_shape=image_shape, style=style, with_steps=False)
    return (prepared.x[0] * 255.0).round().to(torch.uint8)


def folder_test_size(n: int) -> int:
    """Return how many of a folder's ``n`` images go to its test split.

    A fifth, but at least ``FOLDER_MIN_TEST`` while that leaves half the folder for training:
    a 300-image folder keeps 150 test images rather than 30, which is too few to map or rank.
    """
    if n < 2:
        raise ValueError(f"a train/test split needs at least 2 images, got {n}")
    return max(1, min(max(round(FOLDER_TEST_FRACTION * n), FOLDER_MIN_TEST), n // 2))


def load_folder(
    path: str | os.PathLike[str],
    *,
    image_shape: tuple[int, int, int],
    style: Style,
    seed: int = 0,
    roots: Sequence[Path] | None = None,
) -> DatasetSplits:
    """Read a folder of images as a dataset: one class per subfolder (or one class), a seeded test split.

    Args:
        path: the folder; refused (``resolve_folder``) unless it lies below one of ``roots``.
        image_shape: the (C, H, W) every image is converted to.
        style: ``"plain"`` or ``"mnist"``, see ``preprocess.prepare_pil``.
        seed: the seed of the train/test split.
        roots: allowed folders (``allowed_roots``); None reads anywhere but /proc, /sys and /dev.

    Raises:
        DatasetUnavailable: refused, missing, empty, over a walk limit, or fewer than 2 readable images.
    """
    check_style(style)
    choices = ("digits",)
    path = resolve_folder(path, roots)
    if not path.is_dir():
        raise DatasetUnavailable(
            f"the folder {path} does not exist (or is not a folder). Point folder: at a folder of images "
            f"({', '.join(IMAGE_SUFFIXES)}), optionally one subfolder per class. "
            "Offline sources that work now: digits (scikit-learn, bundled).",
            offline_choices=choices,
        )
    groups, loose, walk = class_folders(path)
    ignored = 0
    if groups:
        ignored = len(loose)
    else:
        groups = [("images", loose)]
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
                xs.append(read_image(file, image_shape=image_shape, style=style))
            except (ImageError, OSError):
                skipped += 1
                continue
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
    notes.extend(walk.notes())
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
