"""The Decode and Latent map pages in headless Chromium, on the shipped checkpoints."""

import io
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.app_support import ROOT, wait_for_app

pytestmark = pytest.mark.browser

DOCS = ROOT / "docs" / "screenshots"
DECODED = ".st-key-decode_image img"
# Streamlit >= 1.5x draws a react-aria slider around an <input type="range">; older ones a BaseWeb [role=slider].
SLIDER = '[data-testid="stSlider"] input[type="range"], [data-testid="stSlider"] [role="slider"]'
PLOT = '[data-testid="stMain"] .js-plotly-plot'
GRID = ".st-key-decode_grid_chart .js-plotly-plot"
MAP = ".st-key-decode_map .js-plotly-plot"


def require_checkpoint(name: str) -> None:
    if not (ROOT / "checkpoints" / f"{name}.pt").is_file():
        pytest.skip(f"needs the shipped checkpoints/{name}.pt (make checkpoints)")


def open_page(page, app_url, path: str, ready: str) -> None:
    """Open the page at ``app_url/path`` by its deep link and wait for the ``ready`` element."""
    page.goto(f"{app_url}/{path}")
    page.wait_for_selector(ready, timeout=90_000)
    wait_for_app(page)


def marker_xy(page) -> list[float]:
    """Return where the Decode page's map draws the current z."""
    return page.evaluate(
        f"""() => {{
            const t = document.querySelector('{MAP}')._fullData.find(t => t.name === 'current z');
            return [t.x[0], t.y[0]];
        }}"""
    )


def pick_model(page, name: str) -> None:
    """Choose a checkpoint in the sidebar's model picker."""
    page.locator('[data-testid="stSidebar"] [data-testid="stSelectbox"]').first.click()
    page.get_by_role("option", name=name, exact=True).click()
    wait_for_app(page)


def pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=np.float32)


def save(page, artifacts_dir: Path, name: str) -> None:
    path = artifacts_dir / f"{name}.png"
    page.screenshot(path=path, full_page=True)
    DOCS.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, DOCS / f"{name}.png")


def test_decode_keyboard_slider_moves_change_the_decoded_image(browser_page, app_url, artifacts_dir):
    require_checkpoint("mnist-conv-16")
    page = browser_page
    open_page(page, app_url, "decode", DECODED)
    image = page.locator(DECODED)
    page.wait_for_selector(MAP, timeout=60_000)
    before_src, before = image.get_attribute("src"), pixels(image.screenshot())
    before_marker = marker_xy(page)
    page.locator(SLIDER).first.focus()
    for _ in range(30):  # z0 from 0 to 1.5 in steps of 0.05
        page.keyboard.press("ArrowRight")
    page.wait_for_function(
        "(old) => { const img = document.querySelector('.st-key-decode_image img'); return img && img.src !== old; }",
        arg=before_src,
        timeout=60_000,
    )
    # Every press counts, also while the page is still redrawing for the previous one.
    page.wait_for_function(
        """() => document.querySelector('[data-testid="stSliderThumbValue"]').innerText === '1.50'""",
        timeout=60_000,
    )
    wait_for_app(page)
    after = pixels(image.screenshot())
    assert after.shape == before.shape and after.shape[0] >= 250  # shown large, not a 28 px thumbnail
    assert np.abs(after - before).mean() > 2, "the decoded image did not change"
    # log p(z) fell by z0^2 / 2 = 1.125 nats from its value at z = 0
    assert page.get_by_text("from z = 0").first.inner_text().startswith("-1.1")
    # The current z moved on the shared map too.
    assert marker_xy(page) != before_marker
    page.screenshot(path=artifacts_dir / "decode-conv-16.png", full_page=True)


def test_decode_a_2d_model_shows_the_manifold_grid(browser_page, app_url, artifacts_dir):
    require_checkpoint("mnist-mlp-2")
    page = browser_page
    open_page(page, app_url, "decode", DECODED)
    pick_model(page, "mnist-mlp-2")
    page.wait_for_selector(GRID, timeout=60_000)
    assert page.locator(SLIDER).count() == 2
    traces = page.evaluate(f"() => document.querySelector('{GRID}').data.map(t => t.type)")
    assert traces == ["image", "scatter"]  # the decoded grid and the ring at the current z
    assert marker_xy(page) == [0, 0]  # a 2-D latent's map is the latent plane: the marker is z itself
    page.locator(SLIDER).nth(1).focus()
    for _ in range(20):
        page.keyboard.press("ArrowRight")
    page.wait_for_function(
        f"() => document.querySelector('{MAP}')._fullData.find(t => t.name === 'current z').y[0] > 0.99",
        timeout=60_000,
    )
    wait_for_app(page)
    page.wait_for_timeout(500)
    save(page, artifacts_dir, "decode")


def test_latent_map_scatter_and_a_lasso_selection(browser_page, app_url, artifacts_dir):
    require_checkpoint("mnist-conv-16")
    page = browser_page
    open_page(page, app_url, "latent_map", PLOT)
    counts = page.evaluate(f"() => document.querySelector('{PLOT}')._fullData.map(t => t._length)")
    assert len(counts) == 10 and sum(counts) == 2000  # one trace per digit, the bundled 2,000 test images
    # The map opens on pan, so that a click picks a dot: choose the lasso tool in the mode bar first.
    page.locator(f"{PLOT} .nsewdrag").first.hover()
    page.locator(f'{PLOT} .modebar-btn[data-val="lasso"]').click()
    # Lasso a patch around the middle of the plot area.
    box = page.locator(f"{PLOT} .nsewdrag").first.bounding_box()
    cx, cy, r = (
        box["x"] + box["width"] / 2,
        box["y"] + box["height"] / 2,
        min(box["width"], box["height"]) / 6,
    )
    page.mouse.move(cx - r, cy - r)
    page.mouse.down()
    for x, y in ((cx + r, cy - r), (cx + r, cy + r), (cx - r, cy + r), (cx - r, cy - r)):
        page.mouse.move(x, y, steps=8)
    page.mouse.up()
    heading = page.locator('[data-testid="stMain"] h3', has_text="selected")
    heading.wait_for(timeout=60_000)
    wait_for_app(page)
    selected = int(heading.inner_text().split()[0].replace(",", ""))
    assert selected > 0
    grids = page.locator('[data-testid="stMain"] [data-testid="stImage"] img')
    assert grids.count() == 2  # the selected test images and their reconstructions
    save(page, artifacts_dir, "latent_map")
