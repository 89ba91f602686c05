"""Support for app tests: a folder of tiny checkpoints, AppTest runs, and a real server with Chromium."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from tests.helpers import random_splits, tiny_model
from vae_core.bundle import save_trained, test_metrics
from vae_core.config import ModelConfig, TrainConfig
from vae_core.timeline import TimelineRecorder
from vae_core.training import fit

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
# Every page of the app, in the navigation's order.
PAGES = [
    "vae_app/views/home.py",
    "vae_app/views/train.py",
    "vae_app/views/latent_map.py",
    "vae_app/views/decode.py",
    "vae_app/views/interpolate.py",
    "vae_app/views/directions.py",
    "vae_app/views/generate.py",
    "vae_app/views/encode.py",
    "vae_app/views/health.py",
    "vae_app/views/traversals.py",
    "vae_app/views/timeline.py",
    "vae_app/views/evaluate.py",
    "vae_app/views/compare.py",
    "vae_app/views/export.py",
]
TINY_MODELS = {
    "tiny-mlp-2": ModelConfig(arch="mlp", latent_dim=2, hidden=(32,)),
    "tiny-conv-4": ModelConfig(arch="conv", latent_dim=4, channels=(4, 8)),
}


def make_tiny_checkpoints(folder: Path) -> dict[str, Path]:
    """Train two tiny models for two epochs on random blobs; save them with a bundled sample and a timeline."""
    folder.mkdir(parents=True, exist_ok=True)
    data = random_splits(n_train=128, n_test=96)
    paths = {}
    for name, config in TINY_MODELS.items():
        model = tiny_model(config)
        train = TrainConfig(dataset="random", epochs=2, batch_size=32, device="cpu")
        recorder = TimelineRecorder(data.test_x, data.test_y, latent_dim=config.latent_dim)
        history = fit(model, data, train, on_epoch=recorder).history
        metrics = test_metrics(model, data.test_x, nll_k=5)
        paths[name] = save_trained(
            folder / f"{name}.pt",
            model=model,
            data=data,
            train_config=train,
            history=history,
            metrics=metrics,
            sample_size=96,
            timeline=recorder.timeline(),
        )
    return paths


def app_test(page: str | None = None, *, timeout: float = 60):
    """Return an AppTest of app.py that has run once, switched to ``page`` (e.g. "vae_app/views/decode.py")."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=timeout)
    at.run()
    if page is not None:
        at.switch_page(page)
        at.run()
    return at


def select_model(at, path: Path):
    """Make the checkpoint at ``path`` the current model and rerun, as the sidebar picker would.

    AppTest does not show the sidebar after ``switch_page``, so tests set the picker's state.
    """
    at.session_state["app_model"] = {"kind": "file", "path": str(path)}
    at.run()
    assert_no_exception(at)
    return at


def chart_spec(at, index: int = 0) -> dict:
    """Return the Plotly figure of the page's ``index``-th chart as a dict."""
    return json.loads(at.get("plotly_chart")[index].proto.spec)


def chart_by_key(at, key: str) -> dict | None:
    """Return the Plotly figure of the page's chart with widget key ``key`` as a dict, or None if absent."""
    found = [chart for chart in at.get("plotly_chart") if chart.key == key]
    return json.loads(found[0].proto.spec) if found else None


def plotly_array(value) -> np.ndarray:
    """Return a Plotly data array, which Plotly 6 may send as base64-encoded bytes."""
    if isinstance(value, dict) and "bdata" in value:
        return np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"]).copy()
    return np.asarray(value)


def assert_no_exception(at) -> None:
    """Fail with the messages of any exception element the app rendered."""
    problems = [e.value for e in at.exception]
    assert not problems, problems


SERVER_PIDS: dict[str, int] = {}  # URL -> process id of each server started by streamlit_server


def free_port() -> int:
    """Return a free TCP port on the loopback interface."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def streamlit_server(*, env: dict[str, str] | None = None, script: Path = ROOT / "app.py") -> Iterator[str]:
    """Start ``streamlit run`` headless on a free loopback port; yield its URL; stop it afterwards."""
    port = free_port()
    streamlit = Path(sys.executable).with_name("streamlit")
    command = [
        str(streamlit) if streamlit.exists() else shutil.which("streamlit") or "streamlit",
        "run",
        str(script),
        "--server.headless",
        "true",
        "--server.port",
        str(port),
        "--server.address",
        "127.0.0.1",
        "--browser.gatherUsageStats",
        "false",
        "--server.fileWatcherType",
        "none",
    ]
    (ROOT / "test-artifacts").mkdir(exist_ok=True)
    log = open(ROOT / "test-artifacts" / f"streamlit-{port}.log", "w")
    # One torch thread: on a 2-core machine shared with Chromium and pytest, more threads only contend.
    server_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    proc = subprocess.Popen(command, cwd=ROOT, env=server_env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    SERVER_PIDS[url] = proc.pid
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"streamlit did not start; see {log.name}")
            time.sleep(0.3)
        yield url
    finally:
        SERVER_PIDS.pop(url, None)
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def launch_chromium(playwright):
    """Launch Debian's Chromium headless with the flags this sandbox needs."""
    return playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)


def wait_for_app(page, *, timeout_ms: int = 60_000) -> None:
    """Wait until Streamlit has drawn a page title and finished running the script.

    Streamlit marks its root element with ``data-test-script-state`` ("running", "notRunning", ...); a
    page with a polling fragment flips it about once a second, so the wait ends at the first quiet moment.
    """
    page.wait_for_selector('[data-testid="stApp"]', timeout=timeout_ms)
    # Every page starts with st.title: until it shows, the first script run has not drawn the page yet.
    page.wait_for_selector('[data-testid="stMain"] h1', timeout=timeout_ms)
    page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]', timeout=timeout_ms)
    page.wait_for_timeout(300)
