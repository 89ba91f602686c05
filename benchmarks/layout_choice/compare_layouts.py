"""Choose the latent map's 2-D layout (scikit-learn t-SNE, openTSNE, UMAP) and how to place new points on it.

Data: the 10,000 official MNIST test images encoded by ``checkpoints/mnist-conv-16.pt`` (posterior
means, 16-D), cached in ``/tmp/mnist_codes.npz`` so every run and every worker reuses them.

Part 1, layouts. Each configuration in ``LAYOUTS`` runs in fresh worker processes (``--worker``);
each worker fits the same seed twice, so the first fit is a *fresh-process* call (it pays for
thread pools and, for numba-based code, JIT compilation) and the second a *warm* one. Workers that
use numba (UMAP, openTSNE with pynndescent) get their own ``NUMBA_CACHE_DIR``, emptied before the
first worker, so the first worker shows the cost of a cold on-disk JIT cache and later workers the
usual cost of a fresh process. For each configuration it reports:

* wall and CPU seconds of the fit (import time separately), median over workers/fits;
* 10-NN label accuracy in 2-D, leave-one-out (each point gets the majority label of its 10
  nearest 2-D neighbours, itself excluded; ties go to the smaller label), beside the same in the
  16-D latent space for reference;
* trustworthiness (``sklearn.manifold.trustworthiness``, 10 neighbours) on a fixed random
  3,000-point subset;
* determinism: every fit uses the same seed; the largest coordinate difference between any two
  fits (within and across processes), relative to the layout's RMS spread.

Part 2, placing new points. 500 random codes are held out, the layout is fitted on the other
9,500 (openTSNE and UMAP), and the 500 are placed by (a) openTSNE ``embedding.transform``,
(b) UMAP ``reducer.transform``, (c) a k-nearest-neighbour placement: the 10 nearest reference codes
in latent space, and the weighted mean of their 2-D positions (Gaussian weights with s = median of
the 10 distances or s = the 10th distance, inverse-distance weights, or plain mean). For each
method: seconds per single point (median of 20 one-point calls) and for the batch of 500,
determinism (same input twice; one point alone vs in the batch), and quality:

* *offset*: 2-D distance from the placed point to the mean 2-D position of its 10 nearest
  reference codes in latent space, divided by the layout's RMS spread (scale-free). The same
  quantity for the reference points themselves (their own fitted position vs their 10 latent
  neighbours') is printed as the layout's baseline. The plain-mean k-NN placement is 0 by
  construction, so this favours (c); read it beside the next two numbers.
* *label accuracy*: majority label of the 10 nearest reference points in 2-D around the placed point.
* *kept*: share of the placed point's 10 nearest reference points in 2-D that are among its 10
  nearest reference codes in latent space.

It also times what each method must rebuild after a reload when a checkpoint may hold plain arrays
only (reference codes and 2-D coordinates): openTSNE needs an affinity object with a k-NN index
(``affinity.PerplexityBasedNN`` on the reference codes), UMAP a pynndescent search index (plus
private attributes, there is no public constructor for a fitted reducer), the k-NN placement nothing.

Usage (not run by ``make bench``, which only runs ``benchmarks/*.py``)::

    PYTHONPATH=. .venv/bin/python benchmarks/layout_choice/compare_layouts.py \\
        [--part layouts|placement|all] [--only NAME,...] [--workers 2] [--out /tmp/layout_choice.json]

Needs ``openTSNE`` and ``umap-learn`` in the virtualenv (not project dependencies).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[2]
CODES_CACHE = Path("/tmp/mnist_codes.npz")
CHECKPOINT = REPO_ROOT / "checkpoints" / "mnist-conv-16.pt"
DATA_ROOT = Path("/work/shared/datasets")
N_JOBS = 2
SEED = 0
PERPLEXITY = 30.0
K = 10
TRUST_SUBSET = 3000
N_HELD_OUT = 500
N_SINGLE_CALLS = 20
# A timing taken while other processes kept more than QUIET cores busy is repeated (ATTEMPTS in all).
QUIET = 0.25
ATTEMPTS = 3


# --------------------------------------------------------------------------------------------- data


def load_codes() -> tuple[np.ndarray, np.ndarray]:
    """The (10000, 16) float32 posterior means of the MNIST test set and their labels, cached."""
    if CODES_CACHE.is_file():
        with np.load(CODES_CACHE) as cached:
            return cached["codes"], cached["labels"]
    import torch
    import torchvision

    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    try:
        from vae_core.checkpoints import load_checkpoint

        model = load_checkpoint(CHECKPOINT).model
    except ImportError:  # the package is being refactored: load a copy the plain way
        copy = Path(tempfile.mkdtemp()) / CHECKPOINT.name
        shutil.copy(CHECKPOINT, copy)
        from vae_core.checkpoints import load_checkpoint

        model = load_checkpoint(copy).model
    ds = torchvision.datasets.MNIST(str(DATA_ROOT), train=False, download=False)
    x = ds.data.unsqueeze(1)
    with torch.inference_mode():
        mu = torch.cat([model.encode(x[i : i + 1000].float() / 255)[0] for i in range(0, len(x), 1000)])
    codes, labels = mu.numpy().astype(np.float32), ds.targets.numpy().astype(np.int64)
    np.savez(CODES_CACHE, codes=codes, labels=labels)
    return codes, labels


# ------------------------------------------------------------------------------------------ metrics


def majority(neighbour_labels: np.ndarray) -> np.ndarray:
    """Row-wise most common label; ties go to the smaller label."""
    counts = np.zeros((len(neighbour_labels), int(neighbour_labels.max()) + 1), dtype=np.int64)
    np.add.at(counts, (np.arange(len(neighbour_labels))[:, None], neighbour_labels), 1)
    return counts.argmax(axis=1)


def knn_accuracy(points: np.ndarray, labels: np.ndarray, k: int = K) -> float:
    """Leave-one-out k-NN label accuracy: each point votes with its k nearest others."""
    from sklearn.neighbors import NearestNeighbors

    idx = NearestNeighbors(n_neighbors=k).fit(points).kneighbors(return_distance=False)  # self excluded
    return float((majority(labels[idx]) == labels).mean())


def trust(codes: np.ndarray, layout: np.ndarray) -> float:
    from sklearn.manifold import trustworthiness

    sub = np.random.default_rng(SEED).choice(len(codes), TRUST_SUBSET, replace=False)
    return float(trustworthiness(codes[sub], layout[sub], n_neighbors=K))


def rms_spread(layout: np.ndarray) -> float:
    return float(np.sqrt(((layout - layout.mean(axis=0)) ** 2).sum(axis=1).mean()))


# ------------------------------------------------------------------------------------------ layouts


def _sklearn(max_iter: int, angle: float) -> Callable[[np.ndarray, int | None], np.ndarray]:
    def fit(x: np.ndarray, seed: int | None) -> np.ndarray:
        from sklearn.manifold import TSNE

        return TSNE(
            perplexity=PERPLEXITY,
            init="pca",
            learning_rate="auto",
            method="barnes_hut",
            angle=angle,
            max_iter=max_iter,
            random_state=seed,
            n_jobs=N_JOBS,
        ).fit_transform(x)

    return fit


def _opentsne(neighbors: str, early: int = 250, n_iter: int = 500, **extra: Any) -> Callable[..., np.ndarray]:
    def fit(x: np.ndarray, seed: int | None) -> np.ndarray:
        from openTSNE import TSNE

        params = dict(negative_gradient_method="fft") | extra
        return np.asarray(
            TSNE(
                perplexity=PERPLEXITY,
                neighbors=neighbors,
                initialization="pca",
                early_exaggeration_iter=early,
                n_iter=n_iter,
                n_jobs=N_JOBS,
                random_state=seed,
                **params,
            ).fit(x)
        )

    return fit


def opentsne_lowlevel_embedding(
    x: np.ndarray, seed: int | None, neighbors: str, early: int, n_iter: int, ints_in_interval: int = 1
):
    """openTSNE's lower-level API as in its docs: affinities, PCA init, then the two phases."""
    from openTSNE import TSNEEmbedding, affinity, initialization

    aff = affinity.PerplexityBasedNN(
        x, perplexity=PERPLEXITY, method=neighbors, n_jobs=N_JOBS, random_state=seed
    )
    init = initialization.pca(x, random_state=seed)
    emb = TSNEEmbedding(
        init,
        aff,
        negative_gradient_method="fft",
        ints_in_interval=ints_in_interval,
        n_jobs=N_JOBS,
        random_state=seed,
    )
    emb = emb.optimize(n_iter=early, exaggeration=12, momentum=0.5)
    return emb.optimize(n_iter=n_iter, momentum=0.8)


def _opentsne_lowlevel(neighbors: str, early: int, n_iter: int, ints: int = 1) -> Callable[..., np.ndarray]:
    def fit(x: np.ndarray, seed: int | None) -> np.ndarray:
        return np.asarray(opentsne_lowlevel_embedding(x, seed, neighbors, early, n_iter, ints))

    return fit


def _umap(seeded: bool, n_epochs: int | None = None) -> Callable[..., np.ndarray]:
    def fit(x: np.ndarray, seed: int | None) -> np.ndarray:
        import warnings

        from umap import UMAP

        with warnings.catch_warnings():  # "n_jobs value 2 overridden to 1 by setting random_state"
            warnings.simplefilter("ignore", UserWarning)
            return UMAP(
                n_neighbors=15,
                min_dist=0.1,
                n_epochs=n_epochs,
                random_state=seed if seeded else None,
                n_jobs=N_JOBS,
            ).fit_transform(x)

    return fit


# name -> (library, description, fit(x, seed), uses numba)
LAYOUTS: dict[str, tuple[str, str, Callable[..., np.ndarray], bool]] = {
    "sk-300-a1.0": ("sklearn", "TSNE barnes_hut, max_iter=300, angle=1.0", _sklearn(300, 1.0), False),
    "sk-500-a1.0": ("sklearn", "TSNE barnes_hut, max_iter=500, angle=1.0", _sklearn(500, 1.0), False),
    "sk-300-a0.5": ("sklearn", "TSNE barnes_hut, max_iter=300, angle=0.5", _sklearn(300, 0.5), False),
    "sk-500-a0.5": ("sklearn", "TSNE barnes_hut, max_iter=500, angle=0.5", _sklearn(500, 0.5), False),
    "ot-annoy-750": ("openTSNE", "TSNE fft, annoy, 250+500 (default)", _opentsne("annoy"), False),
    "ot-pynnd-750": ("openTSNE", "TSNE fft, pynndescent, 250+500", _opentsne("pynndescent"), True),
    "ot-auto-750": ("openTSNE", "TSNE fft, auto (=annoy here), 250+500", _opentsne("auto"), False),
    "ot-exact-750": ("openTSNE", "TSNE fft, exact (sklearn kNN), 250+500", _opentsne("exact"), False),
    "ot-annoy-375": ("openTSNE", "TSNE fft, annoy, 125+250", _opentsne("annoy", 125, 250), False),
    "ot-pynnd-375": ("openTSNE", "TSNE fft, pynndescent, 125+250", _opentsne("pynndescent", 125, 250), True),
    "ot-exact-375": ("openTSNE", "TSNE fft, exact, 125+250", _opentsne("exact", 125, 250), False),
    # Extra: the FFT grid has one interval per unit of embedding span by default; 2 units per interval
    # quarters the grid. Barnes-Hut is openTSNE's suggestion below ~10k points.
    "ot-annoy-375-ii2": (
        "openTSNE",
        "TSNE fft ints_in_interval=2, annoy, 125+250",
        _opentsne("annoy", 125, 250, ints_in_interval=2),
        False,
    ),
    "ot-exact-375-ii2": (
        "openTSNE",
        "TSNE fft ints_in_interval=2, exact, 125+250",
        _opentsne("exact", 125, 250, ints_in_interval=2),
        False,
    ),
    "ot-annoy-750-ii2": (
        "openTSNE",
        "TSNE fft ints_in_interval=2, annoy, 250+500",
        _opentsne("annoy", ints_in_interval=2),
        False,
    ),
    "ot-bh-375": (
        "openTSNE",
        "TSNE bh (theta 0.5), annoy, 125+250",
        _opentsne("annoy", 125, 250, negative_gradient_method="bh"),
        False,
    ),
    "ot-low-annoy-375": (
        "openTSNE",
        "low-level API: PerplexityBasedNN(annoy) + optimize 125 (momentum 0.5) + 250",
        _opentsne_lowlevel("annoy", 125, 250),
        False,
    ),
    "ot-low-annoy-375-ii2": (
        "openTSNE",
        "as ot-low-annoy-375, ints_in_interval=2",
        _opentsne_lowlevel("annoy", 125, 250, 2),
        False,
    ),
    "ot-low-exact-375": (
        "openTSNE",
        "low-level API: PerplexityBasedNN(exact) + optimize 125 (momentum 0.5) + 250",
        _opentsne_lowlevel("exact", 125, 250),
        False,
    ),
    "ot-low-exact-375-ii2": (
        "openTSNE",
        "as ot-low-exact-375, ints_in_interval=2",
        _opentsne_lowlevel("exact", 125, 250, 2),
        False,
    ),
    "umap-seeded": ("umap-learn", "UMAP 15 nn, min_dist 0.1, random_state=0 (1 thread)", _umap(True), True),
    "umap-unseeded": (
        "umap-learn",
        "UMAP 15 nn, min_dist 0.1, random_state=None (2 threads)",
        _umap(False),
        True,
    ),
    "umap-seeded-200ep": ("umap-learn", "as umap-seeded, n_epochs=200", _umap(True, 200), True),
}

LIBRARY_MODULES = {"sklearn": "sklearn.manifold", "openTSNE": "openTSNE", "umap-learn": "umap"}


def busy_seconds() -> float:
    """CPU seconds all processes on the machine have spent so far (from /proc/stat; 0 where absent)."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except OSError:
        return 0.0
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def wait_for_quiet(max_wait_s: float = 180.0, threshold: float = QUIET) -> float:
    """Wait (up to max_wait_s) until other processes keep fewer than ``threshold`` cores busy."""
    t0 = time.perf_counter()
    while True:
        b = busy_seconds()
        time.sleep(2.0)
        busy = (busy_seconds() - b) / 2.0
        if busy < threshold or time.perf_counter() - t0 > max_wait_s:
            return busy


def run_worker(name: str, fits: int, out: Path) -> None:
    """In a fresh process: import the library, fit ``fits`` times with the same seed, save the layouts."""
    library, _, fit, _ = LAYOUTS[name]
    codes, _ = load_codes()
    t0 = time.perf_counter()
    __import__(LIBRARY_MODULES[library])
    import_s = time.perf_counter() - t0
    layouts, wall, cpu, others = [], [], [], []
    for _ in range(fits):
        w, c, b = time.perf_counter(), time.process_time(), busy_seconds()
        layouts.append(fit(codes, SEED))
        wall.append(time.perf_counter() - w)
        cpu.append(time.process_time() - c)
        # cores kept busy by other processes meanwhile: the noise on a shared machine
        others.append(max(0.0, busy_seconds() - b - cpu[-1]) / wall[-1])
    np.save(out, np.stack(layouts).astype(np.float64))
    print(json.dumps({"import_s": import_s, "wall": wall, "cpu": cpu, "other_cores": others}))


def measure_layout(name: str, workers: int, fits: int) -> dict[str, Any]:
    library, description, _, numba = LAYOUTS[name]
    env = dict(os.environ)
    if numba:
        cache = Path(tempfile.gettempdir()) / f"layout_choice_numba_{name}"
        shutil.rmtree(cache, ignore_errors=True)
        env["NUMBA_CACHE_DIR"] = str(cache)
    runs, layouts = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(workers):
            tries = []
            for _ in range(ATTEMPTS):  # repeat a worker whose fits ran beside other busy processes
                if numba and i == 0:
                    shutil.rmtree(cache, ignore_errors=True)  # worker 0 measures an empty JIT cache
                wait_for_quiet()
                out = Path(tmp) / f"{i}-{len(tries)}.npy"
                cmd = [sys.executable, __file__, "--worker", name, "--fits", str(fits), "--save", str(out)]
                proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
                if proc.returncode != 0:
                    raise RuntimeError(f"worker {name} failed:\n{proc.stderr[-3000:]}")
                run = json.loads(proc.stdout.strip().splitlines()[-1])
                print(f"  {name} worker {i}: {run}", flush=True)
                tries.append((max(run["other_cores"]), run, out))
                if tries[-1][0] < QUIET:
                    break
            _, run, out = min(tries, key=lambda t: t[0])
            run["noisy_attempts"] = len(tries) - 1
            runs.append(run)
            layouts.extend(np.load(out))
    codes, labels = load_codes()
    first = layouts[0]
    spread = rms_spread(first)
    diffs = [float(np.abs(a - b).max()) / spread for a in layouts for b in layouts]
    first_calls = [r["wall"][0] for r in runs]
    warm_calls = [w for r in runs for w in r["wall"][1:]]
    return {
        "name": name,
        "library": library,
        "description": description,
        "numba": numba,
        "import_s": [r["import_s"] for r in runs],
        # numba: worker 0 had an empty on-disk JIT cache; later workers a filled one
        "first_call_s": first_calls,
        "fresh_s": float(np.median(first_calls[1:] if numba and len(first_calls) > 1 else first_calls)),
        "warm_s": float(np.median(warm_calls)) if warm_calls else None,
        "warm_calls_s": warm_calls,
        "cpu_s": [c for r in runs for c in r["cpu"]],
        "other_cores": [v for r in runs for v in r["other_cores"]],
        "noisy_attempts": sum(r["noisy_attempts"] for r in runs),
        "knn_acc_2d": knn_accuracy(first, labels),
        "trustworthiness": trust(codes, first),
        "max_diff_rel": max(diffs),
        "deterministic": max(diffs) == 0.0,
    }


# ---------------------------------------------------------------------------------------- placement


def knn_place(
    ref_codes: np.ndarray, ref_layout: np.ndarray, new: np.ndarray, weights: str, k: int = K
) -> np.ndarray:
    """Place ``new`` codes at a weighted mean of the 2-D positions of their k nearest reference codes.

    Brute force in numpy (exact, deterministic): for 9,500 x 16 references one point costs a
    (1, 9500) distance row. ``weights``: "gauss-median" (s = median of the k distances),
    "gauss-kth" (s = k-th distance), "inverse" (1 / d) or "mean".
    """
    new = np.atleast_2d(new)
    d2 = ((new**2).sum(axis=1)[:, None] - 2.0 * new @ ref_codes.T + (ref_codes**2).sum(axis=1)[None, :]).clip(
        min=0.0
    )
    idx = np.argpartition(d2, k, axis=1)[:, :k]
    d = np.sqrt(np.take_along_axis(d2, idx, axis=1))
    if weights == "gauss-median":
        s = np.median(d, axis=1, keepdims=True)
        w = np.exp(-(d**2) / (2 * np.maximum(s, 1e-12) ** 2))
    elif weights == "gauss-kth":
        s = d.max(axis=1, keepdims=True)
        w = np.exp(-(d**2) / (2 * np.maximum(s, 1e-12) ** 2))
    elif weights == "inverse":
        w = 1.0 / np.maximum(d, 1e-12)
    elif weights == "mean":
        w = np.ones_like(d)
    else:
        raise ValueError(weights)
    w /= w.sum(axis=1, keepdims=True)
    return (w[:, :, None] * ref_layout[idx]).sum(axis=1)


def placement_quality(
    placed: np.ndarray,
    new_codes: np.ndarray,
    new_labels: np.ndarray,
    ref_codes: np.ndarray,
    ref_layout: np.ndarray,
    ref_labels: np.ndarray,
) -> dict[str, float]:
    from sklearn.neighbors import NearestNeighbors

    latent_nn = NearestNeighbors(n_neighbors=K).fit(ref_codes).kneighbors(new_codes, return_distance=False)
    target = ref_layout[latent_nn].mean(axis=1)
    offset = np.linalg.norm(placed - target, axis=1) / rms_spread(ref_layout)
    layout_nn = NearestNeighbors(n_neighbors=K).fit(ref_layout).kneighbors(placed, return_distance=False)
    kept = np.mean([len(set(a) & set(b)) / K for a, b in zip(latent_nn, layout_nn)])
    return {
        "offset_median": float(np.median(offset)),
        "offset_p90": float(np.percentile(offset, 90)),
        "label_acc": float((majority(ref_labels[layout_nn]) == new_labels).mean()),
        "kept": float(kept),
    }


def layout_baseline(ref_codes: np.ndarray, ref_layout: np.ndarray) -> dict[str, float]:
    """The offset metric for the fitted points themselves (their 10 latent neighbours exclude them)."""
    from sklearn.neighbors import NearestNeighbors

    nn = NearestNeighbors(n_neighbors=K).fit(ref_codes).kneighbors(return_distance=False)
    offset = np.linalg.norm(ref_layout - ref_layout[nn].mean(axis=1), axis=1) / rms_spread(ref_layout)
    return {"offset_median": float(np.median(offset)), "offset_p90": float(np.percentile(offset, 90))}


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def _other_cores(fn: Callable[[], Any]) -> tuple[Any, float]:
    """Run fn; also return how many cores other processes kept busy meanwhile."""
    busy, cpu, wall = busy_seconds(), time.process_time(), time.perf_counter()
    out = fn()
    wall = time.perf_counter() - wall
    return out, max(0.0, busy_seconds() - busy - (time.process_time() - cpu)) / wall


def time_placement(place: Callable[[np.ndarray], np.ndarray], new: np.ndarray) -> dict[str, Any]:
    """First call, median single-point call over N_SINGLE_CALLS points, batch call, determinism.

    The first call (JIT compilation, thread pools) is timed once. The rest is repeated, up to
    ATTEMPTS times, while other processes kept more than QUIET cores busy; the quietest is kept.
    """
    wait_for_quiet()
    (first, first_s), first_others = _other_cores(lambda: _timed(lambda: place(new[:1])))

    def attempt() -> dict[str, Any]:
        singles, single_s = [], []
        for i in range(N_SINGLE_CALLS):
            out, s = _timed(lambda i=i: place(new[i : i + 1]))
            singles.append(out[0])
            single_s.append(s)
        batch, batch_s = _timed(lambda: place(new))
        batch2, batch2_s = _timed(lambda: place(new))
        again = place(new[:1])
        return {
            "placed": batch,
            "single_s_median": float(np.median(single_s)),
            "single_s_range": [float(min(single_s)), float(max(single_s))],
            "batch_s": [batch_s, batch2_s],
            "same_point_twice_maxdiff": float(np.abs(again[0] - first[0]).max()),
            "batch_twice_maxdiff": float(np.abs(batch - batch2).max()),
            "single_vs_batch_maxdiff": float(np.abs(np.stack(singles) - batch[:N_SINGLE_CALLS]).max()),
        }

    tries = []
    for _ in range(ATTEMPTS):
        wait_for_quiet()
        result, others = _other_cores(attempt)
        tries.append((others, result))
        if others < QUIET:
            break
    others, best = min(tries, key=lambda t: t[0])
    best.update(
        first_call_s=first_s,
        first_call_other_cores=first_others,
        other_cores=others,
        attempts_other_cores=[t[0] for t in tries],
        attempts_single_s_median=[t[1]["single_s_median"] for t in tries],
    )
    return best


def rebuild_tsne(ref_codes: np.ndarray, layout: np.ndarray, method: str, ints_in_interval: int) -> Any:
    """A TSNEEmbedding that can ``transform``, rebuilt from plain arrays (reference codes, 2-D layout)."""
    from openTSNE import TSNEEmbedding, affinity

    aff = affinity.PerplexityBasedNN(
        ref_codes, perplexity=PERPLEXITY, method=method, n_jobs=N_JOBS, random_state=SEED
    )
    return TSNEEmbedding(
        layout.copy(),
        aff,
        negative_gradient_method="fft",
        ints_in_interval=ints_in_interval,
        n_jobs=N_JOBS,
        random_state=SEED,
    )


def run_reload_check(saved: Path, method: str, ints_in_interval: int) -> None:
    with np.load(saved) as d:
        ref_codes, layout, new_codes, placed = d["ref_codes"], d["layout"], d["new_codes"], d["placed"]
    _, import_s = _timed(lambda: __import__("openTSNE"))
    reloaded, rebuild_s = _timed(lambda: rebuild_tsne(ref_codes, layout, method, ints_in_interval))
    after, first_s = _timed(lambda: np.asarray(reloaded.transform(new_codes[:1])))
    after = np.asarray(reloaded.transform(new_codes))
    result = {"import_s": import_s, "rebuild_s": rebuild_s, "first_transform_s": first_s}
    print(json.dumps(result | {"maxdiff": float(np.abs(after - placed).max())}))


def measure_placement(
    tsne_neighbors: str, tsne_iters: tuple[int, int], ints_in_interval: int
) -> dict[str, Any]:
    import warnings

    codes, labels = load_codes()
    order = np.random.default_rng(1).permutation(len(codes))
    new_i, ref_i = order[:N_HELD_OUT], order[N_HELD_OUT:]
    ref_codes, new_codes = codes[ref_i].astype(np.float64), codes[new_i].astype(np.float64)
    ref_labels, new_labels = labels[ref_i], labels[new_i]
    from sklearn.neighbors import NearestNeighbors

    latent_nn = NearestNeighbors(n_neighbors=K).fit(ref_codes).kneighbors(new_codes, return_distance=False)
    result: dict[str, Any] = {
        # reference for the placed points' label accuracy: their 10 nearest reference codes in 16-D
        "heldout_latent_label_acc": float((majority(ref_labels[latent_nn]) == new_labels).mean()),
        "tsne": f"openTSNE fft, {tsne_neighbors}, {tsne_iters[0]}+{tsne_iters[1]}, ints_in_interval={ints_in_interval}",
        "methods": {},
        "rebuild": {},
    }

    def record(name: str, layout_name: str, ref_layout: np.ndarray, timing: dict[str, Any]) -> None:
        placed = timing.pop("placed")
        timing.update(
            placement_quality(placed, new_codes, new_labels, ref_codes, ref_layout, ref_labels),
            layout=layout_name,
        )
        result["methods"][name] = timing
        print(f"  {name}: {timing}", flush=True)

    # openTSNE layout on the 9,500 reference codes.
    from openTSNE import TSNE

    tsne_params = dict(
        negative_gradient_method="fft", ints_in_interval=ints_in_interval, n_jobs=N_JOBS, random_state=SEED
    )
    tsne = TSNE(
        perplexity=PERPLEXITY,
        neighbors=tsne_neighbors,
        initialization="pca",
        early_exaggeration_iter=tsne_iters[0],
        n_iter=tsne_iters[1],
        **tsne_params,
    )
    wait_for_quiet()
    emb, fit_s = _timed(lambda: tsne.fit(ref_codes))
    emb -= (emb.max(axis=0) + emb.min(axis=0)) / 2  # transform() re-centres in place; do it up front
    tsne_layout = np.array(emb)
    result["tsne_fit_s"] = fit_s
    result["tsne_baseline"] = layout_baseline(ref_codes, tsne_layout)
    record(
        "openTSNE transform",
        "openTSNE",
        tsne_layout,
        time_placement(lambda x: np.asarray(emb.transform(x)), new_codes),
    )

    # Same embedding, but the k-NN index queried with n_jobs=1 (Annoy's joblib loop sleeps ~10 ms a call).
    knn_index = emb.affinities.knn_index
    knn_index.n_jobs = 1
    if hasattr(knn_index.index, "n_jobs"):  # the exact index wraps a sklearn NearestNeighbors
        knn_index.index.n_jobs = 1
    record(
        "openTSNE transform, index queried with n_jobs=1",
        "openTSNE",
        tsne_layout,
        time_placement(lambda x: np.asarray(emb.transform(x)), new_codes),
    )
    knn_index.n_jobs = N_JOBS
    if hasattr(knn_index.index, "n_jobs"):
        knn_index.index.n_jobs = N_JOBS

    # After a reload only arrays are left: rebuild the affinity index on the reference codes.
    before = np.asarray(emb.transform(new_codes))
    for method in ("annoy", "exact"):
        wait_for_quiet()
        reloaded, rebuild_s = _timed(
            lambda method=method: rebuild_tsne(ref_codes, tsne_layout, method, ints_in_interval)
        )
        after = np.asarray(reloaded.transform(new_codes))
        result["rebuild"][f"openTSNE PerplexityBasedNN({method})"] = {
            "rebuild_s": rebuild_s,
            "maxdiff_vs_before_rel": float(np.abs(after - before).max()) / rms_spread(tsne_layout),
            "quality": placement_quality(after, new_codes, new_labels, ref_codes, tsne_layout, ref_labels),
        }
        if method != tsne_neighbors:
            record(
                f"openTSNE transform, {method} index",
                "openTSNE",
                tsne_layout,
                time_placement(lambda x, r=reloaded: np.asarray(r.transform(x)), new_codes),
            )
        print(f"  rebuild {method}: {result['rebuild'][f'openTSNE PerplexityBasedNN({method})']}", flush=True)

    # The same rebuild in a fresh process, as after a real reload: is the placement bit-identical?
    with tempfile.TemporaryDirectory() as tmp:
        saved = Path(tmp) / "saved.npz"
        np.savez(saved, ref_codes=ref_codes, layout=tsne_layout, new_codes=new_codes, placed=before)
        cmd = [sys.executable, __file__, "--reload-check", str(saved)]
        cmd += ["--tsne-neighbors", tsne_neighbors, "--tsne-ints-in-interval", str(ints_in_interval)]
        wait_for_quiet()
        proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
        check = json.loads(proc.stdout.strip().splitlines()[-1])
    check["maxdiff_vs_before_rel"] = check.pop("maxdiff") / rms_spread(tsne_layout)
    result["rebuild"][f"openTSNE PerplexityBasedNN({tsne_neighbors}), fresh process"] = check
    print(f"  reload check: {check}", flush=True)

    # UMAP layout (seeded, so the fit and transform are reproducible).
    from umap import UMAP

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        reducer = UMAP(n_neighbors=15, min_dist=0.1, random_state=SEED, n_jobs=N_JOBS)
        wait_for_quiet()
        umap_layout, umap_fit_s = _timed(lambda: reducer.fit_transform(ref_codes))
        result["umap_fit_s"] = umap_fit_s
        result["umap_baseline"] = layout_baseline(ref_codes, umap_layout)
        record("UMAP transform", "UMAP", umap_layout, time_placement(reducer.transform, new_codes))

    from pynndescent import NNDescent

    def rebuild_umap_index() -> Any:
        index = NNDescent(
            ref_codes, n_neighbors=15, metric="euclidean", random_state=SEED, n_jobs=N_JOBS, low_memory=True
        )
        index.prepare()
        return index

    wait_for_quiet()
    _, rebuild_s = _timed(rebuild_umap_index)
    result["rebuild"]["UMAP NNDescent index + prepare (lower bound)"] = {"rebuild_s": rebuild_s}

    # k-NN placement: needs only the reference codes and their 2-D coordinates.
    for layout_name, layout in (("openTSNE", tsne_layout), ("UMAP", umap_layout)):
        for weights in ("gauss-median", "gauss-kth", "inverse", "mean"):
            record(
                f"kNN {weights} on {layout_name}",
                layout_name,
                layout,
                time_placement(lambda x, lay=layout, w=weights: knn_place(ref_codes, lay, x, w), new_codes),
            )
    index, fit_nn_s = _timed(lambda: NearestNeighbors(n_neighbors=K).fit(ref_codes))
    _, query_s = _timed(lambda: [index.kneighbors(new_codes[i : i + 1]) for i in range(N_SINGLE_CALLS)])
    result["rebuild"]["kNN placement (numpy brute force)"] = {"rebuild_s": 0.0}
    result["rebuild"]["kNN placement via sklearn NearestNeighbors"] = {
        "rebuild_s": fit_nn_s,
        "single_query_s": query_s / N_SINGLE_CALLS,
    }
    return result


# ------------------------------------------------------------------------------------------- report


def versions() -> dict[str, str]:
    from importlib.metadata import version

    out = {"python": platform.python_version()}
    for dist in ("numpy", "scikit-learn", "openTSNE", "umap-learn", "pynndescent", "numba", "torch"):
        try:
            out[dist] = version(dist)
        except Exception:  # noqa: BLE001 - a missing package is reported, not fatal
            out[dist] = "not installed"
    return out


def layout_table(rows: list[dict[str, Any]], latent_acc: float) -> str:
    lines = [
        f"10-NN label accuracy in the 16-D latent space (reference): {latent_acc:.4f}",
        "",
        "| config | what | import s | fit s, fresh process | fit s, warm | all fits s | CPU s "
        "| other load, cores | 10-NN acc 2-D | trustworthiness | deterministic (max diff / RMS) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        fresh = f"{r['fresh_s']:.1f}"
        if r["numba"]:
            fresh += f" (empty JIT cache: {r['first_call_s'][0]:.1f})"
        warm = f"{r['warm_s']:.1f}" if r["warm_s"] is not None else "-"
        det = "yes" if r["deterministic"] else f"no ({r['max_diff_rel']:.2g})"
        repeated = f" ({r['noisy_attempts']} workers repeated)" if r.get("noisy_attempts") else ""
        lines.append(
            f"| {r['name']} | {r['description']} | {np.median(r['import_s']):.1f} | {fresh} | {warm} "
            f"| {'/'.join(f'{v:.1f}' for v in r['first_call_s'] + r['warm_calls_s'])} "
            f"| {np.median(r['cpu_s']):.1f} | {max(r['other_cores']):.1f}{repeated} "
            f"| {r['knn_acc_2d']:.4f} | {r['trustworthiness']:.4f} | {det} |"
        )
    return "\n".join(lines)


def placement_table(p: dict[str, Any]) -> str:
    lines = [
        f"held-out points' 10-NN label accuracy in the 16-D latent space: {p['heldout_latent_label_acc']:.3f}",
        f"{p['tsne']} fit on 9,500: {p['tsne_fit_s']:.1f} s; baseline offset (fitted points) median "
        f"{p['tsne_baseline']['offset_median']:.3f}, p90 {p['tsne_baseline']['offset_p90']:.3f}",
        f"UMAP fit on 9,500: {p['umap_fit_s']:.1f} s; baseline offset median "
        f"{p['umap_baseline']['offset_median']:.3f}, p90 {p['umap_baseline']['offset_p90']:.3f}",
        "",
        "| method | layout | 1st call ms | single point ms, median of 20 (max) | batch of 500 s "
        "| deterministic | offset median | offset p90 | label acc | kept | other load, cores, per attempt |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, m in p["methods"].items():
        det_diff = max(m["same_point_twice_maxdiff"], m["batch_twice_maxdiff"])
        det = "yes" if det_diff == 0 else f"no ({det_diff:.2g})"
        det += f"; 1 vs batch {m['single_vs_batch_maxdiff']:.2g}"
        lines.append(
            f"| {name} | {m['layout']} | {m['first_call_s'] * 1e3:.1f} | {m['single_s_median'] * 1e3:.2f} ({m['single_s_range'][1] * 1e3:.1f}) "
            f"| {min(m['batch_s']):.3f} | {det} | {m['offset_median']:.3f} | {m['offset_p90']:.3f} "
            f"| {m['label_acc']:.3f} | {m['kept']:.3f} "
            f"| {'/'.join(f'{v:.1f}' for v in m['attempts_other_cores'])} |"
        )
    lines += ["", "| rebuild after reload | seconds | notes |", "|---|---|---|"]
    for name, r in p["rebuild"].items():
        notes = {k: v for k, v in r.items() if k != "rebuild_s"}
        lines.append(f"| {name} | {r['rebuild_s']:.3f} | {json.dumps(notes)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=("layouts", "placement", "all"), default="all")
    parser.add_argument("--only", help="comma-separated layout configs (default: all of them)")
    parser.add_argument("--workers", type=int, default=2, help="fresh processes per config (numba: +1)")
    parser.add_argument("--fits", type=int, default=2, help="fits per worker process (same seed)")
    parser.add_argument("--tsne-neighbors", default="exact", help="placement: openTSNE neighbours")
    parser.add_argument("--tsne-iters", default="125,250", help="placement: openTSNE early,main iterations")
    parser.add_argument("--tsne-ints-in-interval", type=int, default=2, help="placement: openTSNE FFT grid")
    parser.add_argument("--out", type=Path, default=Path("/tmp/layout_choice.json"))
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--save", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--reload-check", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        run_worker(args.worker, args.fits, args.save)
        return 0
    if args.reload_check:
        run_reload_check(args.reload_check, args.tsne_neighbors, args.tsne_ints_in_interval)
        return 0

    codes, labels = load_codes()
    report: dict[str, Any] = json.loads(args.out.read_text()) if args.out.is_file() else {}
    report.update(
        versions=versions(),
        machine=f"{platform.machine()}, {os.cpu_count()} CPUs visible (2 shared cores)",
        latent_knn_acc=knn_accuracy(codes, labels),
    )
    if args.part in ("layouts", "all"):
        names = args.only.split(",") if args.only else list(LAYOUTS)
        rows = {r["name"]: r for r in report.get("layouts", [])}
        for name in names:
            print(f"== {name}", flush=True)
            workers = args.workers + (1 if LAYOUTS[name][3] else 0)
            rows[name] = measure_layout(name, workers, args.fits)
            report["layouts"] = list(rows.values())
            args.out.write_text(json.dumps(report, indent=1))
    if args.part in ("placement", "all"):
        print("== placement", flush=True)
        iters = tuple(int(v) for v in args.tsne_iters.split(","))
        report["placement"] = measure_placement(args.tsne_neighbors, iters, args.tsne_ints_in_interval)
        args.out.write_text(json.dumps(report, indent=1))

    print(json.dumps(report["versions"]))
    if report.get("layouts"):
        print(layout_table(report["layouts"], report["latent_knn_acc"]))
    if report.get("placement"):
        print(placement_table(report["placement"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
