"""Encode and Interpolate in a real browser: upload a drawn digit, a corrupt file, and walk between two digits."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from tests.app_support import ROOT, wait_for_app

pytestmark = pytest.mark.browser

TIMEOUT_MS = 120_000


def seven_png(path: Path) -> Path:
    """Write a thick black 7 on white 200x200 (a light background, so the page must invert it)."""
    img = Image.new("RGB", (200, 200), "white")
    ImageDraw.Draw(img).line([(45, 40), (155, 40), (85, 170)], fill="black", width=18, joint="curve")
    img.save(path, format="PNG")
    return path


def open_page(page, app_url: str, title: str) -> None:
    """Open the app and go to the page ``title`` through the sidebar navigation, as a user would.

    (Loading ``/encode`` directly is not used: the page must run inside app.py's frame.)
    """
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    page.goto(app_url)
    link = page.get_by_test_id("stSidebarNav").get_by_role("link", name=title, exact=True)
    heading = page.get_by_role("heading", name=title, exact=True)
    link.wait_for(timeout=TIMEOUT_MS)
    wait_for_app(page, timeout_ms=TIMEOUT_MS)
    for attempt in range(3):  # a click during the first, slow run of Home can be lost
        link.click()
        try:
            heading.wait_for(timeout=TIMEOUT_MS // 3)
            break
        except PlaywrightTimeout:
            if attempt == 2:
                raise
    wait_for_app(page, timeout_ms=TIMEOUT_MS)


def screenshot(page, path: Path, *, height: int) -> None:
    """Save the whole page: Streamlit scrolls inside its own container, so grow the viewport first."""
    page.set_viewport_size({"width": 1400, "height": height})
    page.wait_for_timeout(1500)  # plotly redraws at the new size
    page.screenshot(path=path, full_page=True)
    page.set_viewport_size({"width": 1400, "height": 1000})


def upload(page, path: Path) -> None:
    """Put ``path`` into the Encode page's file uploader and wait for the page to rerun."""
    page.get_by_test_id("stMain").get_by_test_id("stFileUploader").locator(
        'input[type="file"]'
    ).set_input_files(str(path))
    page.get_by_text(path.name).first.wait_for(timeout=TIMEOUT_MS)
    wait_for_app(page, timeout_ms=TIMEOUT_MS)


def test_encode_an_uploaded_digit_then_a_corrupt_file(
    browser_page, app_url: str, artifacts_dir: Path, tmp_path
) -> None:
    page = browser_page
    open_page(page, app_url, "Encode")
    # Useful without an upload: the example drawing is encoded.
    page.get_by_text("Percentile among the test images").wait_for(timeout=TIMEOUT_MS)

    upload(page, seven_png(tmp_path / "seven.png"))
    page.get_by_text("light background detected: inverted").wait_for(timeout=TIMEOUT_MS)
    page.get_by_text("What was done to seven.png", exact=False).first.wait_for(timeout=TIMEOUT_MS)
    percentile = page.get_by_test_id("stMetric").filter(has_text="Percentile among the test images")
    assert percentile.get_by_test_id("stMetricValue").inner_text().endswith(("st", "nd", "rd", "th"))
    # The μ/σ bar chart, the histogram and the latent map are drawn.
    page.locator('[data-testid="stPlotlyChart"] .barlayer .point').first.wait_for(timeout=TIMEOUT_MS)
    page.get_by_test_id("stPlotlyChart").nth(2).wait_for(timeout=TIMEOUT_MS)  # bars, histogram, map
    assert page.get_by_text("the error bar is its uncertainty", exact=False).count() == 1
    neighbours = page.get_by_text(re.compile(r"^#\d+\s·\s.+, d\s=\s\d"))
    neighbours.nth(7).wait_for(timeout=TIMEOUT_MS)  # 8 nearest neighbours
    assert neighbours.count() == 8
    screenshot(page, artifacts_dir / "encode.png", height=2400)
    shutil.copy(artifacts_dir / "encode.png", ROOT / "docs" / "screenshots" / "encode.png")

    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"this is not really an image" * 20)
    upload(page, broken)
    error = page.get_by_test_id("stAlert").filter(has_text="Could not read broken.png")
    error.wait_for(timeout=TIMEOUT_MS)
    assert "Traceback" not in page.content()
    assert page.get_by_test_id("stException").count() == 0
    screenshot(page, artifacts_dir / "encode-corrupt.png", height=1000)


def test_interpolate_between_two_test_digits(browser_page, app_url: str, artifacts_dir: Path) -> None:
    page = browser_page
    open_page(page, app_url, "Interpolate")
    page.get_by_text("decoded: 10 images", exact=False).wait_for(timeout=TIMEOUT_MS)
    page.get_by_test_id("stPlotlyChart").wait_for(timeout=TIMEOUT_MS)
    page.get_by_role("radiogroup", name="Path").get_by_text("Spherical (slerp)").click()
    page.get_by_text("decoded: 10 images", exact=False).filter(has_text="spherical (slerp)").wait_for(
        timeout=TIMEOUT_MS
    )
    wait_for_app(page, timeout_ms=TIMEOUT_MS)
    assert page.get_by_test_id("stDownloadButton").count() == 2
    assert page.get_by_test_id("stException").count() == 0
    screenshot(page, artifacts_dir / "interpolate.png", height=1800)
    shutil.copy(artifacts_dir / "interpolate.png", ROOT / "docs" / "screenshots" / "interpolate.png")
