"""Train a VAE with ``fit``: plain PyTorch, the data held as one tensor and batched by index.

The loop reports through callbacks (``on_step``, ``on_epoch``) and stops on an event, so the
app (through ``runs.TrainingRun``), the CLI and the tests all drive the same code. It returns the
optimizer state and step count (``TrainState``) that ``fit(resume=...)`` continues from exactly;
a folder too large for memory streams through DataLoader workers (``batches``), and under torchrun
the processes train data-parallel (``distributed``).
"""

from __future__ import annotations

import copy
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch

from vae_core.batches import Batches, LoaderBatches, TensorBatches
from vae_core.config import TrainConfig
from vae_core.datasets import DatasetSplits, to_float
from vae_core.distributed import Parallel
from vae_core.folder_stream import StreamedSplits
from vae_core.losses import elbo_loss, kl_weight
from vae_core.model import VAE
from vae_core.train_state import TrainState, load_into

EVAL_BATCH = 1000
# Steps between two NaN checks of the loss: each check waits for the device once.
FINITE_CHECK_EVERY = 32
# The CPU thread tuner (ThreadTuner): seconds between two trials of the other thread count, and
# steps timed per trial (the first step after a switch is not counted).
PROBE_EVERY_S = 3.0
PROBE_MAX_S = 30.0
PROBE_STEPS = 5


class NonFiniteLossError(RuntimeError):
    """Raised when the loss becomes NaN or infinite; the model holds the last good epoch."""


class StepInfo(NamedTuple):
    """Progress after one optimisation step; losses are batch means in nats.

    The losses stay on the device until ``total``, ``recon`` or ``kl`` is read, so a
    listener that only counts steps never waits for the device.
    """

    epoch: int
    step: int
    steps_per_epoch: int
    losses: torch.Tensor  # (2,): the batch's reconstruction and KL terms, detached

    @property
    def recon(self) -> float:
        """Return the batch-mean reconstruction term."""
        return float(self.losses[0])

    @property
    def kl(self) -> float:
        """Return the batch-mean KL term (unweighted)."""
        return float(self.losses[1])

    @property
    def total(self) -> float:
        """Return recon + KL, the batch's negative ELBO at beta 1."""
        recon, kl = self.losses.tolist()
        return recon + kl


class FitResult(NamedTuple):
    """What ``fit`` returns: the per-epoch history, whether it was stopped, its wall time, and what a resume needs.

    ``state`` is the optimizer state and step count after the last completed epoch.
    """

    history: list[dict[str, float]]
    stopped: bool
    seconds: float
    state: TrainState


class ThreadTuner:
    """Train on the CPU with torch's thread count or with one thread, whichever is faster now.

    On a machine whose cores other processes keep busy, the threads of each parallel op wait
    at its end for a thread the OS has descheduled, and a step can take ten times longer with
    two threads than with one (a loaded 2-core machine: 1,760 against 20,368 images/s for the
    Train page's model); on an idle machine two threads are about 1.5x faster. So after the
    first ``PROBE_STEPS`` steps, and then every ``PROBE_EVERY_S`` seconds (up to
    ``PROBE_MAX_S`` while the other setting keeps losing), the next steps run with the other
    setting, and the faster median step time decides. Off on other devices, with one thread,
    and under ``torch.use_deterministic_algorithms`` (a conv model's sums may round differently
    with another thread count; an MLP's do not). ``close`` restores the thread count the
    process had when the first of the runs that overlap in time started.
    """

    def __init__(self, device: torch.device) -> None:
        with _tuners_lock:
            if not _tuners["open"]:
                _tuners["threads"] = torch.get_num_threads()
            _tuners["open"] += 1
            self.original = _tuners["threads"]
        self.active = (
            device.type == "cpu" and self.original > 1 and not torch.are_deterministic_algorithms_enabled()
        )
        self.current = torch.get_num_threads()
        self.times: dict[int, deque[float]] = {}
        self.trial_left = 0  # steps left in a trial of the other setting (+1: its first is skipped)
        self.interval = PROBE_EVERY_S
        self.next_trial = 0.0  # the first trial as soon as PROBE_STEPS steps are timed

    def step_done(self, seconds: float) -> None:
        """Record one step's wall time; start, finish or skip a trial."""
        if not self.active:
            return
        if self.trial_left > PROBE_STEPS:  # the first step after a switch warms the new setting up
            self.trial_left -= 1
            return
        timed = self.times.setdefault(self.current, deque(maxlen=PROBE_STEPS))
        timed.append(seconds)
        other = self.original if self.current == 1 else 1
        if self.trial_left:
            self.trial_left -= 1
            if not self.trial_left:
                won = statistics.median(timed) < statistics.median(self.times[other])
                if not won:
                    self._use(other)
                self.interval = PROBE_EVERY_S if won else min(2 * self.interval, PROBE_MAX_S)
                self.next_trial = time.perf_counter() + self.interval
        elif len(timed) == PROBE_STEPS and time.perf_counter() >= self.next_trial:
            self._use(other)
            self.times.pop(other, None)
            self.trial_left = PROBE_STEPS + 1

    def _use(self, threads: int) -> None:
        self.current = threads
        torch.set_num_threads(threads)

    def close(self) -> None:
        """Stop tuning; the last run to close restores the original thread count."""
        with _tuners_lock:
            _tuners["open"] -= 1
            if not _tuners["open"] and torch.get_num_threads() != _tuners["threads"]:
                torch.set_num_threads(_tuners["threads"])


# Runs train at the same time (the app allows two); the thread count is the process's.
_tuners_lock = threading.Lock()
_tuners = {"open": 0, "threads": 1}


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
    data: DatasetSplits | StreamedSplits,
    config: TrainConfig,
    *,
    on_step: Callable[[StepInfo], None] | None = None,
    on_epoch: Callable[[dict[str, float], VAE], None] | None = None,
    on_state: Callable[[TrainState], None] | None = None,
    stop: threading.Event | None = None,
    history: Sequence[dict[str, float]] = (),
    resume: TrainState | None = None,
    parallel: Parallel | None = None,
    loader_workers: int = 2,
) -> FitResult:
    """Train ``model`` in place on ``data.train_x``, validating on ``data.test_x`` after each epoch.

    The training images stay on the device as one uint8 tensor and are batched by a
    shuffled index (no per-item DataLoader); a streamed folder's files are read by
    ``loader_workers`` DataLoader processes instead (``batches``). Totals in the history are the
    negative ELBO (recon + KL, nats per image); ``kl_weight`` records the beta actually applied,
    ``steps`` the optimisation steps taken so far.

    Args:
        model: the VAE to train; moved to ``config.device``.
        data: train and test images, uint8 (N, C, H, W), shaped like ``model.config.image_shape``
            (``folder_stream.StreamedSplits``: the training images as a dataset of files).
        config: epochs, batch size, learning rate, warm-up, seed, device, binarization.
        on_step: called after every step with a ``StepInfo`` (its losses stay on the device until read).
        on_epoch: called after every epoch with the new history record and the model.
        on_state: called after every epoch, before ``on_epoch``, with the optimizer state and step
            count after it (a copy: what ``resume`` needs), so a saver between epochs can resume exactly.
        stop: when set, training stops at the next step and the model returns to the
            state it had after the last completed epoch.
        history: records of earlier training to continue (epochs, and the KL warm-up, count on from them).
        resume: the optimizer state and step count to continue from (an earlier ``FitResult.state``);
            None starts Adam afresh.
        parallel: this process's place in a data-parallel run (``distributed.process_group``): the
            model is wrapped in DDP, each process trains on its share of every epoch with
            ``config.batch_size`` split between them, and the logged losses are summed over all.
        loader_workers: DataLoader worker processes for a streamed folder.

    Returns:
        FitResult(history, stopped, seconds, state), the history including ``history``'s records and
        ``state`` what ``resume`` needs to continue after the last completed epoch.

    Raises:
        NonFiniteLossError: the loss became NaN or infinite; the model holds the last good epoch.
        ValueError: the data does not match the model's image shape.
    """
    shape = tuple(data.test_x.shape[1:])
    if shape != model.config.image_shape:
        raise ValueError(f"the data's images are {shape}, but the model expects {model.config.image_shape}")
    device = select_device(config.device)
    # Each process of a data-parallel run draws its own noise; DDP broadcasts rank 0's weights.
    torch.manual_seed(config.seed + (parallel.rank if parallel else 0))
    model.to(device).train()
    net = parallel.wrap(model) if parallel else model
    optimizer = make_optimizer(model, lr=config.lr)
    if resume is not None:
        load_into(optimizer, resume, lr=config.lr)
    steps = resume.step if resume is not None else 0
    batches = _batches(data, config, device=device, parallel=parallel, workers=loader_workers)
    test_x = data.test_x.to(device)
    binarize = config.binarize and model.config.likelihood == "bernoulli"
    beta = model.config.beta
    n = batches.images_per_epoch * (parallel.world_size if parallel else 1)
    steps_per_epoch = batches.steps_per_epoch
    records = [dict(r) for r in history]
    first_epoch = len(records) + 1
    good_state = copy.deepcopy(model.state_dict())
    good_train = TrainState(copy.deepcopy(optimizer.state_dict()), steps)
    # Per-step losses stay on the device: (recon, KL) summed over images, and the optimised
    # total per step, checked for NaN every FINITE_CHECK_EVERY steps rather than waited on each step.
    sums = torch.zeros(2, device=device)
    totals = torch.zeros(steps_per_epoch, device=device)
    started = time.perf_counter()
    stopped = False
    tuner = ThreadTuner(device)
    tuner.active = tuner.active and parallel is None  # gloo's threads share the cores too
    try:
        for epoch in range(first_epoch, first_epoch + config.epochs):
            epoch_start = time.perf_counter()
            sums.zero_()
            weight = beta
            checked = 0
            for step, x_uint8 in enumerate(batches.epoch(epoch)):
                if stop is not None and stop.is_set():
                    stopped = True
                    break
                step_start = time.perf_counter()
                x = to_float(x_uint8)
                if binarize:
                    x = torch.bernoulli(x)
                # The warm-up counts from the first epoch ever trained, so a resumed run does not restart it.
                weight = kl_weight(
                    epoch - 1 + step / steps_per_epoch, beta=beta, warmup_epochs=config.kl_warmup_epochs
                )
                out = net(x)
                terms = elbo_loss(
                    x,
                    out.logits,
                    out.mu,
                    out.logvar,
                    likelihood=model.config.likelihood,
                    beta=weight,
                    log_scale=model.log_scale,
                )
                optimizer.zero_grad(set_to_none=True)
                terms.total.backward()
                optimizer.step()
                steps += 1
                with torch.no_grad():
                    totals[step] = terms.total
                    losses = torch.stack([terms.recon, terms.kl])
                    sums.add_(losses, alpha=len(x))
                tuner.step_done(time.perf_counter() - step_start)
                if step + 1 - checked >= FINITE_CHECK_EVERY:
                    _check_finite(totals, checked, step + 1, epoch=epoch, model=model, good_state=good_state)
                    checked = step + 1
                if on_step is not None:
                    on_step(StepInfo(epoch, step + 1, steps_per_epoch, losses))
            if stopped:
                model.load_state_dict(good_state)
                break
            _check_finite(totals, checked, steps_per_epoch, epoch=epoch, model=model, good_state=good_state)
            if parallel is not None:
                parallel.sum(sums)  # every process's images, for the log
            recon_sum, kl_sum = sums.tolist()  # waits for the device, so the timing below is honest
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
                "steps": steps,
            }
            records.append(record)
            good_state = copy.deepcopy(model.state_dict())
            good_train = TrainState(copy.deepcopy(optimizer.state_dict()), steps)
            if on_state is not None:
                on_state(good_train)
            if on_epoch is not None:
                on_epoch(record, model)
    finally:
        tuner.close()
    model.eval()
    return FitResult(records, stopped, time.perf_counter() - started, good_train)


def _batches(
    data: DatasetSplits | StreamedSplits,
    config: TrainConfig,
    *,
    device: torch.device,
    parallel: Parallel | None,
    workers: int,
) -> Batches:
    """Return the training batches: the tensor on the device, or a streamed folder's files through workers."""
    if isinstance(data.train_x, torch.Tensor):
        images = data.train_x[: config.max_train_images].to(device)
        return TensorBatches(images, batch_size=config.batch_size, seed=config.seed, parallel=parallel)
    files = data.train_x
    if config.max_train_images is not None:
        files = torch.utils.data.Subset(files, range(min(len(files), config.max_train_images)))
    return LoaderBatches(
        files,
        batch_size=config.batch_size,
        seed=config.seed,
        device=device,
        workers=workers,
        parallel=parallel,
    )


def _check_finite(
    totals: torch.Tensor, start: int, end: int, *, epoch: int, model: VAE, good_state: dict
) -> None:
    """Raise NonFiniteLossError, the model reset to ``good_state``, if a loss in ``totals[start:end]`` is NaN or infinite."""
    bad = ~torch.isfinite(totals[start:end])
    if not bool(bad.any()):  # the one wait for the device in FINITE_CHECK_EVERY steps
        return
    step = start + int(bad.nonzero()[0, 0])
    model.load_state_dict(good_state)
    raise NonFiniteLossError(
        f"the loss became {totals[step].item()} at epoch {epoch}, step {step + 1}; the model was "
        f"reset to the last good epoch ({epoch - 1}). Try a lower learning rate."
    )
