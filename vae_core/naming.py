"""Safe checkpoint names: a user's text turned into a file stem, and where that file may go."""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Collection
from pathlib import Path

from vae_core.checkpoints import SUFFIX, CheckpointExists, read_info
from vae_core.safeload import CheckpointError

MAX_NAME_LENGTH = 64
_WINDOWS_RESERVED = frozenset(
    {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)), *(f"LPT{i}" for i in range(1, 10))}
)


def sanitize_name(name: str) -> str:
    """Turn a user-given model name into a safe file stem.

    Keeps ASCII letters, digits, ``.``, ``_`` and ``-`` (accents are dropped, other
    characters and spaces become ``-``), collapses ``..``, strips leading and trailing
    dots and dashes and a trailing ``.pt``, and cuts to 64 characters. Windows device
    names (``CON``, ``NUL``, ...) get a ``-model`` suffix.

    Args:
        name: What the user typed.

    Returns:
        A stem with no path separators and no ``..``, safe to join to a folder.

    Raises:
        ValueError: Nothing usable is left.
    """
    if not isinstance(name, str):
        raise ValueError(f"a name must be text, got {type(name).__name__}")
    text = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"\s+", "-", text.strip())
    text = re.sub(r"[^A-Za-z0-9._-]", "-", text)
    text = re.sub(r"\.{2,}", ".", text)
    text = re.sub(r"-{2,}", "-", text)
    # The suffix goes before leading dots do, so ".pt" alone leaves nothing rather than "pt".
    text = text.rstrip(".-")
    while text.lower().endswith(SUFFIX):
        text = text[: -len(SUFFIX)].rstrip(".-")
    text = text.strip(".-")
    text = text[:MAX_NAME_LENGTH].strip(".-")
    if not any(c.isalnum() for c in text):
        raise ValueError(f"choose a name with letters or digits, got {name!r}")
    if text.split(".")[0].upper() in _WINDOWS_RESERVED:
        text = f"{text}-model"
    return text


def checkpoint_path(
    folder: str | os.PathLike[str],
    name: str,
    *,
    overwrite: bool = False,
    allow_shipped: bool = False,
) -> Path:
    """Return where a checkpoint called ``name`` goes in ``folder``, refusing unsafe choices.

    Args:
        folder: The checkpoints folder (need not exist yet).
        name: A user-given name; see :func:`sanitize_name`.
        overwrite: Allow replacing an existing checkpoint of that name.
        allow_shipped: Also allow replacing a checkpoint that ships with the app.

    Returns:
        ``folder / "<stem>.pt"`` with ``folder`` resolved.

    Raises:
        ValueError: The name has no letters or digits.
        CheckpointError: The path would leave the folder (a symlink) or is a folder.
        CheckpointExists: The file exists and ``overwrite`` is False, or it is a shipped
            model and ``allow_shipped`` is False.
    """
    root = Path(folder).resolve()
    stem = sanitize_name(name)
    target = root / f"{stem}{SUFFIX}"
    if target.resolve().parent != root:
        raise CheckpointError(f"{target.name} points outside {root}; choose another name")
    if not os.path.lexists(target):
        return target
    if target.is_dir():
        raise CheckpointError(f"{target} is a folder; choose another name")
    if not overwrite:
        raise CheckpointExists(
            f"a checkpoint named {stem!r} already exists; choose another name or confirm overwriting it"
        )
    if not allow_shipped:
        try:
            shipped = read_info(target).shipped
        except CheckpointError:
            shipped = False  # unreadable: nothing worth protecting
        if shipped:
            raise CheckpointExists(f"{stem!r} is a model shipped with the app; choose another name")
    return target


def free_name(folder: str | os.PathLike[str], stem: str, *, reserved: Collection[str] = ()) -> str:
    """Return ``stem``, or ``stem-2``, ``stem-3``, …: the first that names no file in ``folder`` and is not reserved.

    For suggesting a save name that replaces nothing (``reserved``: e.g. the shipped models' names,
    even when their files are absent). ``stem`` is sanitized first.
    """
    root = Path(folder)
    base = sanitize_name(stem)
    taken = {name.lower() for name in reserved}
    for n in range(1, 10_000):
        candidate = base if n == 1 else f"{base[: MAX_NAME_LENGTH - 6]}-{n}"
        if candidate.lower() not in taken and not os.path.lexists(root / f"{candidate}{SUFFIX}"):
            return candidate
    raise ValueError(f"no free name like {base!r} in {root}; choose a name")
