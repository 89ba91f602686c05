"""A zip of the user's images unpacked safely into a folder, to load as a folder dataset.

Everything is checked from the zip's directory before one byte is unpacked: the upload's size, the
number of entries, the sum of the unpacked sizes and the compression ratio (a zip bomb), and every
name (no absolute paths, no ``..``, no links, no encryption). Only image files are unpacked, each
created afresh (never through a link, never over another file) and cut off at its stated size.
"""

from __future__ import annotations

import io
import os
import re
import struct
import zipfile
import zlib
from pathlib import Path
from typing import NamedTuple

from vae_core.folders import MAX_FOLDER_DEPTH, env_limit
from vae_core.preprocess import IMAGE_SUFFIXES, MAX_UPLOAD_BYTES

MB = 1024 * 1024
MAX_ZIP_BYTES = env_limit("VAE_ZIP_MAX_MB", 100) * MB
MAX_ZIP_ENTRIES = env_limit("VAE_ZIP_MAX_FILES", 20_000)
MAX_ZIP_UNPACKED_BYTES = env_limit("VAE_ZIP_MAX_UNPACKED_MB", 500) * MB
# Photos and PNGs barely compress; a 1 MB entry that unpacks to more than 100 times its size is a bomb.
MAX_ZIP_RATIO = env_limit("VAE_ZIP_MAX_RATIO", 100)
RATIO_FLOOR_BYTES = 1 * MB  # small entries (a blank BMP) may compress far better, harmlessly
# A central-directory record is 46 bytes plus the name: this bounds what zipfile parses before counting.
MAX_DIRECTORY_BYTES_PER_ENTRY = 1024
_COPY_CHUNK = 1 * MB
_EOCD = b"PK\x05\x06"
_ZIP64_LOCATOR = b"PK\x06\x07"
_ZIP64_EOCD = b"PK\x06\x06"
_LINK_MODE, _TYPE_MASK = 0o120000, 0o170000


class ArchiveError(ValueError):
    """A zip is refused or damaged; the message says why and, for a limit, how to raise it."""


class UnpackedImages(NamedTuple):
    """Where a zip's images went: the folder to load, and how many files were unpacked and skipped."""

    folder: Path
    images: int
    skipped: int


def _limit(what: str, env: str) -> str:
    return f"{what}. Send a smaller zip, or (as the server's operator) raise the limit with {env}."


def _directory_size(data: bytes) -> tuple[int, int]:
    """Return (entries, central-directory bytes) from the zip's end records, before zipfile parses anything."""
    at = data.rfind(_EOCD, max(0, len(data) - 22 - 65535))
    if at < 0 or len(data) < at + 22:
        raise ArchiveError("this is not a zip file (or it is damaged)")
    entries, size = struct.unpack_from("<HI", data, at + 10)
    locator = at - 20
    if (
        (entries == 0xFFFF or size == 0xFFFFFFFF)
        and locator >= 0
        and data[locator : locator + 4] == _ZIP64_LOCATOR
    ):
        (offset,) = struct.unpack_from("<Q", data, locator + 8)
        if data[offset : offset + 4] == _ZIP64_EOCD and len(data) >= offset + 56:
            entries, size = struct.unpack_from("<QQ", data, offset + 32)
    return entries, size


def _parts(name: str) -> list[str]:
    """Return an entry name's path parts; refuse absolute paths and ``..``."""
    text = name.replace("\\", "/")
    if text.startswith("/") or re.match(r"^[A-Za-z]:", text) or "\x00" in text:
        raise ArchiveError(
            f"the zip holds an entry with an absolute path ({name!r}); zips with such entries are refused"
        )
    parts = [p for p in text.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ArchiveError(
            f"the zip holds an entry outside its folder ({name!r}); zips with such entries are refused"
        )
    return parts


def _label(text: str) -> str:
    """Return a folder name made of letters, digits, ``.``, ``_`` and ``-`` (the default dataset name)."""
    label = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip(".-")[:60]
    return label or "images"


def _images(infos: list[zipfile.ZipInfo]) -> tuple[list[tuple[zipfile.ZipInfo, list[str]]], int]:
    """Check every entry; return the image entries with their parts, and how many others are skipped."""
    kept, skipped, total = [], 0, 0
    for info in infos:
        parts = _parts(info.filename)
        if (info.external_attr >> 16) & _TYPE_MASK == _LINK_MODE:
            raise ArchiveError(
                f"the zip holds a symbolic link ({info.filename!r}); zips with links are refused"
            )
        if info.flag_bits & 0x1:
            raise ArchiveError(f"the zip is encrypted ({info.filename!r}); send one without a password")
        if info.is_dir() or not parts:
            continue
        total += info.file_size
        if info.file_size > RATIO_FLOOR_BYTES and info.file_size > MAX_ZIP_RATIO * max(info.compress_size, 1):
            raise ArchiveError(
                _limit(
                    f"the zip looks like a zip bomb: {info.filename!r} unpacks to {info.file_size / MB:,.0f} MB, more "
                    f"than {MAX_ZIP_RATIO} times its packed size",
                    "VAE_ZIP_MAX_RATIO",
                )
            )
        hidden = any(p.startswith(".") or p == "__MACOSX" for p in parts)
        too_deep = len(parts) - 1 > MAX_FOLDER_DEPTH
        if hidden or too_deep or Path(parts[-1]).suffix.lower() not in IMAGE_SUFFIXES:
            skipped += 1
        elif info.file_size > MAX_UPLOAD_BYTES:
            skipped += 1  # the folder loader would skip it anyway
        else:
            kept.append((info, parts))
    if total > MAX_ZIP_UNPACKED_BYTES:
        raise ArchiveError(
            _limit(
                f"the zip unpacks to {total / MB:,.0f} MB; the limit is {MAX_ZIP_UNPACKED_BYTES / MB:,.0f} MB",
                "VAE_ZIP_MAX_UNPACKED_MB",
            )
        )
    return kept, skipped


def _unpack(zf: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path) -> None:
    """Write one entry to a new file at ``target`` (never through a link, never over a file), at most its stated size."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    written = 0
    with zf.open(info) as source, open(os.open(target, flags, 0o600), "wb") as out:
        while chunk := source.read(_COPY_CHUNK):
            written += len(chunk)
            if written > info.file_size:
                raise ArchiveError(f"the zip is damaged: {info.filename!r} holds more than its stated size")
            out.write(chunk)


def extract_images(data: bytes, dest: Path, *, name: str = "images") -> UnpackedImages:
    """Unpack the image files of a zip into a new folder below ``dest``, after checking the whole zip.

    The longest folder path that every image shares is dropped, so ``holiday/cats/1.png`` and
    ``holiday/dogs/2.png`` give the classes ``cats`` and ``dogs`` in a folder named ``holiday``.

    Args:
        data: the zip's bytes (at most ``MAX_ZIP_BYTES``).
        dest: an empty folder of the caller's own (a per-session temporary folder).
        name: the folder's name when the images share no folder (the zip's file name).

    Returns:
        ``UnpackedImages``: the folder to load with ``load_folder``, images unpacked, entries skipped.

    Raises:
        ArchiveError: not a zip, damaged, over a limit (size, entries, unpacked size, ratio), an entry
            with an absolute path, ``..``, a link or encryption, or no images at all.
    """
    if len(data) > MAX_ZIP_BYTES:
        raise ArchiveError(
            _limit(
                f"the zip is {len(data) / MB:,.1f} MB; the limit is {MAX_ZIP_BYTES / MB:,.0f} MB",
                "VAE_ZIP_MAX_MB",
            )
        )
    entries, directory = _directory_size(data)
    if entries > MAX_ZIP_ENTRIES or directory > MAX_ZIP_ENTRIES * MAX_DIRECTORY_BYTES_PER_ENTRY:
        raise ArchiveError(
            _limit(
                f"the zip holds more than {MAX_ZIP_ENTRIES:,} files; that is the limit", "VAE_ZIP_MAX_FILES"
            )
        )
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            infos = zf.infolist()
            if len(infos) > MAX_ZIP_ENTRIES:
                raise ArchiveError(
                    _limit(
                        f"the zip holds {len(infos):,} files; the limit is {MAX_ZIP_ENTRIES:,}",
                        "VAE_ZIP_MAX_FILES",
                    )
                )
            kept, skipped = _images(infos)
            if not kept:
                raise ArchiveError(
                    f"the zip holds no images ({', '.join(IMAGE_SUFFIXES)}); put them in one folder per class"
                )
            common = [p[:-1] for _, p in kept]
            shared = 0
            while all(len(p) > shared and p[shared] == common[0][shared] for p in common):
                shared += 1
            folder = dest / _label(kept[0][1][shared - 1] if shared else name)
            folder.mkdir()
            images = 0
            for info, parts in kept:
                target = folder.joinpath(*parts[shared:])
                target.parent.mkdir(parents=True, exist_ok=True)
                try:
                    _unpack(zf, info, target)
                except FileExistsError:  # the same name twice (or twice up to case): keep the first
                    skipped += 1
                    continue
                images += 1
    except ArchiveError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError, OSError) as err:
        raise ArchiveError(f"the zip could not be unpacked (damaged?): {type(err).__name__}: {err}") from err
    return UnpackedImages(folder, images, skipped)
