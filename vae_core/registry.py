"""Keep the server's training runs by id, so a browser tab that reloads or reopens finds its run again.

A run belongs to the registry, not to the browser session that started it. A session that shows
the run *watches* it: it adds a watcher (a "is my session still there?" check) under its own key.
The run asks ``wanted`` every few seconds and stops once no watcher says yes (the tab closed and
did not come back), as an abandoned run always did. An ended run stays reachable for
``KEEP_ENDED_S`` (one hour) so a reloaded tab can still save it, then it is dropped; a run that
stopped because nobody watched it is dropped at once, so its autosave is offered as an unsaved
run (``vae_core.autosave``). Everything here is thread-safe: pages ask from their script threads,
runs from their training threads.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

KEEP_ENDED_S = 3600.0  # an ended run can be reattached (and saved) for this long after it ended
MAX_ENDED = 8  # ended runs kept at most (each holds its dataset and model); the oldest go first
ID_BYTES = 9  # 12 URL-safe characters: an id cannot be guessed, so a run's URL is its only key


class Run(Protocol):
    """What the registry needs of a run: whether its work has ended."""

    @property
    def ended(self) -> bool: ...


class RegisteredRun(NamedTuple):
    """A run found by id: the run, the label it was registered with, its id."""

    run_id: str
    run: Any
    label: str


@dataclass
class _Entry:
    run: Any
    label: str
    watchers: dict[str, Callable[[], bool]] = field(default_factory=dict)
    ended_at: float | None = None
    abandoned: bool = False


def new_run_id() -> str:
    """Return a fresh, unguessable run id that is safe in a URL."""
    return secrets.token_urlsafe(ID_BYTES)


class RunRegistry:
    """Hold runs by id with the sessions that watch them; drop ended runs after a while.

    Args:
        keep_ended_s: how long an ended run stays reachable after it ended.
        max_ended: how many ended runs are kept at most (the oldest ended go first).
        clock: seconds, monotonic (tests pass a fake).
    """

    def __init__(
        self,
        *,
        keep_ended_s: float = KEEP_ENDED_S,
        max_ended: int = MAX_ENDED,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if keep_ended_s < 0 or max_ended < 0:
            raise ValueError(f"keep_ended_s and max_ended must be >= 0, got {keep_ended_s} and {max_ended}")
        self._keep_ended_s, self._max_ended, self._clock = keep_ended_s, max_ended, clock
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()

    def add(
        self, run_id: str, run: Run, *, label: str, watcher_key: str, watcher: Callable[[], bool]
    ) -> None:
        """Register ``run`` under ``run_id``, watched by the session ``watcher_key``.

        Register a run before starting it: a run asks ``wanted`` and an unknown id is not wanted.

        Raises:
            ValueError: ``run_id`` is already taken.
        """
        with self._lock:
            if run_id in self._entries:
                raise ValueError(f"run id {run_id!r} is already registered")
            self._entries[run_id] = _Entry(run, label, {watcher_key: watcher})
        self.prune()

    def attach(self, run_id: str, *, watcher_key: str, watcher: Callable[[], bool]) -> RegisteredRun | None:
        """Let the session ``watcher_key`` watch the run ``run_id``; return it, or None when it is gone."""
        self.prune()
        with self._lock:
            entry = self._entries.get(run_id)
            if entry is None:
                return None
            entry.watchers[watcher_key] = watcher
            entry.abandoned = False
            return RegisteredRun(run_id, entry.run, entry.label)

    def get(self, run_id: str) -> RegisteredRun | None:
        """Return the run registered as ``run_id`` without watching it, or None when it is gone."""
        self.prune()
        with self._lock:
            entry = self._entries.get(run_id)
            return None if entry is None else RegisteredRun(run_id, entry.run, entry.label)

    def forget(self, run_id: str) -> None:
        """Drop ``run_id`` (a run that never started); an unknown id is not an error."""
        with self._lock:
            self._entries.pop(run_id, None)

    def wanted(self, run_id: str) -> bool:
        """Return whether any session still watches ``run_id``; watchers that say no are dropped.

        A run asks this from its training thread. The watchers are called outside the lock, so a
        slow one never blocks a page. Once nobody wants the run it is marked abandoned, and it is
        dropped as soon as it ends.
        """
        with self._lock:
            entry = self._entries.get(run_id)
            if entry is None:
                return False
            watchers = dict(entry.watchers)
        gone = [key for key, watcher in watchers.items() if not watcher()]
        with self._lock:
            for key in gone:
                # Only the watcher that said no: the same session may have attached a new one meanwhile.
                if entry.watchers.get(key) is watchers[key]:
                    del entry.watchers[key]
            if not entry.watchers:
                entry.abandoned = True
            return bool(entry.watchers)

    def prune(self) -> list[str]:
        """Drop ended runs past ``keep_ended_s``, abandoned ended runs, and the oldest beyond ``max_ended``.

        Returns:
            The ids dropped.
        """
        now = self._clock()
        with self._lock:
            for entry in self._entries.values():
                if entry.ended_at is None and entry.run.ended:
                    entry.ended_at = now
            ended = sorted(
                ((e.ended_at, run_id) for run_id, e in self._entries.items() if e.ended_at is not None),
                reverse=True,
            )
            dropped = [
                run_id
                for rank, (ended_at, run_id) in enumerate(ended)
                if self._entries[run_id].abandoned
                or now - ended_at > self._keep_ended_s
                or rank >= self._max_ended
            ]
            for run_id in dropped:
                del self._entries[run_id]
        return dropped

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)
