"""Clicking the Latent map in headless Chromium, on the shipped checkpoints: a dot opens Decode on its code,
and on the 2-D model a click anywhere on the plane decodes that z."""

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.app_support import ROOT, wait_for_app
from vae_core.checkpoints import load_checkpoint

pytestmark = pytest.mark.browser

PLOT = ".st-key-latent_map_chart .js-plotly-plot"
PLANE_IMAGE = ".st-key-latent_map_plane_image img"
HEADING = '[data-testid="stMain"] h3'


def require_checkpoint(name: str) -> None:
    if not (ROOT / "checkpoints" / f"{name}.pt").is_file():
        pytest.skip(f"needs the shipped checkpoints/{name}.pt (make checkpoints)")


def open_map(page, app_url: str, model: str | None = None) -> None:
    page.goto(f"{app_url}/latent_map")
    page.wait_for_selector(PLOT, timeout=90_000)
    wait_for_app(page)
    if model is not None:
        page.locator('[data-testid="stSidebar"] [data-testid="stSelectbox"]').first.click()
        page.get_by_role("option", name=model, exact=True).click()
        wait_for_app(page)


def to_pixels(page, x: float, y: float) -> tuple[float, float]:
    """Return where the map draws the data point (x, y), in page pixels."""
    return tuple(
        page.evaluate(
            f"""([x, y]) => {{
                const gd = document.querySelector('{PLOT}');
                const box = gd.querySelector('.nsewdrag').getBoundingClientRect();
                return [box.left + gd._fullLayout.xaxis.l2p(x), box.top + gd._fullLayout.yaxis.l2p(y)];
            }}""",
            [x, y],
        )
    )


def click_at(page, px: tuple[float, float]) -> None:
    page.mouse.move(*px)
    page.wait_for_timeout(200)  # let Plotly find the point under the mouse before the click
    page.mouse.click(*px)


def test_clicking_a_dot_opens_decode_with_its_code(browser_page, app_url, artifacts_dir):
    require_checkpoint("mnist-conv-16")
    atlas = load_checkpoint(ROOT / "checkpoints" / "mnist-conv-16.pt").atlas
    page = browser_page
    open_map(page, app_url)
    # A dot of the map: trace 3 (one digit), its 10th point. Dots can overlap, so the row clicked is the
    # one Plotly finds under the mouse (its customdata is the atlas row).
    x, y = page.evaluate(
        f"() => {{ const t = document.querySelector('{PLOT}')._fullData[3]; return [t.x[10], t.y[10]]; }}"
    )
    click_at(page, to_pixels(page, x, y))
    row = page.evaluate(f"() => document.querySelector('{PLOT}')._hoverdata[0].customdata")
    page.locator(HEADING, has_text=f"Image #{row} ·").wait_for(timeout=60_000)
    wait_for_app(page)
    page.screenshot(path=artifacts_dir / "click-map-point.png", full_page=True)
    page.get_by_role("button", name="Open in Decode").click()
    page.wait_for_selector('[data-testid="stMain"] h1:has-text("Decode")', timeout=60_000)
    page.wait_for_selector(".st-key-decode_map .js-plotly-plot", timeout=60_000)
    wait_for_app(page)
    sliders = page.locator('[data-testid="stSlider"]')
    values = {}
    for i in range(sliders.count()):
        label = sliders.nth(i).locator('[data-testid="stWidgetLabel"]').inner_text()
        if label.startswith("z"):
            values[int(label.split()[0][1:])] = float(
                sliders.nth(i).locator('[data-testid="stSliderThumbValue"]').inner_text()
            )
    assert sorted(values) == list(range(16))
    np.testing.assert_allclose([values[i] for i in range(16)], atlas.mu[row], atol=0.006)
    # The star on the shared map sits on the dot that was clicked.
    star = page.evaluate(
        "() => { const t = document.querySelector('.st-key-decode_map .js-plotly-plot')._fullData"
        ".find(t => t.name === 'current z'); return [t.x[0], t.y[0]]; }"
    )
    np.testing.assert_allclose(star, atlas.coords[row], atol=1e-4)
    page.screenshot(path=artifacts_dir / "click-decode-opened.png", full_page=True)
    # The decoded image downloads as a PNG, shown large.
    with page.expect_download() as download:
        page.locator(".st-key-decode_image_png button").click()
    png = Path(download.value.path()).read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert Image.open(io.BytesIO(png)).size[0] >= 3 * 28


def test_clicking_the_2d_plane_decodes_that_z(browser_page, app_url, artifacts_dir):
    require_checkpoint("mnist-mlp-2")
    page = browser_page
    open_map(page, app_url, "mnist-mlp-2")
    page.wait_for_function(
        f"() => document.querySelector('{PLOT}')._fullData.some(t => t.name === 'latent plane')",
        timeout=60_000,
    )
    (x0, x1), (y0, y1) = page.evaluate(
        f"() => {{ const l = document.querySelector('{PLOT}')._fullLayout; return [l.xaxis.range, l.yaxis.range]; }}"
    )
    cell = max((x1 - x0), (y1 - y0)) / 50  # the grid's spacing is under 1/50 of the axes' span
    pictures = []
    # Two empty corners of the plane, away from every test image.
    for fx, fy in ((0.08, 0.92), (0.92, 0.08)):
        x, y = x0 + fx * (x1 - x0), y0 + fy * (y1 - y0)
        old = page.locator(PLANE_IMAGE).get_attribute("src") if page.locator(PLANE_IMAGE).count() else None
        click_at(page, to_pixels(page, x, y))
        page.wait_for_function(
            f"(old) => {{ const img = document.querySelector('{PLANE_IMAGE}'); return img && img.src !== old; }}",
            arg=old,
            timeout=60_000,
        )
        wait_for_app(page)
        heading = page.locator(HEADING).first.inner_text()  # "z = (-3.08, 3.73)"
        zx, zy = (float(v) for v in heading.split("(")[1].rstrip(")").split(","))
        assert abs(zx - x) < cell and abs(zy - y) < cell, (heading, x, y)
        pictures.append(page.locator(PLANE_IMAGE).get_attribute("src"))
        assert page.get_by_role("button", name="Download this neighbourhood (PNG)").is_visible()
    assert pictures[0] != pictures[1]
    # The decoded neighbourhood downloads as one PNG: 9 x 9 images of 28 px, doubled.
    with page.expect_download() as download:
        page.get_by_role("button", name="Download this neighbourhood (PNG)").click()
    assert Image.open(download.value.path()).size == (9 * 28 * 2, 9 * 28 * 2)
    page.screenshot(path=artifacts_dir / "click-plane.png", full_page=True)
