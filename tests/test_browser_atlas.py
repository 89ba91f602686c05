"""The shared atlas in a real browser on a freshly started server: navigation, the first map, nothing computed."""

from pathlib import Path

import pytest

from tests.app_support import ROOT, streamlit_server, wait_for_app
from vae_core.checkpoints import load_checkpoint

pytestmark = pytest.mark.browser

TITLES = [
    "Home",
    "Train",
    "Latent map",
    "Decode",
    "Interpolate",
    "Attribute vectors",
    "Generate by class",
    "Encode",
    "Latent health",
    "Traversals",
    "Training timeline",
    "Evaluate",
    "Compare",
    "Export",
]
NAV = '[data-testid="stSidebarNav"] a'
LEGEND = '[data-testid="stPlotlyChart"] .legend .traces'


def test_a_fresh_server_shows_every_page_then_the_stored_map_without_computing(chromium, tmp_path: Path):
    shipped = ROOT / "checkpoints" / "mnist-conv-16.pt"
    if not shipped.is_file():
        pytest.skip("needs the shipped checkpoints/mnist-conv-16.pt (make checkpoints)")
    loaded = load_checkpoint(shipped)
    assert loaded.atlas is not None, "the shipped model must carry its atlas (make checkpoints)"
    empty = tmp_path / "no-data"
    empty.mkdir()
    with streamlit_server(env={"VAE_DATA_DIR": str(empty)}) as url:
        context = chromium.new_context(viewport={"width": 1400, "height": 1000})
        page = context.new_page()
        page.goto(url)
        # The navigation's first paint already holds every title (expanded: none hidden behind "View more"): no raw file names flash by.
        page.wait_for_selector(NAV, timeout=120_000)
        # Each link reads "<icon ligature>\n\n<title>": the title is the last line.
        first_paint = [text.strip().split("\n")[-1] for text in page.locator(NAV).all_inner_texts()]
        assert first_paint == TITLES
        wait_for_app(page, timeout_ms=120_000)
        page.locator(NAV, has_text="Latent map").click()
        page.wait_for_function(f"() => document.querySelectorAll('{LEGEND}').length >= 10", timeout=60_000)
        wait_for_app(page)
        main = page.locator('[data-testid="stMain"]')
        text = main.inner_text()
        # The stored t-SNE layout of all bundled points, with nothing computed on the way.
        assert "t-SNE (neighbours kept)" in text
        assert f"{len(loaded.atlas):,} codes of {len(loaded.atlas):,} test images bundled" in text
        assert "Mapping the latent space" not in text and "Traceback" not in text
        context.close()
