"""The Insight pages in a real browser: health, traversals, evaluate, compare and export, with screenshots."""

from __future__ import annotations

import io
import shutil
import zipfile
from pathlib import Path

import pytest

from tests.app_support import ROOT, wait_for_app

pytestmark = pytest.mark.browser

TIMEOUT_MS = 120_000
SCREENSHOTS = ROOT / "docs" / "screenshots"


def open_page(page, app_url: str, title: str) -> None:
    """Open the app and go to the page ``title`` through the sidebar navigation, as a user would."""
    page.goto(app_url)
    link = page.get_by_test_id("stSidebarNav").get_by_role("link", name=title, exact=True)
    link.wait_for(timeout=TIMEOUT_MS)
    link.click()
    page.get_by_role("heading", name=title, exact=True).wait_for(timeout=TIMEOUT_MS)
    wait_for_app(page, timeout_ms=TIMEOUT_MS)


def assert_clean(page) -> None:
    """Fail when the page shows a traceback or an exception box."""
    assert "Traceback" not in page.content()
    assert page.get_by_test_id("stException").count() == 0


def screenshot(page, artifacts_dir: Path, name: str) -> None:
    """Save the whole page to test-artifacts/ and docs/screenshots/ (Streamlit scrolls inside its container)."""
    page.mouse.move(5, 5)  # no tooltip left over from a click
    height = page.evaluate(
        "() => document.querySelector('[data-testid=\"stMainBlockContainer\"]').scrollHeight"
    )
    page.set_viewport_size({"width": 1400, "height": min(int(height) + 60, 6000)})
    page.wait_for_timeout(1500)  # plotly redraws at the new size
    wait_for_app(page, timeout_ms=TIMEOUT_MS)
    path = artifacts_dir / f"{name}.png"
    page.screenshot(path=path, full_page=True)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(path, SCREENSHOTS / f"{name}.png")
    page.set_viewport_size({"width": 1400, "height": 1000})


def test_latent_health(browser_page, app_url: str, artifacts_dir: Path) -> None:
    page = browser_page
    open_page(page, app_url, "Latent health")
    page.get_by_role("heading", name="KL per dimension").wait_for(timeout=TIMEOUT_MS)
    page.get_by_text("Active units", exact=True).first.wait_for(timeout=TIMEOUT_MS)
    page.get_by_text("z drawn from the prior N(0, I)").wait_for(timeout=TIMEOUT_MS)
    # Plotly draws after Streamlit has placed the chart containers: wait for all three.
    page.wait_for_function(
        "() => document.querySelectorAll('.js-plotly-plot').length >= 3", timeout=TIMEOUT_MS
    )
    assert page.locator(".js-plotly-plot").count() == 3
    assert_clean(page)
    screenshot(page, artifacts_dir, "health")


def test_traversals(browser_page, app_url: str, artifacts_dir: Path) -> None:
    page = browser_page
    open_page(page, app_url, "Traversals")
    page.get_by_text("dimensions × 9 steps", exact=False).wait_for(timeout=TIMEOUT_MS)
    page.get_by_role("button", name="Download GIF").wait_for(timeout=TIMEOUT_MS)
    assert page.get_by_test_id("stImage").count() >= 3  # the example, the animation, the grid
    assert_clean(page)
    screenshot(page, artifacts_dir, "traversals")


def test_evaluate_runs_the_nll(browser_page, app_url: str, artifacts_dir: Path) -> None:
    page = browser_page
    open_page(page, app_url, "Evaluate")
    page.get_by_text("Test −ELBO", exact=True).wait_for(timeout=TIMEOUT_MS)
    page.get_by_text("decodes", exact=False).first.wait_for(timeout=TIMEOUT_MS)
    page.get_by_role("button", name="Estimate the NLL").click()
    page.get_by_text("NLL, K = 100", exact=True).wait_for(timeout=TIMEOUT_MS)
    wait_for_app(page, timeout_ms=TIMEOUT_MS)
    page.get_by_text("16 least typical (highest −ELBO, nats)").wait_for(timeout=TIMEOUT_MS)
    assert_clean(page)
    screenshot(page, artifacts_dir, "evaluate")


def test_compare_two_checkpoints(browser_page, app_url: str, artifacts_dir: Path) -> None:
    page = browser_page
    open_page(page, app_url, "Compare")
    table = page.get_by_test_id("stTable")
    table.wait_for(timeout=TIMEOUT_MS)
    assert "active units" in table.inner_text()
    page.get_by_text("The same inputs, reconstructed").wait_for(timeout=TIMEOUT_MS)
    page.get_by_text("How they trained").wait_for(timeout=TIMEOUT_MS)
    assert page.locator(".js-plotly-plot").count() == 3  # the two maps and the loss histories overlaid
    assert_clean(page)
    screenshot(page, artifacts_dir, "compare")


def test_export_downloads_the_projector_files(browser_page, app_url: str, artifacts_dir: Path) -> None:
    page = browser_page
    open_page(page, app_url, "Export")
    button = page.get_by_role("button", name="Embedding Projector files (.zip)")
    button.wait_for(timeout=TIMEOUT_MS)
    with page.expect_download(timeout=TIMEOUT_MS) as download:
        button.click()
    archive = zipfile.ZipFile(io.BytesIO(Path(download.value.path()).read_bytes()))
    assert sorted(archive.namelist()) == [
        "metadata.tsv",
        "projector_config.pbtxt",
        "sprite.png",
        "vectors.tsv",
    ]
    assert_clean(page)
    screenshot(page, artifacts_dir, "export")
