"""Command line: ``python -m vae_core train|eval|list|ship``."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from vae_core.bundle import save_trained, test_metrics
from vae_core.checkpoints import CheckpointExists, list_checkpoints, load_checkpoint, read_info
from vae_core.config import ModelConfig, TrainConfig
from vae_core.datasets import DATASETS, DatasetUnavailable, dataset_info, load_dataset
from vae_core.limits import check_training
from vae_core.metrics import ELBO_ESTIMATOR
from vae_core.model import VAE
from vae_core.naming import free_name
from vae_core.safeload import CheckpointError, first_line
from vae_core.saving import check_writable
from vae_core.timeline import TimelineRecorder
from vae_core.training import NonFiniteLossError, fit


@dataclass(frozen=True)
class ShippedModel:
    """A checkpoint the repository ships, reproduced by ``python -m vae_core ship``."""

    name: str
    description: str
    model: ModelConfig
    train: TrainConfig
    nll_k: int
    nll_images: int | None = None


SHIPPED: tuple[ShippedModel, ...] = (
    ShippedModel(
        "mnist-conv-16",
        "MNIST conv VAE, 16-dimensional latent",
        ModelConfig(arch="conv", latent_dim=16, channels=(32, 64)),
        TrainConfig(
            dataset="mnist", epochs=30, batch_size=64, lr=1e-3, kl_warmup_epochs=5, seed=0, device="cpu"
        ),
        # The conv decoder is the slow part on a CPU: K=200 on 2,000 test images takes minutes, not an hour.
        nll_k=200,
        nll_images=2000,
    ),
    ShippedModel(
        "mnist-mlp-2",
        "MNIST MLP VAE, 2-dimensional latent (the classic map and decoded manifold)",
        ModelConfig(arch="mlp", latent_dim=2, hidden=(512, 256)),
        TrainConfig(dataset="mnist", epochs=40, batch_size=64, lr=1e-3, seed=0, device="cpu"),
        nll_k=500,
    ),
    ShippedModel(
        "digits-mlp-8",
        "scikit-learn digits MLP VAE, 8-dimensional latent",
        ModelConfig(arch="mlp", latent_dim=8, hidden=(256,)),
        TrainConfig(
            dataset="digits", epochs=60, batch_size=64, lr=1e-3, kl_warmup_epochs=5, seed=0, device="cpu"
        ),
        nll_k=500,
    ),
)
SHIPPED_NAMES = frozenset(spec.name for spec in SHIPPED)


def _progress_line(record: dict[str, float], epochs: int) -> str:
    return (
        f"epoch {int(record['epoch']):>3}/{epochs}  train -ELBO {record['train_total']:8.2f}  "
        f"test -ELBO {record['val_total']:8.2f} (recon {record['val_recon']:7.2f} + KL {record['val_kl']:6.2f})  "
        f"{record['images_per_second']:8.0f} img/s"
    )


def _train(
    model_config: ModelConfig,
    train_config: TrainConfig,
    *,
    data_dir: str | None,
    out: Path,
    nll_k: int,
    nll_images: int | None,
    extra: dict | None = None,
    overwrite: bool = True,
) -> Path:
    """Train, evaluate and save; return where the model was saved (a fallback path if ``out`` failed)."""
    data = load_dataset(train_config.dataset, root=data_dir)
    torch.manual_seed(train_config.seed)
    model = VAE(model_config)
    print(
        f"training {model_config.arch} VAE (z={model_config.latent_dim}, {model.num_parameters():,} parameters) "
        f"on {data.name}: {len(data.train_x):,} train / {len(data.test_x):,} test images",
        flush=True,
    )
    recorder = TimelineRecorder(data.test_x, data.test_y, latent_dim=model_config.latent_dim)

    def on_epoch(record: dict[str, float], trained: VAE) -> None:
        recorder(record, trained)
        print(_progress_line(record, train_config.epochs), flush=True)

    result = fit(model, data, train_config, on_epoch=on_epoch)
    print(f"trained in {result.seconds:.1f} s; evaluating (NLL with K={nll_k}) ...", flush=True)
    metrics = test_metrics(model, data.test_x, nll_k=nll_k, nll_images=nll_images, seed=train_config.seed)
    print(_metrics_text(metrics))

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


def _metrics_text(metrics: dict[str, float]) -> str:
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
    info = dataset_info(args.dataset)
    c, h, w = info.image_shape
    model_config = ModelConfig(
        image_shape=(c, h, w),
        latent_dim=args.latent_dim,
        arch=args.arch,
        hidden=tuple(args.hidden),
        channels=tuple(args.channels),
        likelihood=args.likelihood or info.likelihood,
        beta=args.beta,
    )
    train_config = TrainConfig(
        dataset=args.dataset,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        kl_warmup_epochs=args.kl_warmup,
        seed=args.seed,
        device=args.device,
        binarize=args.binarize,
        max_train_images=args.max_train_images,
    )
    check_training(model_config, train_config)  # before any data is read or model built
    if args.out:
        out = Path(args.out).expanduser()
    else:  # a name that replaces nothing: no existing file, never a shipped model's name
        stem = free_name(
            "checkpoints", f"{args.dataset}-{args.arch}-{args.latent_dim}", reserved=SHIPPED_NAMES
        )
        out = Path("checkpoints") / f"{stem}.pt"
    replace = _check_out(out)  # before any training: a bad --out fails now, not after the run
    path = _train(
        model_config,
        train_config,
        data_dir=args.data_dir,
        out=out,
        nll_k=args.nll_k,
        nll_images=args.nll_images,
        overwrite=replace,
    )
    return 0 if path == out else 1


def cmd_eval(args: argparse.Namespace) -> int:
    try:
        loaded = load_checkpoint(args.checkpoint)
    except CheckpointError:
        raise
    except Exception as exc:  # anything else a hostile or broken file provokes: a message, not a traceback
        raise CheckpointError(
            f"{args.checkpoint}: could not be loaded ({type(exc).__name__}: {first_line(exc)})"
        ) from None
    info = loaded.info
    print(f"{info.path}: {info.summary}")
    try:
        data = load_dataset(info.dataset, root=args.data_dir, download=False)
        x, source = data.test_x, f"{info.dataset} test split"
    except DatasetUnavailable as exc:
        if loaded.sample is None:
            raise
        print(f"note: {exc.args[0].splitlines()[0]}")
        x, source = loaded.sample.images, "the checkpoint's bundled test sample"
    if args.images:
        x = x[: args.images]
    print(f"evaluating on {len(x):,} images of {source}", flush=True)
    started = time.perf_counter()
    metrics = test_metrics(loaded.model, x, nll_k=args.k, seed=args.seed)
    print(_metrics_text(metrics))
    print(f"({time.perf_counter() - started:.1f} s)")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    listing = list_checkpoints(args.folder)
    for info in listing.good:
        print(f"{info.name:<28} {info.summary}")
    for path, reason in listing.bad:
        print(f"{Path(path).name:<28} UNREADABLE: {reason}")
    if not listing.good and not listing.bad:
        print(f"no checkpoints in {args.folder}")
    return 0


def cmd_ship(args: argparse.Namespace) -> int:
    # Same thread count and deterministic kernels every time, so the files reproduce.
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    out = Path(args.out)
    for spec in SHIPPED:
        if args.only and spec.name not in args.only:
            continue
        info = dataset_info(spec.train.dataset)
        model_config = ModelConfig(**{**spec.model.to_dict(), "image_shape": info.image_shape})
        print(f"\n== {spec.name}: {spec.description}", flush=True)
        target = check_writable(out / f"{spec.name}.pt")
        saved = _train(
            model_config,
            spec.train,
            data_dir=args.data_dir,
            out=target,
            nll_k=spec.nll_k,
            nll_images=spec.nll_images,
            extra={"shipped": True, "description": spec.description},
        )
        if saved != target:
            return 1
    return 0


def _count(minimum: int) -> Callable[[str], int]:
    """Return an argparse type for whole numbers of at least ``minimum`` (a negative count is an error)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be {minimum} or more, got {value}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser for ``python -m vae_core``."""
    parser = argparse.ArgumentParser(prog="python -m vae_core", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    data_dir_help = "dataset root (default: $VAE_DATA_DIR or ~/.cache/vae-explorer/data)"

    train = sub.add_parser("train", help="train a VAE and save a checkpoint")
    train.add_argument("--dataset", default="mnist", help=f"one of {', '.join(DATASETS)}, or folder:PATH")
    train.add_argument("--arch", choices=("mlp", "conv"), default="conv")
    train.add_argument("--latent-dim", type=_count(1), default=16)
    train.add_argument("--hidden", type=_count(1), nargs="+", default=[400], help="MLP hidden widths")
    train.add_argument("--channels", type=_count(1), nargs="+", default=[32, 64], help="conv channel counts")
    train.add_argument("--likelihood", choices=("bernoulli", "gaussian"), help="default: the dataset's")
    train.add_argument("--beta", type=float, default=1.0)
    train.add_argument("--kl-warmup", type=_count(0), default=0, help="epochs of linear KL warm-up")
    train.add_argument("--epochs", type=_count(1), default=10)
    train.add_argument("--batch-size", type=_count(1), default=128)
    train.add_argument("--lr", type=float, default=1e-3)
    train.add_argument("--seed", type=_count(0), default=0)
    train.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"), default="auto")
    train.add_argument("--binarize", action="store_true", help="dynamic binarization (Bernoulli models)")
    train.add_argument("--max-train-images", type=_count(1))
    train.add_argument(
        "--nll-k", type=_count(0), default=100, help="importance samples for the test NLL (0: skip)"
    )
    train.add_argument("--nll-images", type=_count(1), help="test images for the NLL (default: all)")
    train.add_argument("--data-dir", help=data_dir_help)
    train.add_argument(
        "--out",
        help="checkpoint path, checked before training (default: checkpoints/DATASET-ARCH-LATENT.pt, "
        "or -2, -3, ... when that name is taken)",
    )
    train.set_defaults(func=cmd_train)

    ev = sub.add_parser("eval", help="print a checkpoint's test ELBO, NLL and active units")
    ev.add_argument("checkpoint")
    ev.add_argument("-k", type=_count(0), default=100, help="importance samples for the NLL (0: skip)")
    ev.add_argument("--images", type=_count(1), help="evaluate on the first N test images")
    ev.add_argument("--seed", type=_count(0), default=0)
    ev.add_argument("--data-dir", help=data_dir_help)
    ev.set_defaults(func=cmd_eval)

    ls = sub.add_parser("list", help="list the checkpoints in a folder")
    ls.add_argument("folder", nargs="?", default="checkpoints")
    ls.set_defaults(func=cmd_list)

    ship = sub.add_parser("ship", help="reproduce the shipped checkpoints")
    ship.add_argument("--data-dir", default=os.environ.get("VAE_DATA_DIR"), help=data_dir_help)
    ship.add_argument("--out", default="checkpoints")
    ship.add_argument("--only", nargs="+", choices=[s.name for s in SHIPPED])
    ship.set_defaults(func=cmd_ship)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (DatasetUnavailable, CheckpointError, NonFiniteLossError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
