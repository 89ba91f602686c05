"""Load: four browser sessions move Decode sliders at once while a fifth trains; slider latency and server memory.

One server (the app with the shipped ``mnist-conv-16`` checkpoint, an empty autosave folder) and
five headless Chromium sessions, each driven from its own thread with its own Playwright:

1. **idle**: the four slider sessions open Decode and warm up; then one of them moves its first
   slider alone (``--idle-moves``) while the others stay connected and still. This is the idle
   figure, on the same server in the same run.
2. **together**: the four slider sessions move at once, ``--together-moves`` each, no run yet: what
   the sessions alone cost, apart from training.
3. **load**: the fifth session starts training on the Train page (scikit-learn digits, MLP,
   ``--epochs`` epochs at batch ``--batch``); as soon as its progress bar shows, the four slider
   sessions move their sliders at once, each until the run has finished (at least
   ``--min-moves``, at most ``--max-moves`` moves each).

A move is timed as in ``ui_latency.py``: from the key press to the new decoded image shown,
read in the page with ``performance.now()`` (``ARM_JS``); the direction turns every 40 moves so
no slider pins at its end (``soak.move``). Reported: p50 and p90 of the idle moves and of all
moves made while the run trained, their ratio, the training's wall time, and the server's
resident memory (VmRSS from ``/proc/<pid>/status``) before the load, at its peak (sampled every
0.25 s) and after it.

    .venv/bin/python benchmarks/load.py [--sessions 4] [--epochs 6] [--batch 16] [--idle-moves 30]

Results are printed as a table and written as JSON to ``benchmarks/results/load.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from soak import move, rss_mb  # noqa: E402
from ui_latency import open_app, percentile  # noqa: E402

from tests.app_support import CHROMIUM, SERVER_PIDS, launch_chromium, streamlit_server  # noqa: E402
from tests.test_browser_train import fill_form, open_train  # noqa: E402

OUT = REPO_ROOT / "benchmarks" / "results" / "load.json"
WARMUP_MOVES = 5
STEP_TIMEOUT_S = 300  # any one phase; the whole benchmark stays within a few minutes
VIEWPORT = {"width": 1400, "height": 1000}


class Sliders:
    """One browser session on Decode, moving its first slider; runs in its own thread."""

    def __init__(self, index: int, url: str) -> None:
        self.index, self.url = index, url
        self.count = 0  # moves made, so the direction turns every 40 whatever the phase
        self.idle: list[float] = []
        self.together: list[float] = []  # every slider session at once, before the run starts
        self.load: list[tuple[float, bool]] = []  # (ms, made while the run trained)
        self.error: str | None = None

    def step(self, page) -> float:
        key = "ArrowRight" if (self.count // 40) % 2 == 0 else "ArrowLeft"
        self.count += 1
        return move(page, key)

    def __call__(self, bench: Bench) -> None:
        from playwright.sync_api import sync_playwright

        try:
            with sync_playwright() as playwright:
                browser = launch_chromium(playwright)
                try:
                    page = browser.new_context(viewport=VIEWPORT).new_page()
                    open_app(page, self.url, "decode")
                    for _ in range(WARMUP_MOVES):
                        self.step(page)
                    bench.ready.wait(STEP_TIMEOUT_S)
                    if self.index == 0:
                        self.idle = [self.step(page) for _ in range(bench.args.idle_moves)]
                        bench.idle_done.set()
                    if not bench.idle_done.wait(STEP_TIMEOUT_S):
                        raise TimeoutError("the idle measurement did not end")
                    self.together = [self.step(page) for _ in range(bench.args.together_moves)]
                    bench.together_done.wait(STEP_TIMEOUT_S)
                    if not bench.training.wait(STEP_TIMEOUT_S):
                        raise TimeoutError("the training session never started its run")
                    deadline = time.monotonic() + STEP_TIMEOUT_S
                    while len(self.load) < bench.args.max_moves and time.monotonic() < deadline:
                        ms = self.step(page)
                        self.load.append((ms, not bench.trained.is_set()))
                        if bench.trained.is_set() and len(self.load) >= bench.args.min_moves:
                            break
                finally:
                    browser.close()
        except Exception as exc:  # reported with the results; the other threads must not wait for ever
            self.error = f"{type(exc).__name__}: {exc}"
            bench.abort()


class Trainer:
    """The fifth session: opens Train, and when the load starts trains digits until it has finished."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.seconds: float | None = None
        self.images_per_second: str | None = None
        self.error: str | None = None

    def __call__(self, bench: Bench) -> None:
        from playwright.sync_api import sync_playwright

        try:
            with sync_playwright() as playwright:
                browser = launch_chromium(playwright)
                try:
                    page = browser.new_context(viewport=VIEWPORT).new_page()
                    open_train(page, self.url)
                    bench.ready.wait(STEP_TIMEOUT_S)
                    bench.together_done.wait(STEP_TIMEOUT_S)
                    started = time.perf_counter()
                    fill_form(page, epochs=bench.args.epochs, seed=0, latent=2, batch=bench.args.batch)
                    page.get_by_test_id("stProgress").first.wait_for(timeout=STEP_TIMEOUT_S * 1000)
                    bench.training.set()
                    page.get_by_text("Finished:", exact=False).first.wait_for(timeout=STEP_TIMEOUT_S * 1000)
                    self.seconds = time.perf_counter() - started
                    bench.trained.set()
                    metric = page.get_by_test_id("stMetric").filter(has_text="Images per second")
                    self.images_per_second = metric.get_by_test_id("stMetricValue").inner_text()
                except Exception:
                    page.screenshot(path=REPO_ROOT / "test-artifacts" / "load-trainer.png")
                    raise
                finally:
                    browser.close()
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            bench.abort()


class Bench:
    """The phases' signals, shared by every thread."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.ready = threading.Barrier(args.sessions + 2)  # slider sessions, the trainer, the main thread
        self.idle_done = threading.Event()
        self.together_done = threading.Barrier(args.sessions + 1)  # slider sessions and the trainer
        self.training = threading.Event()
        self.trained = threading.Event()

    def abort(self) -> None:
        self.ready.abort()
        self.together_done.abort()
        for event in (self.idle_done, self.training, self.trained):
            event.set()


def sample_rss(pid: int, stop: threading.Event, peak: list[float]) -> None:
    """Keep the largest VmRSS of ``pid`` seen every 0.25 s in ``peak[0]`` until ``stop`` is set."""
    while not stop.wait(0.25):
        try:
            peak[0] = max(peak[0], rss_mb(pid))
        except (OSError, RuntimeError):
            return


def cpu_seconds(pid: int) -> float:
    """Return the user + system CPU time a process has used so far, from /proc (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stats(values: list[float]) -> dict:
    return {
        "p50_ms": percentile(values, 50),
        "p90_ms": percentile(values, 90),
        "mean_ms": float(np.mean(values)),
        "moves": len(values),
    }


def run(args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "checkpoints"
        folder.mkdir()
        (folder / args.checkpoint.name).symlink_to(args.checkpoint.resolve())
        env = {"VAE_CHECKPOINT_DIR": str(folder), "VAE_AUTOSAVE_DIR": str(Path(tmp) / "autosave")}
        with streamlit_server(env=env) as url:
            pid = SERVER_PIDS[url]
            rss_start = rss_mb(pid)
            bench = Bench(args)
            sliders = [Sliders(i, url) for i in range(args.sessions)]
            trainer = Trainer(url)
            threads = [threading.Thread(target=w, args=(bench,), daemon=True) for w in (*sliders, trainer)]
            for thread in threads:
                thread.start()
            try:
                bench.ready.wait(STEP_TIMEOUT_S)
            except threading.BrokenBarrierError:
                pass  # a session failed: its error is reported below
            print(
                f"{args.sessions} slider sessions and the trainer are ready; measuring idle moves", flush=True
            )
            bench.idle_done.wait(STEP_TIMEOUT_S)
            rss_before = rss_mb(pid)
            stop, peak = threading.Event(), [rss_before]
            sampler = threading.Thread(target=sample_rss, args=(pid, stop, peak), daemon=True)
            sampler.start()
            print("load: training and every slider session moving at once", flush=True)
            started, cpu_start = time.perf_counter(), cpu_seconds(pid)
            for thread in threads:
                thread.join(2 * STEP_TIMEOUT_S)
            load_seconds = time.perf_counter() - started
            server_cpu = cpu_seconds(pid) - cpu_start
            time.sleep(2.0)  # let the last reruns finish before reading memory
            stop.set()
            sampler.join()
            rss_after = rss_mb(pid)
    errors = [w.error for w in (*sliders, trainer) if w.error]
    if errors:
        raise RuntimeError("; ".join(errors))
    under = [ms for s in sliders for ms, training in s.load if training]
    every = [ms for s in sliders for ms, _ in s.load]
    idle = sliders[0].idle
    together = [ms for s in sliders for ms in s.together]
    return {
        "idle": stats(idle),
        "sessions_together_no_training": stats(together),
        "under_training": stats(under),
        "all_load_moves": stats(every),
        "per_session_under_training": [stats([ms for ms, t in s.load if t]) for s in sliders],
        "ratio_p50": percentile(under, 50) / percentile(idle, 50),
        "ratio_p90": percentile(under, 90) / percentile(idle, 90),
        "training": {
            "dataset": "digits",
            "epochs": args.epochs,
            "batch": args.batch,
            "seconds": trainer.seconds,
            "last_epoch_images_per_second": trainer.images_per_second,
        },
        "load_seconds": load_seconds,
        "server_cpu_seconds": server_cpu,  # over load_seconds: how many cores the server kept busy
        "server_rss_mb": {"start": rss_start, "before": rss_before, "peak": peak[0], "after": rss_after},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, default=REPO_ROOT / "checkpoints" / "mnist-conv-16.pt")
    parser.add_argument("--sessions", type=int, default=4, help="slider sessions besides the trainer")
    parser.add_argument("--idle-moves", type=int, default=30)
    parser.add_argument(
        "--together-moves", type=int, default=10, help="per slider session, all at once, no run"
    )
    parser.add_argument("--min-moves", type=int, default=20, help="per slider session under load")
    parser.add_argument("--max-moves", type=int, default=150, help="per slider session under load")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    if not CHROMIUM.exists():
        print(f"load: needs Chromium at {CHROMIUM} (apt-get install chromium)", file=sys.stderr)
        return 2
    if not args.checkpoint.is_file():
        print(
            f"missing checkpoint {args.checkpoint}: run `make checkpoints` or pass --checkpoint",
            file=sys.stderr,
        )
        return 2
    if args.sessions < 1 or args.idle_moves < 1 or args.min_moves < 1 or args.max_moves < args.min_moves:
        print("load: --sessions, --idle-moves and --min-moves must be >= 1, --max-moves >= --min-moves")
        return 2
    (REPO_ROOT / "test-artifacts").mkdir(exist_ok=True)  # streamlit_server writes its log there
    load_before = os.getloadavg()[0]
    report = run(args)
    # Shared machines: a load average well above the core count means other work skewed the figures.
    report["load_average_1min"] = {"before": load_before, "after": os.getloadavg()[0]}
    report["machine"] = {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }
    report["checkpoint"] = args.checkpoint.name
    report["sessions"] = args.sessions

    idle, under, both = report["idle"], report["under_training"], report["sessions_together_no_training"]
    mem, train = report["server_rss_mb"], report["training"]
    rows = [
        ("slider -> image, idle (1 session)", f"p50 {idle['p50_ms']:.0f} ms", f"p90 {idle['p90_ms']:.0f} ms",
         f"{idle['moves']} moves"),
        (f"slider -> image, {args.sessions} sessions, no training", f"p50 {both['p50_ms']:.0f} ms",
         f"p90 {both['p90_ms']:.0f} ms", f"{both['moves']} moves"),
        (f"slider -> image, {args.sessions} sessions + training", f"p50 {under['p50_ms']:.0f} ms",
         f"p90 {under['p90_ms']:.0f} ms", f"{under['moves']} moves while the run trained"),
        ("under load / idle", f"p50 {report['ratio_p50']:.2f}x", f"p90 {report['ratio_p90']:.2f}x", ""),
        (f"training: digits, {train['epochs']} epochs, batch {train['batch']}", f"{train['seconds']:.1f} s",
         f"last epoch {train['last_epoch_images_per_second']} images/s",
         f"server busy {report['server_cpu_seconds'] / report['load_seconds']:.2f} cores over the load phase"),
        ("server memory (VmRSS)", f"before {mem['before']:.0f} MB", f"peak {mem['peak']:.0f} MB",
         f"after {mem['after']:.0f} MB ({mem['after'] - mem['before']:+.0f} MB; at start {mem['start']:.0f} MB)"),
    ]  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    load = report["load_average_1min"]
    print(
        f"machine load average (1 min): {load['before']:.1f} before, {load['after']:.1f} after; {os.cpu_count()} CPUs"
    )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
