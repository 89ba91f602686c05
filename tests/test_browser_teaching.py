"""The reparameterisation picture on Home in headless Chromium, on a shipped checkpoint."""

import pytest

from tests.app_support import ROOT, wait_for_app

pytestmark = pytest.mark.browser

FIG = ".st-key-home_reparam .js-plotly-plot"
SAMPLES = "z = μ + σ ⊙ ε"


def drawn_codes(page) -> list[float]:
    """Return the x then y coordinates of the drawn codes in the close-up panel."""
    return page.evaluate(
        f"""() => {{
            const t = document.querySelector('{FIG}')._fullData.filter(t => t.name === '{SAMPLES}').pop();
            return Array.from(t.x).concat(Array.from(t.y));
        }}"""
    )


def test_draw_new_eps_moves_the_codes_and_their_images(browser_page, app_url, artifacts_dir):
    if not (ROOT / "checkpoints" / "mnist-conv-16.pt").is_file():
        pytest.skip("needs the shipped checkpoints/mnist-conv-16.pt (make checkpoints)")
    page = browser_page
    page.goto(app_url)
    page.wait_for_selector(FIG, timeout=90_000)
    wait_for_app(page)
    before = drawn_codes(page)
    assert len(before) == 2 * 8
    images = page.get_by_text("numbered as on the plot").locator("xpath=preceding::img[1]")
    src = images.get_attribute("src")
    page.get_by_role("button", name="Draw new ε").click()
    page.wait_for_function(
        "(old) => { const f = document.querySelector('" + FIG + "'); "
        "const t = f && f._fullData.filter(t => t.name === '" + SAMPLES + "').pop(); "
        "return t && Array.from(t.x).concat(Array.from(t.y)).join() !== old.join(); }",
        arg=before,
        timeout=60_000,
    )
    wait_for_app(page)
    assert drawn_codes(page) != before
    assert (
        page.get_by_text("numbered as on the plot").locator("xpath=preceding::img[1]").get_attribute("src")
        != src
    )
    page.locator(".st-key-home_reparam").scroll_into_view_if_needed()
    page.screenshot(path=artifacts_dir / "home-reparameterisation.png")
