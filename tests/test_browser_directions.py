"""The Attribute vectors page in headless Chromium, on the shipped checkpoints: the slider moves the image."""

import io

import numpy as np
import pytest
from PIL import Image

from tests.app_support import ROOT, wait_for_app

pytestmark = pytest.mark.browser

MOVED = ".st-key-directions_moved img"
T_SLIDER = (
    '.st-key-directions_t input[type="range"], .st-key-directions_t [role="slider"], '
    '[data-testid="stSlider"]:has-text("How far along the direction") [role="slider"], '
    '[data-testid="stSlider"]:has-text("How far along the direction") input[type="range"]'
)


def pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=np.float32)


def test_moving_the_attribute_slider_changes_the_decoded_image(browser_page, app_url, artifacts_dir):
    if not (ROOT / "checkpoints" / "mnist-conv-16.pt").is_file():
        pytest.skip("needs the shipped checkpoints/mnist-conv-16.pt (make checkpoints)")
    page = browser_page
    page.goto(f"{app_url}/directions")
    page.wait_for_selector(MOVED, timeout=90_000)
    wait_for_app(page)
    assert page.get_by_text("Separation (AUC)").count() >= 1
    image = page.locator(MOVED)
    before_src, before = image.get_attribute("src"), pixels(image.screenshot())
    page.locator(T_SLIDER).first.focus()
    for _ in range(15):  # t from 0 to 1.5 in steps of 0.1: from class 0 towards class 1
        page.keyboard.press("ArrowRight")
    page.wait_for_function(
        "(old) => { const img = document.querySelector('.st-key-directions_moved img'); "
        "return img && img.src !== old; }",
        arg=before_src,
        timeout=60_000,
    )
    page.wait_for_function(
        """() => [...document.querySelectorAll('[data-testid="stSliderThumbValue"]')]
                 .some(e => e.innerText === '1.50')""",
        timeout=60_000,
    )
    wait_for_app(page)
    after = pixels(image.screenshot())
    assert after.shape == before.shape and after.shape[0] >= 200  # shown large, not a 28 px thumbnail
    assert np.abs(after - before).mean() > 5, "the decoded image did not change"
    page.screenshot(path=artifacts_dir / "directions.png", full_page=True)
