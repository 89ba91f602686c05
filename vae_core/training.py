"""Train a VAE with ``fit``: plain PyTorch, the data held as one tensor and batched by index.

The loop reports through callbacks (``on_step``, ``on_epoch``) and stops on an event, so the
app (through ``runs.TrainingRun``), the CLI and the tests all drive the same code.
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch

from vae_core.config import TrainConfig
from vae_core.datasets import DatasetSplits, to_float
from vae_core.losses import elbo_loss, kl_weight
from vae_core.model import VAE

EVAL_BATCH = 1000


class NonFiniteLossError(RuntimeError):
    """Raised when the loss becomes NaN or infinite; the model holds the last good epoch."""


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
