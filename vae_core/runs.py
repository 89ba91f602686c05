"""Run ``fit`` in a background thread and expose thread-safe snapshots of its progress for a UI."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from vae_core.autosave import Autosaver, InterruptedRun, planned_epochs
from vae_core.checkpoints import load_checkpoint
from vae_core.config import ModelConfig, TrainConfig
from vae_core.datasets import DatasetSplits, load_dataset
from vae_core.imaging import to_uint8
from vae_core.inference import decode_latents, encode
from vae_core.model import VAE
from vae_core.safeload import CheckpointError
from vae_core.timeline import Timeline, TimelineFrame, TimelineRecorder
from vae_core.train_state import TrainState
from vae_core.training import NonFiniteLossError, StepInfo, fit

PREVIEW_IMAGES = 8
PREVIEW_SEED = 4321
MAX_CONCURRENT_RUNS = 2
KEEP_GOING_CHECK_S = 2.0  # how often a run asks whether anyone still wants it
Status = Literal["pending", "loading", "running", "finished", "stopped", "failed"]


class RunCapacityError(RuntimeError):
    """Raised when too many training runs are already going on in this process."""


@dataclass(frozen=True)
class RunSnapshot:
    """A consistent, immutable view of a ``TrainingRun`` for a UI to poll."""

    status: Status
    epoch: int
    epochs: int
    step: int
    steps_per_epoch: int
    history: tuple[dict[str, float], ...]
    originals: np.ndarray | None
    reconstructions: np.ndarray | None
    samples: np.ndarray | None
    timeline: tuple[TimelineFrame, ...]
    timeline_labels: np.ndarray | None
    error: str | None
    message: str
    autosave_error: str | None = None
    seconds: float = 0.0  # wall time since training started (loading the data not counted)
    steps: int = 0  # optimisation steps taken by this run
    epochs_note: str | None = None  # why the run trains this many epochs, when it chose them itself

    @property
    def done(self) -> bool:
        """Return whether the run has ended (finished, stopped or failed)."""
        return self.status in ("finished", "stopped", "failed")

    @property
    def progress(self) -> float:
        """Return the fraction of all steps done, in [0, 1]."""
        total = self.epochs * max(1, self.steps_per_epoch)
        done = (self.epoch - 1) * self.steps_per_epoch + self.step if self.epoch else 0
        return 1.0 if self.status == "finished" else min(1.0, done / total)


@dataclass
class _RunState:
    status: Status = "pending"
    epoch: int = 0
    step: int = 0
    steps_per_epoch: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    originals: np.ndarray | None = None
    reconstructions: np.ndarray | None = None
    samples: np.ndarray | None = None
    timeline: list[TimelineFrame] = field(default_factory=list)
    timeline_labels: np.ndarray | None = None
    error: str | None = None
    message: str = "waiting to start"


_slots = threading.BoundedSemaphore(MAX_CONCURRENT_RUNS)


class TrainingRun:
    """Run ``fit`` in a background thread and expose thread-safe snapshots of its progress.

    The run trains its own model (never a cached or shared one). After it ends, ``model``
    holds the last good epoch and ``data`` the dataset it used, ready for saving.
    ``keep_going``, when given, is asked every few seconds whether the run is still
    wanted (a UI passes "is the browser session still open"); when it says no, the run
    stops as if Stop were pressed, so abandoned runs free their thread and slot.
    ``autosave``, when given, writes the run's state after every epoch (see ``vae_core.autosave``).
    ``train=False`` only loads the data and the initial state, then ends as "stopped": an
    autosaved run reopened so that it can be saved (``from_autosave``).
    ``train_state`` (a checkpoint's ``train_state``) continues Adam's moments and the step count
    exactly, so a resumed loss curve does not jump; ``train_state`` afterwards holds ``fit``'s.
    ``epochs_for``, when given, chooses the epoch count once the data is loaded: it gets the
    number of training images and returns (epochs, a sentence saying why), e.g. from
    ``vae_core.defaults.suggested_epochs``; it replaces ``train_config.epochs``.
    """

    def __init__(
        self,
        model_config: ModelConfig,
        train_config: TrainConfig,
        *,
        data: DatasetSplits | None = None,
        data_root: str | None = None,
        init_state: dict[str, torch.Tensor] | None = None,
        history: Sequence[dict[str, float]] = (),
        timeline: Timeline | None = None,
        keep_going: Callable[[], bool] | None = None,
        autosave: Autosaver | None = None,
        train: bool = True,
        folder_roots: Sequence[Path] | None = None,
        epochs_for: Callable[[int], tuple[int, str]] | None = None,
        train_state: TrainState | None = None,
    ) -> None:
        self.model_config = model_config
        self.train_config = train_config
        self.data = data
        self._data_root = data_root
        self._folder_roots = folder_roots  # a folder dataset must lie below one of these (None: anywhere)
        self._init_state = init_state
        self._prior_history = [dict(r) for r in history]
        self._prior_timeline = timeline
        self._recorder: TimelineRecorder | None = None
        self._keep_going = keep_going
        self.autosave = autosave
        self._train_epochs = train_config.epochs if train else 0
        self._epochs_for = epochs_for
        # The optimizer state and step count to continue from (``fit(resume=...)``). ``train_state`` is
        # what goes with the model when saved: None while training, fit's state after the last
        # completed epoch once the run ends.
        self._resume = train_state
        # Adam's state after the last completed epoch (``fit``'s ``on_state``): a mid-run autosave
        # carries it, so a run a crash cut short resumes exactly too.
        self._epoch_state = train_state
        self.train_state = None if train else train_state
        self._epochs_note: str | None = None
        # Written by the training thread after every step without a lock: one tuple assignment is atomic.
        self._live: tuple[int, int, int, int] | None = None  # (epoch, step, steps_per_epoch, steps taken)
        self._started_at: float | None = None
        self._ended_at: float | None = None
        self._abandoned = False
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._state = _RunState(history=list(self._prior_history))
        self._thread: threading.Thread | None = None
        self.model: VAE | None = None

    @classmethod
    def from_autosave(
        cls,
        item: InterruptedRun | str | os.PathLike[str],
        *,
        train: bool = True,
        data: DatasetSplits | None = None,
        data_root: str | None = None,
        folder_roots: Sequence[Path] | None = None,
        keep_going: Callable[[], bool] | None = None,
    ) -> TrainingRun:
        """Continue an interrupted run from its autosave (``train``), or reopen it for saving.

        ``folder_roots`` bounds a folder dataset as for a new run (the app passes its allowed roots).

        The run trains the epochs it had left (at least one more when it had ended), continues
        its history and timeline, and autosaves to a new file that replaces the old one after
        its first epoch.

        Raises:
            CheckpointError: the autosave cannot be read, or holds no training settings.
            AutosaveTaken: another run of this process already continues it.
        """
        path = item.path if isinstance(item, InterruptedRun) else Path(item)
        loaded = load_checkpoint(path)
        info = loaded.info
        if info.train_config is None:
            raise CheckpointError(f"{path.name}: this autosave holds no training settings to continue with")
        left = planned_epochs(info) - info.epochs
        return cls(
            info.model_config,
            replace(info.train_config, epochs=max(1, left)),
            data=data,
            data_root=data_root,
            folder_roots=folder_roots,
            # A copy: a loaded model is read-only (no grad), and the run trains its own.
            init_state={k: t.clone() for k, t in loaded.model.state_dict().items()},
            history=info.history,
            timeline=loaded.timeline,
            train_state=loaded.train_state,
            keep_going=keep_going,
            autosave=Autosaver(path.parent, replaces=path),
            train=train,
        )

    def start(self) -> TrainingRun:
        """Start training in a daemon thread; raise ``RunCapacityError`` when too many runs are going."""
        if self._thread is not None:
            raise RuntimeError("this run was already started")
        if not _slots.acquire(blocking=False):
            raise RunCapacityError(
                f"{MAX_CONCURRENT_RUNS} training runs are already going on this server; "
                "wait for one to finish or stop it, then start again"
            )
        self._thread = threading.Thread(target=self._work, name="vae-training", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Ask the run to stop at its next step; the model keeps its last completed epoch."""
        self._stop.set()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the thread to end; return whether it has."""
        if self._thread is not None:
            self._thread.join(timeout)
            return not self._thread.is_alive()
        return True

    @property
    def alive(self) -> bool:
        """Return whether the worker thread is still running."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def ended(self) -> bool:
        """Return whether the run was started and its worker thread has ended."""
        return self._thread is not None and not self._thread.is_alive()

    def snapshot(self) -> RunSnapshot:
        """Return an immutable view of the current progress without blocking on training."""
        live = self._live
        with self._lock:
            s = self._state
            epoch, step, per_epoch, steps = (
                live if live is not None else (s.epoch, s.step, s.steps_per_epoch, 0)
            )
            started = self._started_at
            seconds = 0.0 if started is None else (self._ended_at or time.monotonic()) - started
            return RunSnapshot(
                status=s.status,
                epoch=epoch,
                epochs=len(self._prior_history) + self._train_epochs,
                step=step,
                steps_per_epoch=per_epoch,
                history=tuple(s.history),
                originals=s.originals,
                reconstructions=s.reconstructions,
                samples=s.samples,
                timeline=tuple(s.timeline),
                timeline_labels=s.timeline_labels,
                error=s.error,
                message=s.message,
                autosave_error=None if self.autosave is None else self.autosave.error,
                seconds=seconds,
                steps=steps,
                epochs_note=self._epochs_note,
            )

    def timeline(self) -> Timeline | None:
        """Return the training timeline recorded so far (earlier frames of a resumed model included)."""
        return None if self._recorder is None else self._recorder.timeline()

    def _update(self, **changes: Any) -> None:
        with self._lock:
            for key, value in changes.items():
                setattr(self._state, key, value)

    def _work(self) -> None:
        try:
            self._train()
        except NonFiniteLossError as exc:
            self.train_state = self._epoch_state  # the model went back to its last good epoch: its state
            self._save_progress(force=True)  # the model is back at its last good epoch
            self._update(status="failed", error=str(exc), message="stopped: the loss became non-finite")
        except Exception as exc:  # the UI shows the message; the thread must not die silently
            self._update(status="failed", error=f"{type(exc).__name__}: {exc}", message="training failed")
        finally:
            if self._started_at is not None:
                self._ended_at = time.monotonic()
            _slots.release()

    def _train(self) -> None:
        self._update(status="loading", message="loading the dataset")
        if self.data is None:
            self.data = load_dataset(
                self.train_config.dataset, root=self._data_root, folder_roots=self._folder_roots
            )
        data = self.data
        if self._epochs_for is not None and self._train_epochs:
            n_train = len(data.train_x[: self.train_config.max_train_images])
            epochs, note = self._epochs_for(n_train)
            with self._lock:
                self.train_config = replace(self.train_config, epochs=epochs)
                self._train_epochs, self._epochs_note = epochs, note
        torch.manual_seed(self.train_config.seed)
        model = VAE(self.model_config)
        if self._init_state is not None:
            model.load_state_dict(self._init_state)
        self.model = model
        gen = torch.Generator().manual_seed(PREVIEW_SEED)
        previews = data.test_x[torch.randperm(len(data.test_x), generator=gen)[:PREVIEW_IMAGES]]
        recorder = TimelineRecorder(
            data.test_x, data.test_y, latent_dim=self.model_config.latent_dim, previous=self._prior_timeline
        )
        self._recorder = recorder
        self._update(
            originals=previews.numpy(),
            timeline=list(recorder.frames),
            timeline_labels=recorder.labels,
            status="running",
            message="training",
        )
        if not self._train_epochs:
            model.eval()
            kept = len(self._prior_history)
            self._update(
                status="stopped",
                epoch=kept,
                step=1,
                steps_per_epoch=1,  # so progress reads as complete
                message=f"reopened from its autosave after epoch {kept}",
            )
            return

        last_check = time.monotonic()
        steps = 0

        def on_step(info: StepInfo) -> None:
            # Every step: no lock and no copy, one tuple stored for the page to read (see snapshot).
            nonlocal last_check, steps
            steps += 1
            self._live = (info.epoch, info.step, info.steps_per_epoch, steps)
            if self._keep_going is not None and time.monotonic() - last_check > KEEP_GOING_CHECK_S:
                last_check = time.monotonic()
                if not self._keep_going():
                    self._abandoned = True
                    self._stop.set()

        def on_epoch(record: dict[str, float], model: VAE) -> None:
            frame = recorder(record, model)
            recon = to_uint8(decode_latents(model, encode(model, previews).mu))
            with self._lock:
                s = self._state
                s.history = s.history + [record]
                s.reconstructions, s.samples = recon, frame.samples
                s.timeline = s.timeline + [frame]
                s.message = f"epoch {int(record['epoch'])} done: -ELBO {record['val_total']:.1f} nats (test)"
            self._save_progress(force=False)  # between epochs, so a kill loses at most the epoch in progress

        self._started_at = time.monotonic()
        result = fit(
            model,
            data,
            self.train_config,
            on_step=on_step,
            on_epoch=on_epoch,
            stop=self._stop,
            history=self._prior_history,
            resume=self._resume,
            on_state=self._keep_state,
        )
        self.train_state = result.state
        model.cpu().eval()
        self._save_progress(force=True)  # the last epoch, whether or not its turn came
        if result.stopped:
            kept = len(result.history)
            why = "abandoned (its browser session closed)" if self._abandoned else "stopped"
            self._update(status="stopped", message=f"{why}; kept the model after epoch {kept}")
        else:
            self._update(status="finished", message=f"finished {len(result.history)} epochs")

    def _keep_state(self, state: TrainState) -> None:
        self._epoch_state = state

    def _save_progress(self, *, force: bool) -> None:
        """Autosave the model and history as they are now (on the training thread, between epochs)."""
        history = self.snapshot().history
        saver = self.autosave
        if saver is None or self.model is None or self.data is None or self._recorder is None:
            return
        # A forced write is skipped when this epoch is on disk already, unless the run's end brought its train state.
        if not history or (force and saver.epochs_saved == len(history) and self.train_state is None):
            return
        saver.save(
            model=self.model,
            train_config=self.train_config,
            dataset=self.data.name,
            preprocessing=self.data.preprocessing,
            class_names=self.data.class_names,
            history=history,
            timeline=self._recorder.timeline(),
            epochs_planned=len(self._prior_history) + self.train_config.epochs,
            force=force,
            train_state=self.train_state if self.train_state is not None else self._epoch_state,
        )
