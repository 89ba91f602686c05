"""Time the Latent map page's work on 10,000 MNIST test images: encode, PCA, first and repeat t-SNE.

Encodes the MNIST test set with a conv VAE of latent size 16 (``checkpoints/mnist-conv-16.pt``
when it exists, else a randomly initialised one), then projects the posterior means the way
the page does, through ``vae_core.latent.projection_cache`` keyed on (checkpoint, n, method,
perplexity, seed):

* **encode**: ``latent.encode`` on all images.
* **PCA** and **t-SNE, first view**: ``project`` computed and stored in the cache.
* **t-SNE, repeat view**: the same key again, answered by the cache.

Targets: first t-SNE view <= 15 s, repeat view <= 0.3 s. Wall and CPU seconds are both
reported: on a shared machine other processes stretch the wall clock, while CPU seconds
stay close to what an idle machine would spend. The t-SNE map's quality is reported as the
10-nearest-neighbour label accuracy in the 2-D map (3-fold), beside the same in latent space.

Without the MNIST files (``--data-dir``, else ``$VAE_DATA_DIR``, else ``../shared/datasets``)
it times random uint8 images instead and says so.

Usage::

    python benchmarks/latent_map.py [--data-dir DIR] [--n 10000] [--perplexity 30] [--checkpoint PATH]
                                    [--tsne-max-iter 500]

Results are also written as JSON to ``benchmarks/results/latent_map.json``.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from vae_core.config import ModelConfig  # noqa: E402
from vae_core.inference import TSNE_ANGLE, TSNE_MAX_ITER, encode, projection_cache
from vae_core.geometry import project  # noqa: E402
from vae_core.model import VAE  # noqa: E402

TARGET_FIRST_TSNE_S = 15.0
TARGET_REPEAT_S = 0.3
DEFAULT_CHECKPOINT = REPO_ROOT / "checkpoints" / "mnist-conv-16.pt"
DEFAULT_OUT = REPO_ROOT / "benchmarks" / "results" / "latent_map.json"


def _data_root(arg: str | None) -> Path:
    if arg:
        return Path(arg).expanduser()
    env = os.environ.get("VAE_DATA_DIR", "").strip()
    return Path(env).expanduser() if env else REPO_ROOT.parent / "shared" / "datasets"


def _images(root: Path, n: int) -> tuple[torch.Tensor, np.ndarray | None, str]:
    """Return up to ``n`` MNIST test images (uint8) and labels, or random images when MNIST is absent."""
    from vae_core.datasets import DatasetUnavailable, load_dataset

    try:
        data = load_dataset("mnist", root=root, download=False)
        return data.test_x[:n], data.test_y[:n].numpy(), f"MNIST test images from {root}"
    except (DatasetUnavailable, OSError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        print(f"MNIST not found under {root} ({first}); timing random images instead.")
        gen = torch.Generator().manual_seed(0)
        x = torch.randint(0, 256, (n, 1, 28, 28), generator=gen, dtype=torch.uint8)
        return x, None, "random uint8 images (MNIST absent)"


def _model(path: Path) -> tuple[VAE, str]:
    if path.is_file():
        from vae_core.checkpoints import load_checkpoint

        return load_checkpoint(path).model, str(
            path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path
        )
    torch.manual_seed(0)
    return VAE(ModelConfig(arch="conv", latent_dim=16)).eval(), "random init conv-16"


def _timed(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def _knn_accuracy(points: np.ndarray, labels: np.ndarray) -> float:
    from sklearn.model_selection import cross_val_score
    from sklearn.neighbors import KNeighborsClassifier

    return float(cross_val_score(KNeighborsClassifier(10), points, labels, cv=3).mean())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data-dir", help="torchvision root holding MNIST/raw (default $VAE_DATA_DIR or ../shared/datasets)"
    )
    parser.add_argument("--n", type=int, default=10_000, help="points to project (default 10000)")
    parser.add_argument("--perplexity", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--tsne-max-iter", type=int, default=TSNE_MAX_ITER, help="t-SNE gradient steps (>= 250)"
    )
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)

    x, labels, source = _images(_data_root(args.data_dir), args.n)
    model, model_name = _model(args.checkpoint)
    n = len(x)
    cores = os.cpu_count() or 1
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{n:,} points: {source}; model: {model_name}; {cores} CPU cores, load average {load:.1f}")
    if load > cores:
        print(
            "warning: the load average exceeds the core count; trust the CPU seconds more than the wall clock"
        )

    rows: dict[str, dict[str, float]] = {}
    post, wall, cpu = _timed(lambda: encode(model, x))
    rows["encode"] = {"wall_s": wall, "cpu_s": cpu}
    mu = post.mu.numpy()

    def cached(method: str) -> Any:
        key = (model_name, n, method, args.perplexity, args.seed, args.tsne_max_iter)
        return projection_cache.get_or_compute(
            key,
            lambda: project(
                mu,
                method=method,
                perplexity=args.perplexity,
                seed=args.seed,
                tsne_max_iter=args.tsne_max_iter,
            ),
        )

    projection_cache.clear()
    maps = {}
    for name, method in [
        ("pca_first", "pca"),
        ("pca_repeat", "pca"),
        ("tsne_first", "tsne"),
        ("tsne_repeat", "tsne"),
    ]:
        maps[method], wall, cpu = _timed(functools.partial(cached, method))
        rows[name] = {"wall_s": wall, "cpu_s": cpu}

    quality = None
    if labels is not None:
        quality = {
            "knn10_accuracy_tsne": _knn_accuracy(maps["tsne"].coords, labels),
            "knn10_accuracy_latent": _knn_accuracy(mu, labels),
        }

    print(f"\n{'step':<14}{'wall s':>10}{'CPU s':>10}{'target s':>10}  verdict")
    targets = {
        "tsne_first": TARGET_FIRST_TSNE_S,
        "tsne_repeat": TARGET_REPEAT_S,
        "pca_repeat": TARGET_REPEAT_S,
    }
    verdicts = {}
    for name, row in rows.items():
        target = targets.get(name)
        verdict = "" if target is None else ("meets" if row["wall_s"] <= target else "MISSES")
        verdicts[name] = verdict or None
        shown = f"{target:.1f}" if target is not None else "-"
        print(f"{name:<14}{row['wall_s']:>10.3f}{row['cpu_s']:>10.2f}{shown:>10}  {verdict}")
    if quality:
        print(
            f"\nt-SNE map quality: 10-NN label accuracy {quality['knn10_accuracy_tsne']:.3f} in 2-D "
            f"(latent space: {quality['knn10_accuracy_latent']:.3f})"
        )

    import sklearn

    result = {
        "points": n,
        "source": source,
        "model": model_name,
        "perplexity": args.perplexity,
        "tsne": {"max_iter": args.tsne_max_iter, "angle": TSNE_ANGLE, "method": "barnes_hut"},
        "timings": rows,
        "targets_s": targets,
        "verdicts": verdicts,
        "quality": quality,
        "machine": {
            "cpu_count": cores,
            "load_average_at_start": load,
            "python": platform.python_version(),
            "torch": torch.__version__,
            "sklearn": sklearn.__version__,
            "torch_threads": torch.get_num_threads(),
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
