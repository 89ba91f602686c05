"""Drawing on the canvas in headless Chromium, on the shipped MNIST checkpoints: Encode and Interpolate.

Strokes are drawn with Playwright's mouse. After each one the Encode page's μ bars and its star on the
model's map must move; undo and clear must work. The Interpolate page takes a drawing as its end B.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.app_support import ROOT, wait_for_app

pytestmark = pytest.mark.browser

TIMEOUT_MS = 120_000
DOCS = ROOT / "docs" / "screenshots"
CANVAS = ".st-key-{key} canvas >> nth=-1"  # the sketch component has one canvas
BARS = ".st-key-encode_bars .js-plotly-plot"
MAP = ".st-key-encode_map .js-plotly-plot"
SEVEN = [(70, 60), (210, 60), (120, 230)]
BAR = [(95, 150), (185, 150)]
BASE = [(60, 245), (220, 245)]


def require_checkpoint(name: str) -> None:
    if not (ROOT / "checkpoints" / f"{name}.pt").is_file():
        pytest.skip(f"needs the shipped checkpoints/{name}.pt (make checkpoints)")


def open_page(page, app_url: str, path: str, title: str) -> None:
    page.goto(f"{app_url}/{path}")
    page.get_by_role("heading", name=title, exact=True).wait_for(timeout=TIMEOUT_MS)
    wait_for_app(page, timeout_ms=TIMEOUT_MS)


def pick_model(page, name: str) -> None:
    """Choose a checkpoint in the sidebar's model picker."""
    page.locator('[data-testid="stSidebar"] [data-testid="stSelectbox"]').first.click()
    page.get_by_role("option", name=name, exact=True).click()
    wait_for_app(page, timeout_ms=TIMEOUT_MS)


def stroke(page, key: str, points: list[tuple[int, int]]) -> None:
    """Draw one stroke through ``points`` (canvas pixels) with the mouse on the canvas with widget key ``key``."""
    canvas = page.locator(CANVAS.format(key=key))
    canvas.wait_for(timeout=TIMEOUT_MS)
    box = canvas.bounding_box()
    page.mouse.move(box["x"] + points[0][0], box["y"] + points[0][1])
    page.mouse.down()
    for x, y in points[1:]:
        page.mouse.move(box["x"] + x, box["y"] + y, steps=8)
    page.mouse.up()


def shown_code(page) -> tuple[list[float], list[float]] | None:
    """Return (μ as the bars show it, the star's position on the map), or None while they are not drawn."""
    return page.evaluate(
        f"""() => {{
            const bars = document.querySelector('{BARS}'), map = document.querySelector('{MAP}');
            if (!bars || !map || !bars._fullData || !map._fullData) return null;
            const star = map._fullData.find(t => t.name === 'this image');
            if (!star) return null;
            return [Array.from(bars._fullData[0].y), [star.x[0], star.y[0]]];
        }}"""
    )


def next_code(page, previous) -> tuple[list[float], list[float]]:
    """Wait until the page shows a code other than ``previous``; return it."""
    page.wait_for_function(
        f"""(previous) => {{
            const bars = document.querySelector('{BARS}'), map = document.querySelector('{MAP}');
            if (!bars || !map || !bars._fullData || !map._fullData) return false;
            const star = map._fullData.find(t => t.name === 'this image');
            const now = JSON.stringify([Array.from(bars._fullData[0].y), star ? [star.x[0], star.y[0]] : null]);
            return star && now !== JSON.stringify(previous);
        }}""",
        arg=previous,
        timeout=TIMEOUT_MS,
    )
    wait_for_app(page, timeout_ms=TIMEOUT_MS)
    page.wait_for_timeout(300)  # the fragment's other elements settle
    return shown_code(page)


def toolbar(page, key: str, label: str) -> None:
    """Press the canvas toolbar's button ``label`` ("Undo", "Reset canvas & history")."""
    page.locator(CANVAS.format(key=key)).hover()
    page.locator(f".st-key-{key} button[aria-label='{label}']").click()


@pytest.mark.parametrize("model", ["mnist-conv-16", "mnist-mlp-2"])
def test_strokes_on_the_encode_canvas_move_the_code_and_the_map_marker(
    browser_page, app_url: str, artifacts_dir: Path, model: str
) -> None:
    require_checkpoint(model)
    page = browser_page
    open_page(page, app_url, "encode", "Encode")
    pick_model(page, model)
    page.get_by_text("Draw on the canvas", exact=False).first.wait_for(timeout=TIMEOUT_MS)

    stroke(page, "encode_canvas", SEVEN)
    first = next_code(page, None)
    assert len(first[0]) == (16 if model == "mnist-conv-16" else 2)
    if model == "mnist-mlp-2":  # a 2-D latent: the map is the latent plane, the star sits at μ
        assert first[1] == pytest.approx(first[0], abs=1e-6)
    # A digit model: the drawing is centred like MNIST by default, and the notes say so.
    page.get_by_text("with its centre of mass at the centre", exact=False).wait_for(timeout=TIMEOUT_MS)
    percentile = page.get_by_test_id("stMetric").filter(has_text="Percentile among the test images")
    assert percentile.get_by_test_id("stMetricValue").inner_text().endswith(("st", "nd", "rd", "th"))
    if model == "mnist-conv-16":  # the README's picture: a drawn 7, its code, its score and its place
        page.set_viewport_size({"width": 1400, "height": 2350})
        page.wait_for_timeout(1500)  # plotly redraws at the new size
        page.locator(CANVAS.format(key="encode_canvas")).hover()  # shows the toolbar
        page.screenshot(path=artifacts_dir / "draw.png")
        page.set_viewport_size({"width": 1400, "height": 1600})
        DOCS.mkdir(parents=True, exist_ok=True)
        shutil.copy(artifacts_dir / "draw.png", DOCS / "draw.png")

    stroke(page, "encode_canvas", BAR)
    second = next_code(page, first)
    assert second[0] != first[0] and second[1] != first[1]
    stroke(page, "encode_canvas", BASE)
    third = next_code(page, second)
    assert third[0] != second[0] and third[1] != second[1]

    toolbar(page, "encode_canvas", "Undo")  # back to the 7 with its bar
    undone = next_code(page, third)
    assert undone[0] == pytest.approx(second[0], abs=1e-4) and undone[1] == pytest.approx(second[1], abs=1e-3)
    toolbar(page, "encode_canvas", "Reset canvas & history")
    page.get_by_text("Draw on the canvas", exact=False).first.wait_for(timeout=TIMEOUT_MS)
    # The old encoding goes with the drawing.
    page.locator(BARS).wait_for(state="detached", timeout=TIMEOUT_MS)
    assert page.get_by_test_id("stException").count() == 0


def test_a_drawing_is_an_end_of_the_interpolation(browser_page, app_url: str) -> None:
    require_checkpoint("mnist-conv-16")
    page = browser_page
    open_page(page, app_url, "interpolate", "Interpolate")
    pick_model(page, "mnist-conv-16")
    page.get_by_text("decoded: 10 images", exact=False).wait_for(timeout=TIMEOUT_MS)
    page.get_by_role("radiogroup").filter(has_text="draw").nth(1).get_by_text("draw").click()  # B
    page.get_by_text("Draw on the canvas to use your drawing", exact=False).wait_for(timeout=TIMEOUT_MS)
    # No path until B is drawn. Streamlit keeps the last run's elements until the rerun ends: wait for it.
    page.get_by_text("decoded: 10 images", exact=False).wait_for(state="detached", timeout=TIMEOUT_MS)
    stroke(page, "interp_b_canvas", SEVEN)
    page.get_by_text("your drawing, as the model sees it").wait_for(timeout=TIMEOUT_MS)
    page.get_by_text("decoded: 10 images", exact=False).wait_for(timeout=TIMEOUT_MS)
    assert page.get_by_test_id("stException").count() == 0
