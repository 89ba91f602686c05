"""Autosave a training run after every epoch, and find the runs a crash or a closed session left behind.

Each run writes one ordinary checkpoint (``saving.save_checkpoint``: a temporary file, fsync,
``os.replace``) to a hidden autosave folder after every epoch, so a ``kill -9`` loses at most the
epoch in progress. The file's name carries the run's id, which names the process that writes it
(its pid and start time), so a reader can tell a run still going from one whose process died:

* a run of this process is *claimed* while its ``Autosaver`` object lives (the run holds it);
* a run of another process is claimed while that process lives;
* every other autosave is *interrupted* (the server was killed, or the session that held the run
  ended without saving it) and ``interrupted_runs`` offers it for resuming, saving or discarding.

Unclaimed autosaves are kept up to ``VAE_AUTOSAVE_KEEP`` (the oldest go first); temporary files
left by a write that a kill cut short are removed when their writer is gone.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import secrets
import threading
import time
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from vae_core.checkpoints import SUFFIX, CheckpointInfo, read_info
from vae_core.config import TrainConfig
from vae_core.model import VAE
from vae_core.safeload import CheckpointError
from vae_core.saving import save_checkpoint
from vae_core.timeline import Timeline
from vae_core.train_state import TrainState

AUTOSAVE_FOLDER = ".autosave"  # hidden: list_checkpoints skips it, so autosaves never reach the model picker
AUTOSAVE_DIR_ENV = "VAE_AUTOSAVE_DIR"
AUTOSAVE_KEEP_ENV = "VAE_AUTOSAVE_KEEP"
AUTOSAVE_KEEP = 10  # unclaimed autosaves kept; more are pruned, oldest first
# Writing (the timeline grows each epoch) may take at most this share of the time between saves: every
# epoch longer than ten writes is saved; shorter ones are saved every few, and the last one always.
AUTOSAVE_TIME_SHARE = 0.1
_RUN_ID = re.compile(r"^(?P<stamp>\d{8}-\d{6})-(?P<pid>\d+)-(?P<start>\d+)-(?P<token>[0-9a-f]{6})$")
_TMP = re.compile(r"^\.(?P<name>.+)" + re.escape(SUFFIX) + r"\..+\.tmp$")  # saving's temporary files

_claims: weakref.WeakValueDictionary[str, Autosaver] = weakref.WeakValueDictionary()
_claims_lock = threading.Lock()


class AutosaveTaken(RuntimeError):
    """Another run of this process already continues that autosaved run."""


def autosave_dir(checkpoint_dir: str | os.PathLike[str]) -> Path:
    """Return the autosave folder: ``$VAE_AUTOSAVE_DIR``, else ``.autosave/`` inside ``checkpoint_dir``."""
    override = os.environ.get(AUTOSAVE_DIR_ENV, "").strip()
    return Path(override).expanduser() if override else Path(checkpoint_dir) / AUTOSAVE_FOLDER


def autosave_keep() -> int:
    """Return how many unclaimed autosaves to keep (``$VAE_AUTOSAVE_KEEP``, default 10; 0 turns autosaving off).

    Raises:
        ValueError: the variable is not a whole number >= 0, with a message that says so.
    """
    raw = os.environ.get(AUTOSAVE_KEEP_ENV, "").strip()
    if not raw:
        return AUTOSAVE_KEEP
    try:
        keep = int(raw)
    except ValueError:
        keep = -1
    if keep < 0:
        raise ValueError(
            f"{AUTOSAVE_KEEP_ENV} must be a whole number >= 0 (0 turns autosaving off), got {raw!r}"
        )
    return keep


def _start_ticks(pid: int) -> int | None:
    """Return when process ``pid`` started (clock ticks since boot, Linux), 0 without /proc, None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None if Path("/proc/self/stat").exists() else _alive_without_proc(pid)
    except OSError:
        return 0
    # The command name (field 2) may hold spaces and parentheses: count fields after its closing ")".
    return int(text.rsplit(")", 1)[1].split()[19])


def _alive_without_proc(pid: int) -> int | None:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except OSError:  # it exists but is not ours
        return 0
    return 0


def new_run_id() -> str:
    """Return a fresh run id naming this process: ``YYYYmmdd-HHMMSS-<pid>-<start>-<token>``."""
    pid = os.getpid()
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{pid}-{_start_ticks(pid) or 0}-{secrets.token_hex(3)}"


def _owner_alive(run_id: str) -> bool:
    """Return whether the process named in ``run_id`` is another process that is still running."""
    match = _RUN_ID.match(run_id)
    if match is None:
        return False
    pid, start = int(match["pid"]), int(match["start"])
    if pid == os.getpid() and start == (_start_ticks(pid) or 0):
        return False  # this process: only a live Autosaver claims the run
    now = _start_ticks(pid)  # None: gone; another start time: the pid was reused by a new process
    return now is not None and (now == start or start == 0 or now == 0)


def claimed(run_id: str) -> bool:
    """Return whether a run still going (in this process or another) owns the autosave ``run_id``."""
    with _claims_lock:
        if run_id in _claims:
            return True
    return _owner_alive(run_id)


class Autosaver:
    """Write one run's state to ``<folder>/<run_id>.pt`` after every epoch, atomically.

    The object claims its run id (and ``replaces``, the autosave of an interrupted run it
    continues) for as long as it lives: a run holds it, so the file counts as interrupted only
    once its run is gone. A failed write never stops training: ``error`` says what went wrong.
    Writes are spaced so they take at most ``AUTOSAVE_TIME_SHARE`` of the time (``force`` skips that).
    """

    def __init__(
        self, folder: str | os.PathLike[str], *, replaces: str | os.PathLike[str] | None = None
    ) -> None:
        self.folder = Path(folder)
        self.run_id = new_run_id()
        self.path = self.folder / f"{self.run_id}{SUFFIX}"
        self.replaces = None if replaces is None else Path(replaces)
        self.error: str | None = None
        self.epochs_saved = 0
        self._last_end: float | None = None
        self._last_write_s = 0.0
        ids = [self.run_id] + ([self.replaces.stem] if self.replaces is not None else [])
        with _claims_lock:
            if any(i in _claims for i in ids):
                raise AutosaveTaken("another session of this server has already resumed or reopened that run")
            for i in ids:
                _claims[i] = self

    def save(
        self,
        *,
        model: VAE,
        train_config: TrainConfig,
        dataset: str,
        preprocessing: str,
        class_names: Iterable[str],
        history: Sequence[Mapping[str, Any]],
        timeline: Timeline | None,
        epochs_planned: int,
        force: bool = False,
        train_state: TrainState | None = None,
    ) -> Path | None:
        """Write the run's current state when due (or ``force``); return the path, or None when not written.

        A failed write sets ``error`` (and clears it once a later write succeeds). ``train_state``
        (``fit``'s result, known once a run ends) lets a resume from the autosave continue Adam exactly.
        """
        start = time.monotonic()
        if not force and self._last_end is not None:
            if start - self._last_end < self._last_write_s / AUTOSAVE_TIME_SHARE:
                return None
        try:
            save_checkpoint(
                self.path,
                model=model,
                train_config=train_config,
                dataset=dataset,
                history=history,
                preprocessing=preprocessing,
                class_names=class_names,
                extra={"autosave": {"run_id": self.run_id, "epochs_planned": int(epochs_planned)}},
                timeline=timeline,
                train_state=train_state,
            )
        except (OSError, ValueError) as exc:
            self.error = f"{type(exc).__name__}: {getattr(exc, 'strerror', None) or exc}"
            return None
        self.error, self.epochs_saved = None, len(history)
        self._last_end = time.monotonic()
        self._last_write_s = self._last_end - start
        if self.replaces is not None:  # the continued run's file now holds everything the old one did
            with contextlib.suppress(OSError):
                self.replaces.unlink(missing_ok=True)
        with contextlib.suppress(OSError, ValueError):
            prune(self.folder, keep=autosave_keep())
        return self.path

    def discard(self) -> None:
        """Delete this run's autosave (and the one it replaces): the run was saved for good."""
        for path in (self.path, self.replaces):
            if path is not None:
                with contextlib.suppress(OSError):
                    path.unlink(missing_ok=True)


@dataclass(frozen=True)
class InterruptedRun:
    """An autosave whose run is gone: its file, its metadata, and how far the run had got."""

    path: Path
    info: CheckpointInfo
    epochs_planned: int
    saved_at: float  # the file's mtime, seconds since the epoch

    @property
    def epochs_done(self) -> int:
        """Return the number of epochs in the autosave."""
        return self.info.epochs

    @property
    def epochs_left(self) -> int:
        """Return how many of the planned epochs the run had still to train (0 when it had ended)."""
        return max(0, self.epochs_planned - self.info.epochs)


def interrupted_runs(folder: str | os.PathLike[str]) -> list[InterruptedRun]:
    """Return the autosaves in ``folder`` that no running run claims, newest first.

    Temporary files of writes that a kill cut short are removed on the way; files that cannot
    be read as checkpoints are left alone and not offered.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    _remove_stale_temporaries(folder)
    found = []
    for path in folder.glob(f"*{SUFFIX}"):
        if path.name.startswith(".") or not path.is_file() or claimed(path.stem):
            continue
        with contextlib.suppress(OSError, CheckpointError):
            stat = path.stat()
            found.append(_describe(path, stat.st_mtime_ns, stat.st_size))
    return sorted(found, key=lambda r: r.saved_at, reverse=True)


def planned_epochs(info: CheckpointInfo) -> int:
    """Return how many epochs an autosaved run meant to train in all (its history's length if unrecorded)."""
    meta = info.extra.get("autosave") if isinstance(info.extra, dict) else None
    planned = meta.get("epochs_planned") if isinstance(meta, dict) else None
    if not isinstance(planned, int) or isinstance(planned, bool):
        return info.epochs
    return max(planned, info.epochs)


@functools.lru_cache(maxsize=64)
def _describe(path: Path, mtime_ns: int, size: int) -> InterruptedRun:
    # Keyed by mtime and size, so a listing on every page run reads each file once.
    info = read_info(path)
    return InterruptedRun(path, info, planned_epochs(info), mtime_ns / 1e9)


def _remove_stale_temporaries(folder: Path) -> None:
    for tmp in folder.glob(".*.tmp"):
        match = _TMP.match(tmp.name)
        if match is not None and not claimed(match["name"]):
            with contextlib.suppress(OSError):
                tmp.unlink()


def prune(folder: str | os.PathLike[str], *, keep: int) -> list[Path]:
    """Delete the oldest unclaimed autosaves beyond the newest ``keep``; return what was deleted."""
    runs = interrupted_runs(folder)
    gone = []
    for run in runs[keep:]:
        with contextlib.suppress(OSError):
            run.path.unlink()
            gone.append(run.path)
    return gone


def discard(path: str | os.PathLike[str]) -> None:
    """Delete an interrupted run's autosave (the user chose to drop it); a missing file is not an error."""
    if claimed(Path(path).stem):
        raise AutosaveTaken("that run is being continued by another session")
    Path(path).unlink(missing_ok=True)


def age_text(saved_at: float, *, now: float | None = None) -> str:
    """Return how long ago ``saved_at`` (seconds since the epoch) was, e.g. ``"3 min ago"``."""
    seconds = max(0.0, (time.time() if now is None else now) - saved_at)
    for unit, size in (("day", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            count = int(seconds // size)
            return f"{count} {unit}{'s' if unit == 'day' and count > 1 else ''} ago"
    return "just now"
