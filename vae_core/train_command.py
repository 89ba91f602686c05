"""The ``train`` command: load the data, train (one process, or data-parallel under torchrun), evaluate, save.

Only rank 0 of a data-parallel run (``vae_core.distributed``) prints, evaluates and saves.
``--resume CKPT`` continues a saved run with its optimizer state; the default epoch count gives
``defaults.MIN_STEPS`` optimisation steps, so a default run does not end before it has learnt.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from tqdm import tqdm

from vae_core.bundle import save_trained, test_metrics
from vae_core.checkpoints import CheckpointExists, LoadedCheckpoint, load_checkpoint, read_info
from vae_core.config import PRESETS, ModelConfig, TrainConfig
from vae_core.datasets import DatasetSplits, dataset_info, load_dataset
from vae_core.defaults import MIN_STEPS, suggested_epochs
from vae_core.distributed import Parallel, process_group
from vae_core.folder_stream import StreamedSplits, open_folder
from vae_core.limits import check_training
from vae_core.metrics import ELBO_ESTIMATOR
from vae_core.model import VAE
from vae_core.naming import free_name
from vae_core.safeload import CheckpointError
from vae_core.saving import check_writable
from vae_core.shipped import SHIPPED_NAMES
from vae_core.timeline import TimelineRecorder
from vae_core.training import StepInfo, fit

# The progress bar shows the batch's loss every this many steps.
LOSS_EVERY = 10


class ProgressBar:
    """A tqdm bar over one epoch's steps, for ``fit``'s ``on_step``; silent when stdout is not a terminal."""

    def __init__(self, *, enabled: bool) -> None:
        self.enabled = enabled
        self.bar: tqdm | None = None

    def __call__(self, info: StepInfo) -> None:
        if self.bar is None:
            self.bar = tqdm(
                total=info.steps_per_epoch,
                desc=f"epoch {info.epoch}",
                unit="step",
                leave=False,
                file=sys.stdout,
            )
        self.bar.update(info.step - self.bar.n)
        if info.step % LOSS_EVERY == 0:  # reading the loss waits for the device: not every step
            self.bar.set_postfix_str(f"-ELBO {info.total:.1f}", refresh=False)

    def close(self) -> None:
        """Remove the finished epoch's bar, so the epoch's line takes its place."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _say(main: bool) -> Callable[..., None]:
    """Return ``print`` for rank 0 (or a single process), and a function that prints nothing for the others."""
    return print if main else lambda *args, **kwargs: None


def _load_data(
    dataset: str, *, data_dir: str | None, image_shape: tuple[int, int, int], memory_mb: float | None
) -> DatasetSplits | StreamedSplits:
    """Load a named dataset, or open a folder (streamed from disk when it is larger than ``memory_mb``)."""
    if dataset.startswith("folder:"):
        return open_folder(dataset[7:], image_shape=image_shape, memory_mb=memory_mb)
    return load_dataset(dataset, root=data_dir)


def _progress_line(record: dict[str, float], epochs: int) -> str:
    return (
        f"epoch {int(record['epoch']):>3}/{epochs}  train -ELBO {record['train_total']:8.2f}  "
        f"test -ELBO {record['val_total']:8.2f} (recon {record['val_recon']:7.2f} + KL {record['val_kl']:6.2f})  "
        f"{record['images_per_second']:8.0f} img/s"
    )


def train_and_save(
    model_config: ModelConfig,
    train_config: TrainConfig,
    *,
    data_dir: str | None,
    out: Path,
    nll_k: int,
    nll_images: int | None,
    extra: dict | None = None,
    overwrite: bool = True,
    auto_epochs: bool = False,
    resume: LoadedCheckpoint | None = None,
    memory_mb: float | None = None,
    workers: int = 2,
    parallel: Parallel | None = None,
) -> Path:
    """Train, evaluate and save; return where the model was saved (a fallback path if ``out`` failed).

    ``auto_epochs`` replaces ``train_config.epochs`` by ``defaults.suggested_epochs`` for the data's size.
    ``resume`` continues that checkpoint's run: its weights, history, timeline and optimizer state.
    Under ``parallel`` every process trains its share; only rank 0 prints, evaluates and saves.
    """
    is_main = parallel is None or parallel.is_main
    say = _say(is_main)
    data = _load_data(
        train_config.dataset, data_dir=data_dir, image_shape=model_config.image_shape, memory_mb=memory_mb
    )
    n_train = (
        len(data.train_x)
        if train_config.max_train_images is None
        else min(len(data.train_x), train_config.max_train_images)
    )
    if auto_epochs:
        epochs = suggested_epochs(n_train, batch_size=train_config.batch_size)
        train_config = dataclasses.replace(train_config, epochs=epochs)
        say(
            f"{epochs} epochs: the fewest that give {MIN_STEPS} optimisation steps on {n_train:,} images (--epochs sets it)"
        )
    torch.manual_seed(train_config.seed)
    model = VAE(model_config)
    history, state, timeline = (), None, None
    if resume is not None:
        model.load_state_dict(resume.model.state_dict())
        history, state, timeline = resume.info.history, resume.train_state, resume.timeline
        note = (
            "with its optimizer state"
            if state
            else "WITHOUT optimizer state (saved before it was stored): Adam restarts"
        )
        say(f"resuming {resume.info.name} after epoch {len(history)} {note}")
    streamed = " (streamed from disk)" if isinstance(data, StreamedSplits) else ""
    say(
        f"training {model_config.arch} VAE (z={model_config.latent_dim}, {model.num_parameters():,} parameters) "
        f"on {data.name}: {len(data.train_x):,} train{streamed} / {len(data.test_x):,} test images"
        + (f" (the first {n_train:,} train images used)" if n_train < len(data.train_x) else "")
        + (f", {parallel.world_size} processes" if parallel else ""),
        flush=True,
    )
    recorder = TimelineRecorder(
        data.test_x, data.test_y, latent_dim=model_config.latent_dim, previous=timeline
    )
    last_epoch = len(history) + train_config.epochs
    bar = ProgressBar(enabled=is_main and sys.stdout.isatty())

    def on_epoch(record: dict[str, float], trained: VAE) -> None:
        bar.close()
        if is_main:
            recorder(record, trained)
        say(_progress_line(record, last_epoch), flush=True)

    result = fit(
        model,
        data,
        train_config,
        on_step=bar if bar.enabled else None,
        on_epoch=on_epoch,
        history=history,
        resume=state,
        parallel=parallel,
        loader_workers=workers,
    )
    bar.close()
    if not is_main:
        return out
    steps = result.state.step - (state.step if state else 0)
    say(
        f"trained {_count(len(result.history) - len(history), 'epoch')}, {_count(steps, 'optimisation step')} "
        f"({result.state.step:,} in all) in {result.seconds:.1f} s; evaluating (NLL with K={nll_k}) ...",
        flush=True,
    )
    metrics = test_metrics(model, data.test_x, nll_k=nll_k, nll_images=nll_images, seed=train_config.seed)
    say(metrics_text(metrics))

    def save(path: Path, replace: bool) -> Path:
        return save_trained(
            path,
            model=model,
            data=data,
            train_config=train_config,
            history=result.history,
            metrics=metrics,
            extra=extra,
            timeline=recorder.timeline(),
            train_state=result.state,
            overwrite=replace,
        )

    path = _save_with_fallback(out, overwrite=overwrite, save=save)
    print(f"saved {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return path


def _save_with_fallback(out: Path, *, overwrite: bool, save: Callable[[Path, bool], Path]) -> Path:
    """Save to ``out``; if writing fails, save under a new name in the current folder or the temp folder.

    A trained model is never lost to a write error (a full disk, a folder removed, the name
    taken meanwhile): the error and the fallback path go to stderr.
    """
    try:
        return save(out, overwrite)
    except (OSError, CheckpointExists) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        failure = f"could not write {out}: {reason}"
    print(f"error: {failure}", file=sys.stderr)
    stem = f"{out.stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    tried = []
    for folder in (Path.cwd(), Path(tempfile.gettempdir())):
        try:
            path = save(folder / f"{free_name(folder, stem)}.pt", False)
        except (OSError, CheckpointExists, ValueError) as exc:
            tried.append(f"{folder}: {exc}")
            continue
        print(f"saved the trained model to {path} instead", file=sys.stderr)
        return path
    raise CheckpointError(f"{failure}; the fallback folders failed too ({'; '.join(tried)})")


def _check_out(out: Path) -> bool:
    """Refuse, before training, an output path that cannot be written or names a shipped model.

    Returns whether a file is there to replace (the save may replace only a file that exists now).
    """
    shipped = out.stem in SHIPPED_NAMES
    if not shipped and out.is_file():
        try:
            shipped = read_info(out).shipped
        except CheckpointError:
            shipped = False
    if shipped:
        raise CheckpointError(
            f"{out} is the name of a model shipped with the app (python -m vae_core ship rebuilds those); "
            "choose another --out"
        )
    check_writable(out)
    return out.is_file()


def metrics_text(metrics: dict[str, float]) -> str:
    lines = [
        f"test -ELBO   {metrics['test_total']:.2f} nats  (recon {metrics['test_recon']:.2f} + KL {metrics['test_kl']:.2f}; "
        f"mean over images of the per-image estimate: {ELBO_ESTIMATOR})"
    ]
    if "test_nll" in metrics:
        lines.append(
            f"test NLL     {metrics['test_nll']:.2f} nats  (importance-weighted, K={int(metrics['nll_k'])}, "
            f"{int(metrics['nll_images'])} images)"
        )
    lines.append(f"active units {int(metrics['active_units'])}")
    return "\n".join(lines)


def cmd_train(args: argparse.Namespace) -> int:
    resume = _load_for_resume(args.resume) if args.resume else None
    if resume is not None:
        model_config, train_config = resume.info.model_config, resume.info.train_config
        train_config = dataclasses.replace(
            train_config, epochs=args.epochs or train_config.epochs, device=args.device
        )
    else:
        model_config, train_config = _configs(args)
    check_training(model_config, train_config)  # before any data is read or model built
    if args.out:
        out = Path(args.out).expanduser()
    elif resume is not None and not resume.info.shipped:
        out = resume.info.path  # the run goes on in its own file
    else:  # a name that replaces nothing: no existing file, never a shipped model's name
        stem = free_name(
            "checkpoints",
            f"{_short_name(train_config.dataset)}-{model_config.arch}-{model_config.latent_dim}",
            reserved=SHIPPED_NAMES,
        )
        out = Path("checkpoints") / f"{stem}.pt"
    replace = _check_out(out)  # before any training: a bad --out fails now, not after the run
    with process_group(train_config.device) as parallel:
        path = train_and_save(
            model_config,
            train_config,
            data_dir=args.data_dir,
            out=out,
            nll_k=args.nll_k,
            nll_images=args.nll_images,
            overwrite=replace,
            auto_epochs=resume is None and args.epochs is None,
            resume=resume,
            memory_mb=args.memory_mb,
            workers=args.workers,
            parallel=parallel,
        )
    return 0 if path == out else 1


def _configs(args: argparse.Namespace) -> tuple[ModelConfig, TrainConfig]:
    """Return the model and train configs the ``train`` arguments describe (a preset sets the model)."""
    if args.preset:
        model_config = PRESETS[args.preset]
        info = dataset_info(args.dataset, image_shape=model_config.image_shape)
        if info.image_shape != model_config.image_shape:
            raise ValueError(
                f"--preset {args.preset} is for {model_config.image_shape} images, but {info.title} holds "
                f"{info.image_shape}; use it with --dataset folder:PATH"
            )
        model_config = dataclasses.replace(model_config, beta=args.beta)
    else:
        info = dataset_info(args.dataset)
        model_config = ModelConfig(
            image_shape=info.image_shape,
            latent_dim=args.latent_dim,
            arch=args.arch,
            hidden=tuple(args.hidden),
            channels=tuple(args.channels),
            likelihood=args.likelihood or info.likelihood,
            beta=args.beta,
        )
    train_config = TrainConfig(
        dataset=info.name,
        epochs=args.epochs or 1,  # replaced by the suggested count once the data's size is known
        batch_size=args.batch_size,
        lr=args.lr,
        kl_warmup_epochs=args.kl_warmup,
        seed=args.seed,
        device=args.device,
        binarize=args.binarize,
        max_train_images=args.max_train_images,
    )
    return model_config, train_config


def _short_name(dataset: str) -> str:
    return f"folder-{Path(dataset[7:]).name}" if dataset.startswith("folder:") else dataset


def _load_for_resume(path: str) -> LoadedCheckpoint:
    loaded = load_checkpoint(path)
    if loaded.info.train_config is None:
        raise CheckpointError(
            f"{path}: it records no train config (an imported model), so there is no run to resume"
        )
    return loaded


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}" + ("" if n == 1 else "s")
