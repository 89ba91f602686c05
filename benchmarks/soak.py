"""Soak: 200 slider moves on Decode and 50 uploads on Encode in a row; the server's memory before and after.

Starts the app on a free loopback port with the shipped checkpoints, drives it with Debian's
Chromium through Playwright, and reads the server process's resident memory (VmRSS) after a
warm-up and after the soak. A leak per interaction (a figure, an image or a model kept per
rerun) would show as growth proportional to the number of moves and uploads.

    .venv/bin/python benchmarks/soak.py [--moves 200] [--uploads 50]

Results go to ``benchmarks/results/soak.json``.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from PIL import Image, ImageDraw  # noqa: E402
from ui_latency import ARM_JS, IMAGE, SLIDER, open_app  # noqa: E402

from tests.app_support import CHROMIUM, SERVER_PIDS, launch_chromium, streamlit_server, wait_for_app  # noqa: E402

OUT = REPO_ROOT / "benchmarks" / "results" / "soak.json"
WARMUP_MOVES = 10
WARMUP_UPLOADS = 3


def move(page, key: str) -> float:
    """Press ``key`` on the first slider; return ms from the key press until the new image shows."""
    wait_for_app(page)
    page.evaluate(ARM_JS, IMAGE)
    page.locator(SLIDER).first.focus()
    page.keyboard.press(key)
    page.wait_for_function("() => window.__lat.t2 !== null", timeout=60_000)
    return float(page.evaluate("() => window.__lat.t2 - window.__lat.t0"))


def time_moves(page, *, moves: int) -> list[float]:
    """Make ``moves`` slider moves, turning round every 40 so the slider never pins at its end."""
    return [move(page, "ArrowRight" if (i // 40) % 2 == 0 else "ArrowLeft") for i in range(moves)]


def rss_mb(pid: int) -> float:
    """Return a process's resident memory in MB, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def digit_png(i: int) -> bytes:
    """Return a different hand-drawn-looking digit stroke on white for each ``i``, as PNG bytes."""
    img = Image.new("RGB", (160 + i % 7 * 10, 160), "white")
    draw = ImageDraw.Draw(img)
    x = 30 + (i * 13) % 50
    draw.line([(x, 30), (x + 60, 30), (x + 20 + i % 30, 140)], fill="black", width=12 + i % 6)
    out = io.BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()


def upload(page, i: int) -> None:
    """Upload image ``i`` on the Encode page and wait until the page has scored it."""
    page.locator('[data-testid="stFileUploader"] input[type="file"]').first.set_input_files(
        files=[{"name": f"digit-{i}.png", "mimeType": "image/png", "buffer": digit_png(i)}]
    )
    page.wait_for_function(f"() => document.body.innerText.includes('digit-{i}.png')", timeout=120_000)
    wait_for_app(page, timeout_ms=120_000)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--moves", type=int, default=200)
    parser.add_argument("--uploads", type=int, default=50)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    if not CHROMIUM.exists():
        print(f"soak: needs Chromium at {CHROMIUM} (apt-get install chromium)", file=sys.stderr)
        return 2
    from playwright.sync_api import sync_playwright

    (REPO_ROOT / "test-artifacts").mkdir(exist_ok=True)
    with streamlit_server() as url, sync_playwright() as playwright:
        pid = SERVER_PIDS[url]
        browser = launch_chromium(playwright)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        open_app(page, url, "decode")
        time_moves(page, moves=WARMUP_MOVES)
        page.goto(f"{url}/encode")
        wait_for_app(page, timeout_ms=120_000)
        # The page opens on its canvas: choose the upload.
        page.get_by_test_id("stMain").get_by_text("Upload", exact=True).click()
        for i in range(WARMUP_UPLOADS):
            upload(page, 1000 + i)
        before = rss_mb(pid)
        print(f"server memory after warm-up: {before:.0f} MB", flush=True)

        started = time.perf_counter()
        open_app(page, url, "decode")
        page.wait_for_selector(IMAGE, timeout=120_000)
        move_ms = time_moves(page, moves=args.moves)
        after_moves = rss_mb(pid)
        print(f"after {args.moves} slider moves: {after_moves:.0f} MB", flush=True)
        page.goto(f"{url}/encode")
        wait_for_app(page, timeout_ms=120_000)
        # The page opens on its canvas: choose the upload.
        page.get_by_test_id("stMain").get_by_text("Upload", exact=True).click()
        for i in range(args.uploads):
            upload(page, i)
        after = rss_mb(pid)
        seconds = time.perf_counter() - started
        browser.close()

    growth = after - before
    print(f"after {args.uploads} uploads: {after:.0f} MB")
    print(
        f"growth: {growth:+.1f} MB over {args.moves} moves and {args.uploads} uploads ({seconds:.0f} s); "
        f"slider p50 {sorted(move_ms)[len(move_ms) // 2]:.0f} ms"
        if move_ms
        else ""
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "benchmark": "soak",
                "moves": args.moves,
                "uploads": args.uploads,
                "rss_before_mb": before,
                "rss_after_moves_mb": after_moves,
                "rss_after_mb": after,
                "growth_mb": growth,
                "seconds": seconds,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
