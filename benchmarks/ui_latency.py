"""Time the app's interactive paths in Chromium: slider -> decoded image, stroke -> encoding, and the Latent
map's first view.

Three measurements in one run:

* **decode round trip**: the Decode page (``app.py``, ``/decode``, a shipped checkpoint) and a
  trivial Streamlit app with one slider and one 280 px image that depends on it are served
  side by side. In headless Chromium the first slider's thumb gets the keyboard focus and
  ``ArrowRight`` moves it one step; the time runs from the key press to the moment the
  displayed image has a new ``src`` and has loaded (both read with ``performance.now()`` in
  the page, through a MutationObserver). The two apps take turns, move by move, so both
  see the same load on a shared machine. After ``--warmup`` moves, ``--moves`` moves are
  timed for each app: p50, p90 and the ratio of the medians. Target: the Decode page within
  1.3x of the trivial app.
* **stroke round trip**: on the Encode page (``/encode``, the same checkpoint) a stroke is drawn on
  the canvas with the mouse; the time runs from the mouse-up to the moment the page shows a new μ
  (the μ ± σ bars' data, read through a MutationObserver). Each stroke is a short line in a cell of
  its own, so each one changes the drawing; the canvas is cleared every ``STROKES_PER_DRAWING``
  strokes (not timed). Also recorded: when the canvas sent the drawing (the page's last WebSocket
  message after the mouse-up), which splits the time into the canvas component's own part (ours,
  vae_app/canvas.py, sends at pointer-up; streamlit-drawable-canvas 0.13 waited a fixed 200 ms) and
  the app's part. Goal: <= 200 ms p50.
* **Latent map, first view on a fresh server**: a new server with the shipped checkpoints;
  from the click on "Latent map" to the map drawn (its legend, one entry per class), then the
  same again in that session. The shipped model carries its atlas, so nothing is computed.
  Target: <= 1 s. (The atlas computation itself is timed in ``benchmarks/atlas.py``.)

Usage::

    python benchmarks/ui_latency.py [--checkpoint checkpoints/mnist-conv-16.pt]
                                    [--moves 30] [--warmup 5] [--strokes 30] [--map-runs 3]
                                    [--skip-browser] [--skip-strokes] [--skip-map]

Results are printed as a table and written as JSON to ``benchmarks/results/ui_latency.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests.app_support import CHROMIUM, launch_chromium, streamlit_server, wait_for_app  # noqa: E402

TARGET_RATIO = 1.3
TARGET_FIRST_S = 1.0
TARGET_STROKE_MS = 200.0
STROKES_PER_DRAWING = 12
CANVAS = ".st-key-encode_canvas canvas >> nth=-1"  # vae_app/canvas.py: one canvas
BARS = ".st-key-encode_bars .js-plotly-plot"
IMAGE = ".st-key-decode_image img"  # both apps put their image in st.container(key="decode_image")
# Streamlit >= 1.5x draws a react-aria slider around an <input type="range">; older ones a BaseWeb [role=slider].
SLIDER = '[data-testid="stSlider"] input[type="range"], [data-testid="stSlider"] [role="slider"]'

TRIVIAL_APP = """
import numpy as np
import streamlit as st
from PIL import Image

st.title("One slider")  # tests.app_support.wait_for_app waits for a page title
value = st.slider("z0", min_value=-3.0, max_value=3.0, value=0.0, step=0.05, key="z0")
ramp = np.linspace(0.0, 1.0, 28)[None, :] * np.ones((28, 1))
pixels = (np.clip(ramp + value / 6, 0.0, 1.0) * 255).astype(np.uint8)
with st.container(key="decode_image"):
    st.image(Image.fromarray(pixels).resize((280, 280), Image.NEAREST), output_format="PNG")
"""

# Installed once per page: stamps the key press and the moment the image shows a new, loaded src.
ARM_JS = """(selector) => {
  const img = document.querySelector(selector);
  window.__lat = {t0: null, t1: null, t2: null, old: img ? img.src : null};
  if (window.__latHooked) return;
  window.__latHooked = true;
  document.addEventListener('keydown', () => {
    if (window.__lat.t0 === null) window.__lat.t0 = performance.now();
  }, true);
  const check = () => {
    const l = window.__lat;
    if (l.t0 === null || l.t1 !== null) return;
    const now = document.querySelector(selector);
    if (!now || now.src === l.old) return;
    l.t1 = performance.now();
    if (now.complete && now.naturalWidth > 0) { l.t2 = l.t1; return; }
    now.addEventListener('load', () => { l.t2 = performance.now(); }, {once: true});
  };
  new MutationObserver(check).observe(document.body,
    {subtree: true, childList: true, attributes: true, attributeFilter: ['src']});
}"""


# Added before the page loads: stamps the page's messages to the server and the first answer after a stroke's.
WS_SEND_JS = """
(() => {
  const send = WebSocket.prototype.send;
  WebSocket.prototype.send = function (...args) {
    if (!this.__stamped) {
      this.__stamped = true;
      this.addEventListener('message', () => {
        const s = window.__stroke;
        if (s && s.sent !== null && s.answer === null) s.answer = performance.now();
      });
    }
    const s = window.__stroke;
    if (s && s.up !== null && s.sent === null) s.sent = performance.now();
    return send.apply(this, args);
  };
})();
"""
# Armed before each stroke: stamps the mouse-up and the moment the bars show another mu.
ARM_STROKE_JS = """(bars) => {
  const read = () => {
    const el = document.querySelector(bars);
    return el && el._fullData && el._fullData.length ? JSON.stringify(Array.from(el._fullData[0].y)) : null;
  };
  const s = {old: read(), up: null, sent: null, answer: null, shown: null};
  window.__stroke = s;
  document.addEventListener('mouseup', () => { s.up = performance.now(); }, {capture: true, once: true});
  const observer = new MutationObserver(() => {
    if (s.up === null || s.shown !== null) return;
    const now = read();
    if (now !== null && now !== s.old) {
      s.shown = performance.now();
      observer.disconnect();
    }
  });
  observer.observe(document.body, {subtree: true, childList: true, attributes: true, characterData: true});
}"""


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def time_move(page) -> float:
    """Press ArrowRight on the page's first slider; return ms from the key press to the new image shown."""
    wait_for_app(page)
    page.evaluate(ARM_JS, IMAGE)
    page.locator(SLIDER).first.focus()
    page.keyboard.press("ArrowRight")
    page.wait_for_function("() => window.__lat.t2 !== null", timeout=60_000)
    return float(page.evaluate("() => window.__lat.t2 - window.__lat.t0"))


def open_app(page, url: str, path: str = "") -> None:
    """Load the app's root first (it registers st.navigation's pages), then ``path``; wait for the image."""
    page.goto(url)
    page.wait_for_selector(IMAGE if not path else "h1", timeout=120_000)
    if path:
        page.goto(f"{url}/{path}")
        page.wait_for_selector(IMAGE, timeout=120_000)
    wait_for_app(page, timeout_ms=120_000)
    page.wait_for_timeout(1000)


def browser_round_trip(checkpoint: Path, *, moves: int, warmup: int) -> dict:
    from playwright.sync_api import sync_playwright

    (REPO_ROOT / "test-artifacts").mkdir(exist_ok=True)  # streamlit_server writes its log there
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "checkpoints"
        folder.mkdir()
        (folder / checkpoint.name).symlink_to(checkpoint.resolve())
        trivial = Path(tmp) / "trivial_app.py"
        trivial.write_text(TRIVIAL_APP)
        results = {}
        with (
            streamlit_server(env={"VAE_CHECKPOINT_DIR": str(folder)}) as app_url,
            streamlit_server(script=trivial) as trivial_url,
            sync_playwright() as playwright,
        ):
            browser = launch_chromium(playwright)
            try:
                pages = {}
                for name, url, path in (("decode page", app_url, "decode"), ("trivial app", trivial_url, "")):
                    pages[name] = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
                    open_app(pages[name], url, path)
                # Interleave the two apps move by move (alternating which goes first), so both see the same
                # load from whatever else the shared machine is doing.
                times = {name: [] for name in pages}
                for i in range(warmup + moves):
                    for name in list(pages)[:: 1 if i % 2 else -1]:
                        shown = time_move(pages[name])
                        if i >= warmup:
                            times[name].append(shown)
                for name, values in times.items():
                    results[name] = {
                        "p50_ms": percentile(values, 50),
                        "p90_ms": percentile(values, 90),
                        "mean_ms": float(np.mean(values)),
                        "moves": len(values),
                        "times_ms": values,
                    }
            finally:
                browser.close()
    results["ratio_p50"] = results["decode page"]["p50_ms"] / results["trivial app"]["p50_ms"]
    results["ratio_p90"] = results["decode page"]["p90_ms"] / results["trivial app"]["p90_ms"]
    return results


def draw_stroke(page, points: list[tuple[float, float]]) -> None:
    """Draw one stroke through ``points`` (canvas pixels) with the mouse."""
    box = page.locator(CANVAS).bounding_box()
    page.mouse.move(box["x"] + points[0][0], box["y"] + points[0][1])
    page.mouse.down()
    for x, y in points[1:]:
        page.mouse.move(box["x"] + x, box["y"] + y, steps=6)
    page.mouse.up()


def stroke_points(i: int) -> list[tuple[float, float]]:
    """Return the ``i``-th stroke of a drawing: a short slanted line in a cell of a 4 x 3 grid of its own."""
    cell = i % STROKES_PER_DRAWING
    x, y = 35 + 70 * (cell % 4), 50 + 90 * (cell // 4)
    return [(x - 22, y - 25), (x + 22, y + 25)]


def time_stroke(page, i: int) -> dict[str, float | None]:
    """Draw stroke ``i``; return ms from its mouse-up to: the canvas's message ("sent"), the server's first
    answer ("answer") and a new mu shown ("shown")."""
    if i and i % STROKES_PER_DRAWING == 0:  # a fresh drawing: the canvas's Clear button (not timed)
        page.locator(CANVAS).hover()
        page.locator(".st-key-encode_canvas button[aria-label='Reset canvas & history']").click()
        page.get_by_text("Draw on the canvas", exact=False).first.wait_for(timeout=60_000)
        wait_for_app(page)
        page.wait_for_timeout(500)
    page.evaluate(ARM_STROKE_JS, BARS)
    draw_stroke(page, stroke_points(i))
    page.wait_for_function("() => window.__stroke.shown !== null", timeout=60_000)
    stamps = page.evaluate("() => window.__stroke")
    wait_for_app(page)
    page.wait_for_timeout(400)  # a person pauses between strokes
    return {k: None if stamps[k] is None else stamps[k] - stamps["up"] for k in ("sent", "answer", "shown")}


def stroke_round_trip(checkpoint: Path, *, strokes: int, warmup: int) -> dict:
    """Time strokes on the Encode page's canvas: mouse-up -> the new mu shown (see the module docstring)."""
    from playwright.sync_api import sync_playwright

    (REPO_ROOT / "test-artifacts").mkdir(exist_ok=True)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "checkpoints"
        folder.mkdir()
        (folder / checkpoint.name).symlink_to(checkpoint.resolve())
        with (
            streamlit_server(env={"VAE_CHECKPOINT_DIR": str(folder)}) as url,
            sync_playwright() as playwright,
        ):
            browser = launch_chromium(playwright)
            try:
                context = browser.new_context(viewport={"width": 1400, "height": 1000})
                context.add_init_script(WS_SEND_JS)
                page = context.new_page()
                page.goto(url)
                page.wait_for_selector("h1", timeout=120_000)
                page.goto(f"{url}/encode")
                page.wait_for_selector(CANVAS, timeout=120_000)
                wait_for_app(page, timeout_ms=120_000)
                page.wait_for_timeout(1000)
                times = []
                for i in range(warmup + strokes):
                    stamps = time_stroke(page, i)
                    if i >= warmup:
                        times.append(stamps)
            finally:
                browser.close()
    shown = [t["shown"] for t in times]
    split = all(t["sent"] is not None and t["answer"] is not None for t in times)
    return {
        "p50_ms": percentile(shown, 50),
        "p90_ms": percentile(shown, 90),
        "mean_ms": float(np.mean(shown)),
        "strokes": len(shown),
        "times_ms": shown,
        # mouse-up -> the canvas sends the drawing (ours sends at pointer-up; streamlit-drawable-canvas 0.13 waited 200 ms)
        "canvas_send_p50_ms": percentile([t["sent"] for t in times], 50) if split else None,
        # the canvas's message -> the server's first answer: the fragment's rerun starts sending
        "server_p50_ms": percentile([t["answer"] - t["sent"] for t in times], 50) if split else None,
        # the server's first answer -> the new mu on screen: the rest of the rerun, the transfer and the drawing
        "page_p50_ms": percentile([t["shown"] - t["answer"] for t in times], 50) if split else None,
        "load_average_1min": [load_before, os.getloadavg()[0]],  # before and after: a shared machine varies
    }


def first_map_view(*, checkpoint_dir: Path, runs: int) -> dict:
    """Time, on a freshly started server each run, the click on "Latent map" until its map is drawn.

    The clock starts at the click in the navigation (the Home page is on screen, its own map and
    loss chart drawn, so Plotly's script is already in the page) and stops
    when Plotly has drawn the map's legend, one entry per class: the shipped model's stored atlas
    means nothing is computed. A second view in the same session is timed too.
    """
    from playwright.sync_api import sync_playwright

    # The map's own legend (its element carries the chart's key): Home draws a map too.
    drawn = "() => document.querySelectorAll('.st-key-latent_map_chart .legend .traces').length >= 10"
    # A person clicks once Home is on screen: its own map and loss chart drawn, the page settled.
    home_drawn = (
        "() => document.querySelectorAll('.st-key-home_map .legend .traces').length >= 10"
        " && document.querySelector('.st-key-home_history .main-svg') !== null"
    )

    def show_home(page) -> None:
        wait_for_app(page, timeout_ms=120_000)
        page.wait_for_function(home_drawn, timeout=120_000)
        page.wait_for_timeout(1000)

    firsts, repeats = [], []
    with tempfile.TemporaryDirectory() as empty, sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            for _ in range(runs):
                env = {"VAE_CHECKPOINT_DIR": str(checkpoint_dir), "VAE_DATA_DIR": empty}
                with streamlit_server(env=env) as url:
                    page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
                    page.goto(url)
                    show_home(page)
                    for store in (firsts, repeats):
                        link = page.locator('[data-testid="stSidebarNav"] a', has_text="Latent map")
                        start = time.perf_counter()
                        link.click()
                        page.wait_for_function(drawn, timeout=120_000)
                        store.append(time.perf_counter() - start)
                        page.locator('[data-testid="stSidebarNav"] a', has_text="Home").click()
                        show_home(page)
                    page.context.close()
        finally:
            browser.close()
    return {"first_s": firsts, "repeat_s": repeats, "first_median_s": float(np.median(firsts))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, default=REPO_ROOT / "checkpoints" / "mnist-conv-16.pt")
    parser.add_argument("--moves", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--strokes", type=int, default=30, help="timed strokes on the Encode canvas")
    parser.add_argument("--map-runs", type=int, default=3, help="fresh servers for the first map view")
    parser.add_argument("--skip-browser", action="store_true")
    parser.add_argument("--skip-strokes", action="store_true")
    parser.add_argument("--skip-map", action="store_true")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results" / "ui_latency.json")
    args = parser.parse_args()

    if not args.checkpoint.is_file():
        print(
            f"missing checkpoint {args.checkpoint}: run `make checkpoints` or pass --checkpoint",
            file=sys.stderr,
        )
        return 2
    report: dict = {
        "checkpoint": args.checkpoint.name,
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
    }
    rows = []
    if args.skip_browser:
        print("decode round trip: skipped (--skip-browser)")
    elif not CHROMIUM.exists():
        print(f"decode round trip: skipped, no Chromium at {CHROMIUM}")
    else:
        trip = browser_round_trip(args.checkpoint, moves=args.moves, warmup=args.warmup)
        report["decode_round_trip"] = trip
        for name in ("decode page", "trivial app"):
            rows.append(
                (
                    f"slider -> image, {name}",
                    f"p50 {trip[name]['p50_ms']:.0f} ms",
                    f"p90 {trip[name]['p90_ms']:.0f} ms",
                    "",
                )
            )
        verdict = "ok" if trip["ratio_p50"] <= TARGET_RATIO else "MISSED"
        rows.append(
            (
                "decode page / trivial app",
                f"p50 {trip['ratio_p50']:.2f}x",
                f"p90 {trip['ratio_p90']:.2f}x",
                f"target <= {TARGET_RATIO}x (p50): {verdict}",
            )
        )
    if args.skip_strokes or not CHROMIUM.exists():
        print("stroke round trip: skipped")
    else:
        trip = stroke_round_trip(args.checkpoint, strokes=args.strokes, warmup=args.warmup)
        report["stroke_round_trip"] = trip
        verdict = "ok" if trip["p50_ms"] <= TARGET_STROKE_MS else "MISSED"
        split = ""
        if trip["canvas_send_p50_ms"] is not None:
            split = (
                f"; p50 of the parts: canvas waits {trip['canvas_send_p50_ms']:.0f} ms, server answers in "
                f"{trip['server_p50_ms']:.0f} ms, page shows it {trip['page_p50_ms']:.0f} ms later"
            )
        rows.append(
            (
                "stroke -> encoding, encode page",
                f"p50 {trip['p50_ms']:.0f} ms",
                f"p90 {trip['p90_ms']:.0f} ms",
                f"goal <= {TARGET_STROKE_MS:.0f} ms (p50): {verdict}{split}",
            )
        )
    if args.skip_map or not CHROMIUM.exists():
        print("latent map first view: skipped")
    else:
        view = first_map_view(checkpoint_dir=args.checkpoint.parent, runs=args.map_runs)
        report["latent_map_first_view"] = view
        verdict = "ok" if view["first_median_s"] <= TARGET_FIRST_S else "MISSED"
        rows.append(
            (
                "Latent map, fresh server: click -> map drawn",
                f"median {view['first_median_s']:.2f} s",
                f"runs {', '.join(f'{t:.2f}' for t in view['first_s'])} s; "
                f"again {np.median(view['repeat_s']):.2f} s",
                f"target <= {TARGET_FIRST_S:.0f} s: {verdict}",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(4)] if rows else []
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
