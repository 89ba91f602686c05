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


def open_page(page, app_url: str, path: str, title: str) -> None:
    """Open the page at ``app_url/path`` by its deep link and wait until its ``title`` heading is drawn."""
    page.goto(f"{app_url}/{path}")
    page.get_by_role("heading", name=title, exact=True).wait_for(timeout=TIMEOUT_MS)
    wait_for_app(page, timeout_ms=TIMEOUT_MS)


def trace_names(page, key: str) -> list[str]:
    """Return the trace names of the Plotly chart with widget key ``key``."""
    plot = page.locator(f".st-key-{key} .js-plotly-plot")
    plot.wait_for(timeout=TIMEOUT_MS)
    return plot.evaluate("el => el.data.map(t => t.name)")


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
    open_page(page, app_url, "encode", "Encode")
    # The page opens on the canvas (tests/test_browser_draw.py draws on it); an upload is one click away.
    page.locator(".st-key-encode_canvas canvas").first.wait_for(timeout=TIMEOUT_MS)
    page.get_by_test_id("stMain").get_by_text("Upload", exact=True).click()
    page.get_by_test_id("stMain").get_by_test_id("stFileUploader").wait_for(timeout=TIMEOUT_MS)

    upload(page, seven_png(tmp_path / "seven.png"))
    page.get_by_text("light background detected: inverted").wait_for(timeout=TIMEOUT_MS)
    page.get_by_text("What was done to seven.png", exact=False).first.wait_for(timeout=TIMEOUT_MS)
    percentile = page.get_by_test_id("stMetric").filter(has_text="Percentile among the test images")
    assert percentile.get_by_test_id("stMetricValue").inner_text().endswith(("st", "nd", "rd", "th"))
    # The μ/σ bar chart, the histogram and the latent map are drawn.
    page.locator('[data-testid="stPlotlyChart"] .barlayer .point').first.wait_for(timeout=TIMEOUT_MS)
    page.get_by_test_id("stPlotlyChart").nth(2).wait_for(timeout=TIMEOUT_MS)  # bars, histogram, map
    # The map is the shared one (a trace per digit, as on the Latent map page) with the upload as a star on top.
    names = trace_names(page, "encode_map")
    assert names[:10] == [str(digit) for digit in range(10)] and names[-1] == "this image"
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
    open_page(page, app_url, "interpolate", "Interpolate")
    page.get_by_text("decoded: 10 images", exact=False).wait_for(timeout=TIMEOUT_MS)
    # The path is drawn across the shared map: 10 points joined by a line, A and B as stars.
    assert trace_names(page, "interp_map")[-2:] == ["path", "A and B"]
    plot = page.locator(".st-key-interp_map .js-plotly-plot")
    assert plot.evaluate("el => el._fullData.find(t => t.name === 'path')._length") == 10
    page.get_by_role("radiogroup", name="Path").get_by_text("Spherical (slerp)").click()
    page.get_by_text("decoded: 10 images", exact=False).filter(has_text="spherical (slerp)").wait_for(
        timeout=TIMEOUT_MS
    )
    wait_for_app(page, timeout_ms=TIMEOUT_MS)
    assert page.get_by_test_id("stDownloadButton").count() == 2
    assert page.get_by_test_id("stException").count() == 0
    screenshot(page, artifacts_dir / "interpolate.png", height=1800)
    shutil.copy(artifacts_dir / "interpolate.png", ROOT / "docs" / "screenshots" / "interpolate.png")
