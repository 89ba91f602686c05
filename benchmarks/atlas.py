"""Time the atlas on 10,000 MNIST test images: codes, per-image -ELBO, the 2-D layout, placement.

The atlas is what every page of the app draws (``vae_core.atlas.build_atlas``). With the
shipped ``mnist-conv-16`` checkpoint this measures, on the whole MNIST test split:

* **encode** and **score** (the per-image -ELBO with the app's one estimator);
* **layout**: the neighbour-preserving 2-D map of the 10,000 codes (goal <= 10 s on 2 cores),
  with its quality: 10-NN label accuracy in 2-D (leave-one-out) beside the same in the 16-D
  latent, and trustworthiness (scikit-learn, 10 neighbours, on a fixed 3,000-point subset);
* **placement** of one new point on that map (``Atlas.place``; goal <= 100 ms), median over
  200 single-point calls, and how close each lands to its own latent neighbours;
* **repeat view**: building and serialising the Latent map's figure from the atlas, with the
  app's own figure code (``vae_app.figures.latent_map``).

Wall and CPU seconds are both reported: on a shared machine other processes stretch the wall
clock. Without the MNIST files (``--data-dir``, else ``$VAE_DATA_DIR``, else ``../shared/datasets``)
it says so and exits 0.

Usage::

    python benchmarks/atlas.py [--data-dir DIR] [--n 10000] [--checkpoint PATH]

Results are also written as JSON to ``benchmarks/results/atlas.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from vae_app.figures import latent_map  # noqa: E402
from vae_core.atlas import PLACE_NEIGHBOURS, Atlas, images_key, knn_accuracy, layout_codes  # noqa: E402
from vae_core.checkpoints import load_checkpoint  # noqa: E402
from vae_core.datasets import DatasetUnavailable, load_dataset  # noqa: E402
from vae_core.inference import encode  # noqa: E402
from vae_core.metrics import ELBO_ESTIMATOR, per_image_elbo  # noqa: E402

TARGET_LAYOUT_S = 10.0
TARGET_PLACE_MS = 100.0
TARGET_REPEAT_S = 0.3
DEFAULT_CHECKPOINT = REPO_ROOT / "checkpoints" / "mnist-conv-16.pt"
DEFAULT_OUT = REPO_ROOT / "benchmarks" / "results" / "atlas.json"


def timed(fn):
    """Return (result, wall seconds, CPU seconds of this process) of ``fn()``."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def trustworthiness(mu: np.ndarray, coords: np.ndarray, *, n: int = 3000, seed: int = 0) -> float:
    from sklearn.manifold import trustworthiness as tw

    idx = np.random.default_rng(seed).choice(len(mu), size=min(n, len(mu)), replace=False)
    return float(tw(mu[idx], coords[idx], n_neighbors=10))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default_data = os.environ.get("VAE_DATA_DIR") or REPO_ROOT.parent / "shared" / "datasets"
    parser.add_argument("--data-dir", type=Path, default=Path(default_data))
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    try:
        data = load_dataset("mnist", root=args.data_dir, download=False)
    except DatasetUnavailable:
        print(f"atlas: skipped, no MNIST test split under {args.data_dir}")
        return 0
    loaded = load_checkpoint(args.checkpoint)
    x, y = data.test_x[: args.n], data.test_y[: args.n]
    model = loaded.model

    post, enc_s, enc_cpu = timed(lambda: encode(model, x))
    parts, score_s, score_cpu = timed(lambda: per_image_elbo(model, x))
    mu = post.mu.numpy()
    (coords, layout), layout_s, layout_cpu = timed(lambda: layout_codes(mu))
    labels = y.numpy()
    atlas = Atlas(mu, post.logvar.numpy(), parts.recon, parts.kl, coords, labels, layout, images_key(x))

    # Placement: hold out 500 codes, place each alone on the map of the rest.
    rng = np.random.default_rng(0)
    held = rng.choice(len(mu), size=500, replace=False)
    keep = np.setdiff1d(np.arange(len(mu)), held)
    ref = Atlas(
        mu[keep],
        atlas.logvar[keep],
        atlas.recon[keep],
        atlas.kl[keep],
        coords[keep],
        labels[keep],
        layout,
        "ref",
    )
    single = []
    for i in held[:200]:
        t = time.perf_counter()
        ref.place(mu[i])
        single.append((time.perf_counter() - t) * 1000)
    placed = ref.place(mu[held])
    spread = float(np.sqrt(((ref.coords - ref.coords.mean(0)) ** 2).sum(1).mean()))
    offsets = []
    for point, position in zip(mu[held], placed):
        index, _ = ref.neighbours(point, k=PLACE_NEIGHBOURS)
        offsets.append(np.linalg.norm(position - ref.coords[index].mean(0)) / spread)
    nearest = np.array([ref.labels[np.argmin(((ref.coords - p) ** 2).sum(1))] for p in placed])

    def repeat_view() -> int:
        return len(latent_map(atlas, data.class_names).to_json())

    repeat_view()
    repeats = [timed(repeat_view)[1] for _ in range(5)]
    report = {
        "checkpoint": args.checkpoint.name,
        "points": len(x),
        "estimator": ELBO_ESTIMATOR,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__},
        "encode_s": enc_s,
        "score_s": score_s,
        "score_cpu_s": score_cpu,
        "layout": layout,
        "layout_s": layout_s,
        "layout_cpu_s": layout_cpu,
        "knn10_accuracy_2d": knn_accuracy(coords, labels),
        "knn10_accuracy_latent": knn_accuracy(mu, labels),
        "trustworthiness_10": trustworthiness(mu, coords),
        "place_one_ms_p50": float(np.median(single)),
        "place_one_ms_p90": float(np.percentile(single, 90)),
        "place_offset_median": float(np.median(offsets)),
        "place_nearest_label_agreement": float((nearest == labels[held]).mean()),
        "repeat_view_s": float(np.median(repeats)),
    }
    total = enc_s + score_s + layout_s
    ok = {True: "ok", False: "MISSED"}
    rows = [
        ("encode 10k", f"{enc_s:.1f} s", "", ""),
        ("score 10k (-ELBO per image)", f"{score_s:.1f} s", f"cpu {score_cpu:.1f} s", ELBO_ESTIMATOR),
        (
            f"layout ({layout})",
            f"{layout_s:.1f} s",
            f"cpu {layout_cpu:.1f} s",
            f"goal <= {TARGET_LAYOUT_S:.0f} s: {ok[layout_s <= TARGET_LAYOUT_S]}",
        ),
        ("whole atlas", f"{total:.1f} s", "", ""),
        (
            "10-NN label accuracy",
            f"2-D {report['knn10_accuracy_2d']:.3f}",
            f"latent {report['knn10_accuracy_latent']:.3f}",
            f"trustworthiness {report['trustworthiness_10']:.3f}",
        ),
        (
            "place one new point",
            f"p50 {report['place_one_ms_p50']:.2f} ms",
            f"p90 {report['place_one_ms_p90']:.2f} ms",
            f"goal <= {TARGET_PLACE_MS:.0f} ms: {ok[report['place_one_ms_p90'] <= TARGET_PLACE_MS]}",
        ),
        (
            "placement quality",
            f"offset {report['place_offset_median']:.3f} of the spread",
            f"nearest label {report['place_nearest_label_agreement']:.3f}",
            "",
        ),
        (
            "repeat view (figure)",
            f"{report['repeat_view_s'] * 1000:.0f} ms",
            "",
            f"goal <= {TARGET_REPEAT_S} s: {ok[report['repeat_view_s'] <= TARGET_REPEAT_S]}",
        ),
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
