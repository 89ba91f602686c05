"""Shared fixtures: one CPU thread, a fixed seed, the optional shared MNIST data, an artifacts folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from vae_core.config import ModelConfig

REPO_ROOT = Path(__file__).resolve().parents[1]
MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)

# One thread: the machines are small and shared, and results stay the same run to run.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed_torch() -> None:
    """Seed torch's global generator before every test."""
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def shared_data_root() -> Path:
    """Return the torchvision root with the shared datasets (``$VAE_TEST_DATA_DIR`` overrides it)."""
    override = os.environ.get("VAE_TEST_DATA_DIR")
    if override:
        return Path(override).expanduser().resolve()
    return Path(__file__).resolve().parents[2] / "shared" / "datasets"


@pytest.fixture(scope="session")
def mnist_root(shared_data_root: Path) -> Path:
    """Return the torchvision root holding MNIST's raw files, or skip the test when they are absent."""
    raw = shared_data_root / "MNIST" / "raw"
    if not all((raw / name).is_file() for name in MNIST_FILES):
        pytest.skip("needs ../shared/datasets (the MNIST subset); absent in a plain clone")
    return shared_data_root


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    """Return ``test-artifacts/`` at the repository root (created), for screenshots and logs."""
    path = REPO_ROOT / "test-artifacts"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture
def tiny_config() -> ModelConfig:
    """Return a 2-D latent MLP with one hidden layer of 32 units: fast enough for any test."""
    return ModelConfig(latent_dim=2, arch="mlp", hidden=(32,))


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Return a folder with two tiny trained checkpoints that bundle a sample ("tiny-mlp-2", "tiny-conv-4")."""
    from tests.app_support import make_tiny_checkpoints

    folder = tmp_path_factory.mktemp("checkpoints")
    make_tiny_checkpoints(folder)
    return folder


@pytest.fixture
def app_env(tiny_checkpoints: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the app at the tiny checkpoints and at an empty data folder (offline, no dataset on disk)."""
    empty = tmp_path / "no-data"
    empty.mkdir()
    monkeypatch.setenv("VAE_CHECKPOINT_DIR", str(tiny_checkpoints))
    monkeypatch.setenv("VAE_DATA_DIR", str(empty))
    monkeypatch.setenv("VAE_AUTOSAVE_DIR", str(tmp_path / "autosave"))  # training autosaves stay in this test
    return tiny_checkpoints


@pytest.fixture(scope="session")
def chromium():
    """Yield a headless Debian Chromium driven by Playwright, or skip when it is not installed."""
    from tests.app_support import CHROMIUM, launch_chromium

    if not CHROMIUM.exists():
        pytest.skip(
            f"browser tests need Chromium at {CHROMIUM} (.ci/run installs it: apt-get install chromium)"
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("browser tests need the playwright Python package (pip install -e '.[test]')")
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def app_url(artifacts_dir: Path, shared_data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """Serve app.py with the repository's checkpoints on a free loopback port; yield its URL.

    Training autosaves go to a temporary folder, not to ``checkpoints/.autosave``.
    """
    from tests.app_support import streamlit_server

    env = {"VAE_AUTOSAVE_DIR": str(tmp_path_factory.mktemp("autosave"))}
    if shared_data_root.is_dir():
        env["VAE_DATA_DIR"] = str(shared_data_root)
    with streamlit_server(env=env) as url:
        yield url


@pytest.fixture
def browser_page(chromium, app_url: str):
    """Yield a fresh Playwright page (1400x1600: Streamlit scrolls inside its own container, so a full-page
    screenshot shows only the viewport) in its own browser context."""
    context = chromium.new_context(viewport={"width": 1400, "height": 1600})
    page = context.new_page()
    yield page
    context.close()
