"""Train a VAE: ``fit`` in plain PyTorch, and ``TrainingRun`` to run it in a background thread."""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

import numpy as np
import torch

from vae_core.config import ModelConfig, TrainConfig
from vae_core.data import DatasetSplits, load_dataset, to_float
from vae_core.losses import elbo_loss, kl_weight
from vae_core.model import VAE

EVAL_BATCH = 1000
PREVIEW_IMAGES = 8
PRIOR_GRID = 16
TIMELINE_POINTS = 500
MAX_CONCURRENT_RUNS = 2
KEEP_GOING_CHECK_S = 2.0  # how often a run asks whether anyone still wants it

Status = Literal["pending", "loading", "running", "finished", "stopped", "failed"]


class NonFiniteLossError(RuntimeError):
    """Raised when the loss becomes NaN or infinite; the model holds the last good epoch."""


class RunCapacityError(RuntimeError):
    """Raised when too many training runs are already going on in this process."""


class StepInfo(NamedTuple):
    """Progress after one optimisation step; losses are batch means in nats."""

    epoch: int
    step: int
    steps_per_epoch: int
    total: float
    recon: float
    kl: float


class FitResult(NamedTuple):
    """What ``fit`` returns: the per-epoch history, whether it was stopped, and its wall time."""

    history: list[dict[str, float]]
    stopped: bool
    seconds: float


def select_device(name: str = "auto") -> torch.device:
    """Return the named device, or for ``"auto"`` the fastest available (cuda, mps, cpu)."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for, but no CUDA GPU is available")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError("device 'mps' was asked for, but Apple's MPS backend is not available")
    return torch.device(name)


def make_optimizer(model: VAE, *, lr: float) -> torch.optim.Optimizer:
    """Return Adam with the fastest implementation the device offers (fused, else foreach)."""
    try:
        return torch.optim.Adam(model.parameters(), lr=lr, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(model.parameters(), lr=lr, foreach=True)


@torch.inference_mode()
def evaluate_terms(
    model: VAE, x_uint8: torch.Tensor, *, binarize_seed: int | None = None, batch_size: int = EVAL_BATCH
) -> dict[str, float]:
    """Return the mean -ELBO, reconstruction and KL (nats per image, beta 1) over uint8 images.

    With ``binarize_seed`` the targets are binarized once with that seed, so repeated
    evaluations of a dynamically binarized model see the same test set.
    """
    was_training = model.training
    model.eval()
    gen = None
    if binarize_seed is not None:
        gen = torch.Generator(device=x_uint8.device).manual_seed(binarize_seed)
    sums = torch.zeros(2, dtype=torch.float64)
    for start in range(0, len(x_uint8), batch_size):
        x = to_float(x_uint8[start : start + batch_size].to(model.device))
        if gen is not None:
            x = torch.bernoulli(x, generator=gen) if x.device == gen.device else torch.bernoulli(x)
        out = model(x)
        terms = elbo_loss(
            x, out.logits, out.mu, out.logvar, likelihood=model.config.likelihood, log_scale=model.log_scale
        )
        sums += torch.stack([terms.recon, terms.kl]).double().cpu() * len(x)
    model.train(was_training)
    recon, kl = (sums / max(1, len(x_uint8))).tolist()
    return {"total": recon + kl, "recon": recon, "kl": kl}


def fit(
    model: VAE,
    data: DatasetSplits,
    config: TrainConfig,
    *,
    on_step: Callable[[StepInfo], None] | None = None,
    on_epoch: Callable[[dict[str, float], VAE], None] | None = None,
    stop: threading.Event | None = None,
    history: Sequence[dict[str, float]] = (),
) -> FitResult:
    """Train ``model`` in place on ``data.train_x``, validating on ``data.test_x`` after each epoch.

    The training images stay on the device as one uint8 tensor and are batched by a
    shuffled index (no per-item DataLoader). Totals in the history are the negative ELBO
    (recon + KL, nats per image); ``kl_weight`` records the beta actually applied.

    Args:
        model: the VAE to train; moved to ``config.device``.
        data: train and test images, uint8 (N, C, H, W), shaped like ``model.config.image_shape``.
        config: epochs, batch size, learning rate, warm-up, seed, device, binarization.
        on_step: called after every step with a ``StepInfo``.
        on_epoch: called after every epoch with the new history record and the model.
        stop: when set, training stops at the next step and the model returns to the
            state it had after the last completed epoch.
        history: records of earlier training to continue (epochs count on from them).

    Returns:
        FitResult(history, stopped, seconds), the history including ``history``'s records.

    Raises:
        NonFiniteLossError: the loss became NaN or infinite; the model holds the last good epoch.
        ValueError: the data does not match the model's image shape.
    """
    shape = tuple(data.train_x.shape[1:])
    if shape != model.config.image_shape:
        raise ValueError(f"the data's images are {shape}, but the model expects {model.config.image_shape}")
    device = select_device(config.device)
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    model.to(device).train()
    optimizer = make_optimizer(model, lr=config.lr)
    train_x = data.train_x[: config.max_train_images].to(device)
    test_x = data.test_x.to(device)
    binarize = config.binarize and model.config.likelihood == "bernoulli"
    beta = model.config.beta
    n = len(train_x)
    steps_per_epoch = (n + config.batch_size - 1) // config.batch_size
    records = [dict(r) for r in history]
    first_epoch = len(records) + 1
    good_state = copy.deepcopy(model.state_dict())
    started = time.perf_counter()
    stopped = False
    for epoch in range(first_epoch, first_epoch + config.epochs):
        epoch_start = time.perf_counter()
        order = torch.randperm(n, generator=gen).to(device)
        sums = torch.zeros(3, device=device)
        weight = beta
        for step in range(steps_per_epoch):
            if stop is not None and stop.is_set():
                stopped = True
                break
            idx = order[step * config.batch_size : (step + 1) * config.batch_size]
            x = to_float(train_x[idx])
            if binarize:
                x = torch.bernoulli(x)
            weight = kl_weight(
                epoch - first_epoch + step / steps_per_epoch, beta=beta, warmup_epochs=config.kl_warmup_epochs
            )
            out = model(x)
            terms = elbo_loss(
                x,
                out.logits,
                out.mu,
                out.logvar,
                likelihood=model.config.likelihood,
                beta=weight,
                log_scale=model.log_scale,
            )
            if not torch.isfinite(terms.total):
                model.load_state_dict(good_state)
                raise NonFiniteLossError(
                    f"the loss became {terms.total.item()} at epoch {epoch}, step {step + 1}; the model was "
                    f"reset to the last good epoch ({epoch - 1}). Try a lower learning rate."
                )
            optimizer.zero_grad(set_to_none=True)
            terms.total.backward()
            optimizer.step()
            batch = torch.stack([terms.recon.detach(), terms.kl.detach(), torch.tensor(1.0, device=device)])
            sums += batch * len(x)
            if on_step is not None:
                on_step(StepInfo(epoch, step + 1, steps_per_epoch, *terms_floats(terms.recon, terms.kl)))
        if stopped:
            model.load_state_dict(good_state)
            break
        recon_sum, kl_sum, count = sums.tolist()  # waits for the device, so the timing below is honest
        train_seconds = time.perf_counter() - epoch_start
        val = evaluate_terms(model, test_x, binarize_seed=config.seed if binarize else None)
        model.train()
        record = {
            "epoch": epoch,
            "train_total": (recon_sum + kl_sum) / n,
            "train_recon": recon_sum / n,
            "train_kl": kl_sum / n,
            "val_total": val["total"],
            "val_recon": val["recon"],
            "val_kl": val["kl"],
            "kl_weight": weight,
            "seconds": train_seconds,
            "images_per_second": n / train_seconds,
        }
        records.append(record)
        good_state = copy.deepcopy(model.state_dict())
        if on_epoch is not None:
            on_epoch(record, model)
    model.eval()
    return FitResult(records, stopped, time.perf_counter() - started)


def terms_floats(recon: torch.Tensor, kl: torch.Tensor) -> tuple[float, float, float]:
    """Return (total, recon, kl) as Python floats, total = recon + kl."""
    r, k = recon.item(), kl.item()
    return r + k, r, k


@dataclass(frozen=True)
class TimelineFrame:
    """The latent state recorded after one epoch.

    ``mu`` is (TIMELINE_POINTS, D) for a fixed subset of test images; ``samples`` the
    decoded fixed prior grid, uint8 (PRIOR_GRID, C, H, W).
    """

    epoch: int
    mu: np.ndarray
    samples: np.ndarray


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
        keep_going: Callable[[], bool] | None = None,
    ) -> None:
        self.model_config = model_config
        self.train_config = train_config
        self.data = data
        self._data_root = data_root
        self._init_state = init_state
        self._prior_history = [dict(r) for r in history]
        self._keep_going = keep_going
        self._abandoned = False
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._state = _RunState(history=list(self._prior_history))
        self._thread: threading.Thread | None = None
        self.model: VAE | None = None

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

    def snapshot(self) -> RunSnapshot:
        """Return an immutable view of the current progress without blocking on training."""
        with self._lock:
            s = self._state
            return RunSnapshot(
                status=s.status,
                epoch=s.epoch,
                epochs=len(self._prior_history) + self.train_config.epochs,
                step=s.step,
                steps_per_epoch=s.steps_per_epoch,
                history=tuple(s.history),
                originals=s.originals,
                reconstructions=s.reconstructions,
                samples=s.samples,
                timeline=tuple(s.timeline),
                timeline_labels=s.timeline_labels,
                error=s.error,
                message=s.message,
            )

    def _update(self, **changes: Any) -> None:
        with self._lock:
            for key, value in changes.items():
                setattr(self._state, key, value)

    def _work(self) -> None:
        try:
            self._train()
        except NonFiniteLossError as exc:
            self._update(status="failed", error=str(exc), message="stopped: the loss became non-finite")
        except Exception as exc:  # the UI shows the message; the thread must not die silently
            self._update(status="failed", error=f"{type(exc).__name__}: {exc}", message="training failed")
        finally:
            _slots.release()

    def _train(self) -> None:
        self._update(status="loading", message="loading the dataset")
        if self.data is None:
            self.data = load_dataset(self.train_config.dataset, root=self._data_root)
        data = self.data
        torch.manual_seed(self.train_config.seed)
        model = VAE(self.model_config)
        if self._init_state is not None:
            model.load_state_dict(self._init_state)
        self.model = model
        gen = torch.Generator().manual_seed(1234)
        n_test = len(data.test_x)
        preview_idx = torch.randperm(n_test, generator=gen)[:PREVIEW_IMAGES]
        timeline_idx = torch.randperm(n_test, generator=gen)[:TIMELINE_POINTS]
        prior_z = torch.randn(PRIOR_GRID, self.model_config.latent_dim, generator=gen)
        self._update(
            originals=data.test_x[preview_idx].numpy(),
            timeline_labels=data.test_y[timeline_idx].numpy(),
            status="running",
            message="training",
        )

        last_check = time.monotonic()

        def on_step(info: StepInfo) -> None:
            nonlocal last_check
            self._update(epoch=info.epoch, step=info.step, steps_per_epoch=info.steps_per_epoch)
            if self._keep_going is not None and time.monotonic() - last_check > KEEP_GOING_CHECK_S:
                last_check = time.monotonic()
                if not self._keep_going():
                    self._abandoned = True
                    self._stop.set()

        def on_epoch(record: dict[str, float], model: VAE) -> None:
            recon, samples, mu = _epoch_views(
                model, data.test_x[preview_idx], data.test_x[timeline_idx], prior_z
            )
            with self._lock:
                s = self._state
                s.history = s.history + [record]
                s.reconstructions, s.samples = recon, samples
                s.timeline = s.timeline + [TimelineFrame(int(record["epoch"]), mu, samples)]
                s.message = f"epoch {int(record['epoch'])} done: -ELBO {record['val_total']:.1f} nats (test)"

        result = fit(
            model,
            data,
            self.train_config,
            on_step=on_step,
            on_epoch=on_epoch,
            stop=self._stop,
            history=self._prior_history,
        )
        model.cpu().eval()
        if result.stopped:
            kept = len(result.history)
            why = "abandoned (its browser session closed)" if self._abandoned else "stopped"
            self._update(status="stopped", message=f"{why}; kept the model after epoch {kept}")
        else:
            self._update(status="finished", message=f"finished {len(result.history)} epochs")


@torch.inference_mode()
def _epoch_views(
    model: VAE, preview_x: torch.Tensor, timeline_x: torch.Tensor, prior_z: torch.Tensor
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    was_training = model.training
    model.eval()
    device = model.device
    recon = model.decode(model.encode(to_float(preview_x.to(device))).mu)
    samples = model.decode(prior_z.to(device))
    mu = model.encode(to_float(timeline_x.to(device))).mu
    model.train(was_training)
    return _to_uint8(recon), _to_uint8(samples), mu.float().cpu().numpy()


def _to_uint8(x: torch.Tensor) -> np.ndarray:
    return (x.clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
