"""Command line: ``python -m vae_core train|eval|list|ship``.

``train`` runs as one process, or data-parallel under ``torchrun`` (``vae_core.distributed``: only
rank 0 prints and saves); ``train --resume CKPT`` continues a saved run with its optimizer state.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from vae_core.bundle import test_metrics
from vae_core.checkpoints import list_checkpoints, load_checkpoint
from vae_core.config import PRESETS, ModelConfig
from vae_core.datasets import DATASETS, DatasetUnavailable, dataset_info, load_dataset
from vae_core.defaults import MIN_STEPS
from vae_core.safeload import CheckpointError, first_line
from vae_core.saving import check_writable
from vae_core.shipped import SHIPPED, SHIPPED_NAMES, ShippedModel
from vae_core.train_command import cmd_train, metrics_text, train_and_save
from vae_core.training import NonFiniteLossError

__all__ = ["SHIPPED", "SHIPPED_NAMES", "ShippedModel", "build_parser", "main"]


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
    print(metrics_text(metrics))
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
        saved = train_and_save(
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


def _megabytes(text: str) -> float:
    """Parse a positive number of megabytes (argparse type)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of MB, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser for ``python -m vae_core``."""
    parser = argparse.ArgumentParser(prog="python -m vae_core", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    data_dir_help = "dataset root (default: $VAE_DATA_DIR or ~/.cache/vae-explorer/data)"

    train = sub.add_parser(
        "train",
        help="train a VAE and save a checkpoint",
        description="Train a VAE and save a checkpoint. Under torchrun (torchrun --nproc_per_node N -m vae_core "
        "train ...) the processes train data-parallel with PyTorch DDP; --batch-size is the global batch.",
    )
    train.add_argument(
        "--resume",
        metavar="CKPT",
        help="continue this checkpoint's run (its model, settings, history and optimizer state); "
        "--epochs then counts the epochs to add (default: as many as its run had), --out defaults to CKPT",
    )
    train.add_argument("--dataset", default="mnist", help=f"one of {', '.join(DATASETS)}, or folder:PATH")
    train.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        help="a named model for other image sizes (faces64: 64x64 RGB conv, for folder:PATH of face crops); "
        "replaces --arch, --latent-dim, --hidden, --channels and --likelihood",
    )
    train.add_argument("--arch", choices=("mlp", "conv"), default="conv")
    train.add_argument("--latent-dim", type=_count(1), default=16)
    train.add_argument("--hidden", type=_count(1), nargs="+", default=[400], help="MLP hidden widths")
    train.add_argument("--channels", type=_count(1), nargs="+", default=[32, 64], help="conv channel counts")
    train.add_argument("--likelihood", choices=("bernoulli", "gaussian"), help="default: the dataset's")
    train.add_argument("--beta", type=float, default=1.0)
    train.add_argument("--kl-warmup", type=_count(0), default=0, help="epochs of linear KL warm-up")
    train.add_argument(
        "--epochs",
        type=_count(1),
        help=f"default: the fewest epochs that give {MIN_STEPS} optimisation steps on the training set (at least 2)",
    )
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
        "--memory-mb",
        type=_megabytes,
        help="folder:PATH only: read the images into memory up to this many MB (uint8), stream them from "
        "disk past it (default: $VAE_FOLDER_MEMORY_MB or 2048)",
    )
    train.add_argument(
        "--workers", type=_count(0), default=2, help="DataLoader worker processes for a streamed folder"
    )
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
