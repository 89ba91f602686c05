"""Home in a real browser, and a deep link to a page on a freshly started server."""

import shutil
from pathlib import Path

import pytest

from tests.app_support import ROOT, streamlit_server, wait_for_app

pytestmark = pytest.mark.browser


def test_home_shows_samples_reconstructions_and_the_walkthrough(
    browser_page, app_url: str, artifacts_dir: Path
):
    page = browser_page
    page.goto(app_url)
    wait_for_app(page, timeout_ms=120_000)
    main = page.locator('[data-testid="stMain"]')
    assert "VAE latent-space explorer" in main.locator("h1").first.inner_text()
    text = main.inner_text()
    assert "Samples from the prior" in text and "Reconstructions" in text and "reparameterization" in text
    assert "Traceback" not in text
    assert main.locator("img").count() >= 3
    assert "Checkpoint" in page.locator('[data-testid="stSidebar"]').inner_text()
    shot = artifacts_dir / "home.png"
    page.screenshot(path=str(shot), full_page=True)
    (ROOT / "docs" / "screenshots").mkdir(parents=True, exist_ok=True)
    shutil.copy(shot, ROOT / "docs" / "screenshots" / "home.png")


def test_a_deep_link_on_a_fresh_server_opens_the_page_inside_the_app(chromium):
    # Before any session has run app.py, Streamlit would run pages/train.py alone (no sidebar picker).
    with streamlit_server() as url:
        context = chromium.new_context(viewport={"width": 1400, "height": 1000})
        page = context.new_page()
        page.goto(f"{url}/train")
        wait_for_app(page, timeout_ms=120_000)
        assert page.locator('[data-testid="stMain"] h1').first.inner_text() == "Train a VAE"
        assert page.url.endswith("/train")
        assert "Checkpoint" in page.locator('[data-testid="stSidebar"]').inner_text()
        context.close()
