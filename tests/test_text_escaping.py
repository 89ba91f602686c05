"""Text from files stays text: a checkpoint whose every string holds Markdown and HTML, on every page.

Issue 12: a checkpoint's dataset name, class names, folder paths and uploaded file names rendered links,
remote images (beacons), LaTeX and colours; backticks in a file name broke out of its code span.
"""

from __future__ import annotations

import io
import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from google.protobuf.json_format import MessageToDict
from PIL import Image

from tests.app_support import (
    PAGES,
    app_test,
    assert_no_exception,
    select_model,
    streamlit_server,
    wait_for_app,
)
from tests.helpers import random_splits, tiny_model
from vae_app.escape import WORD_JOINER, code, md, plot_text
from vae_core import bundle
from vae_core.config import ModelConfig, TrainConfig
from vae_core.datasets import DatasetSplits
from vae_core.timeline import TimelineRecorder
from vae_core.training import fit

# Every construct that must not render: bold, a link, a remote image, math, HTML, a colour, code, an
# emoji code, a bare autolink, a Plotly template; then backslashes and an entity.
HOSTILE = (
    "**bold** [link](http://x.test/a) ![img](http://x.test/b.png) $x^2$ <b>html</b> :red[c] `tick` "
    ":smile: www.x.test me@x.test %{y} \\*esc &amp; # 1. - +"
)
FILE_NAME = HOSTILE.replace("/", "|")  # a file name cannot hold "/"
RAW_MARKERS = (  # pieces of the hostile text that only ever appear live if it was not escaped
    "**bold**",
    "[link]",
    "![img",
    "http://",  # a bare URL, split by a word joiner when escaped
    "www.x",
    "@x.test",
    "$x^2$",
    "<b>html",
    ":red[c]",
    "`tick`",
    ":smile:",
    "&amp;",
)
SHOWN = "**bold** [link](http"  # the start of every hostile string, as it must read on the page
PLAIN_KINDS = {"selectbox", "multiselect", "select_slider", "text_input", "text_area", "code", "plotly_chart"}
_ESCAPED = re.compile(r"\\([!-/:-@\[-`{-~])")


def hostile_checkpoint(folder: Path, tag: str, *, seed: int) -> Path:
    """Save a tiny trained model whose dataset, preprocessing, class names, extra values, atlas layout and file
    name all hold ``HOSTILE``; return its path."""
    base = random_splits(n_train=64, n_test=48, seed=seed)
    data = DatasetSplits(
        f"{tag} {HOSTILE}",
        base.train_x,
        base.train_y,
        base.test_x,
        base.test_y,
        (f"{HOSTILE} 0", f"{HOSTILE} 1"),
        HOSTILE,
    )
    model = tiny_model(ModelConfig(arch="mlp", latent_dim=3, hidden=(16,)), seed=seed)
    train = TrainConfig(dataset="random", epochs=2, batch_size=32, device="cpu")
    recorder = TimelineRecorder(data.test_x, data.test_y, latent_dim=3)
    history = fit(model, data, train, on_epoch=recorder).history
    path = bundle.save_trained(
        folder / f"{tag} {FILE_NAME}.pt",
        model=model,
        data=data,
        train_config=train,
        history=history,
        metrics=bundle.test_metrics(model, data.test_x, nll_k=2),
        sample_size=48,
        extra={"description": HOSTILE, "note": HOSTILE},
        timeline=recorder.timeline(),
    )
    payload = torch.load(path, weights_only=True)
    payload["atlas"]["layout"] = HOSTILE  # a short string the format accepts: the map's name
    torch.save(payload, path)
    return path


@pytest.fixture(scope="module")
def hostile_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint folder with two hostile models and an unreadable file with a hostile name."""
    folder = tmp_path_factory.mktemp("hostile")
    hostile_checkpoint(folder, "A", seed=1)
    hostile_checkpoint(folder, "B", seed=2)
    (folder / f"C {FILE_NAME}.pt").write_bytes(b"not a checkpoint " + HOSTILE.encode())
    return folder


@pytest.fixture
def hostile_env(hostile_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    empty = tmp_path / "no-data"
    empty.mkdir()
    monkeypatch.setenv("VAE_CHECKPOINT_DIR", str(hostile_folder))
    monkeypatch.setenv("VAE_DATA_DIR", str(empty))
    return hostile_folder


def shown_text(source: str) -> tuple[str, str]:
    """Read Markdown ``source`` as CommonMark would for inline text: (what shows, what is live Markdown).

    Backslash escapes show their character and are not live; code spans (a run of n backticks up to the
    next run of exactly n) show their content and are not live either.
    """
    shown, live, i = [], [], 0
    while i < len(source):
        ch = source[i]
        if ch == "\\" and i + 1 < len(source) and _ESCAPED.match(source, i):
            shown.append(source[i + 1])
            i += 2
            continue
        if ch == "`":
            run = len(source[i:]) - len(source[i:].lstrip("`"))
            close = re.compile(rf"(?<!`)`{{{run}}}(?!`)").search(source, i + run)
            if close:
                content = source[i + run : close.start()]
                if content.startswith(" ") and content.endswith(" ") and content.strip():
                    content = content[1:-1]
                shown.append(content)
                i = close.end()
                continue
        shown.append(ch)
        live.append(ch)
        i += 1
    return "".join(shown), "".join(live)


def markdown_strings(at) -> list[tuple[str, str]]:
    """Return (where, text) for every string the page sends that Streamlit renders as Markdown."""
    found: list[tuple[str, str]] = []

    def strings(value, path: str):
        if isinstance(value, str):
            yield path, value
        elif isinstance(value, dict):
            for key, item in value.items():
                yield from strings(item, f"{path}.{key}")
        elif isinstance(value, list):
            for i, item in enumerate(value):
                yield from strings(item, f"{path}[{i}]")

    def walk(node) -> None:
        proto = getattr(node, "proto", None)
        kind = getattr(node, "type", type(node).__name__)
        if proto is not None:
            for path, value in strings(MessageToDict(proto), kind):
                leaf = path.rsplit(".", 1)[-1]
                if kind in PLAIN_KINDS and not (leaf.startswith("label") or leaf.startswith("help")):
                    continue  # option labels, typed text, code: shown as plain text
                found.append((path, value))
        children = getattr(node, "children", None)
        for child in children.values() if isinstance(children, dict) else ():
            walk(child)

    walk(at._tree)
    for i, table in enumerate(at.table):  # st.table renders Markdown in its cells and headers
        frame = table.value
        found += [(f"table[{i}].column", str(c)) for c in frame.columns]
        found += [(f"table[{i}].cell", str(v)) for v in frame.to_numpy().ravel()]
    return found


def plotly_strings(at) -> list[str]:
    found: list[str] = []

    def strings(value):
        if isinstance(value, str):
            yield value
        elif isinstance(value, dict):
            for item in value.values():
                yield from strings(item)
        elif isinstance(value, list):
            for item in value:
                yield from strings(item)

    for chart in at.get("plotly_chart"):
        found += list(strings(json.loads(chart.proto.spec)))
    return found


def assert_shows_text_literally(at, *, expect_shown: bool = True) -> None:
    """Fail on any hostile construct left live in the page's Markdown or Plotly text."""
    assert_no_exception(at)
    strings = markdown_strings(at)
    shown_any = False
    for where, source in strings:
        shown, live = shown_text(source)
        leaks = [m for m in RAW_MARKERS if m in live]
        assert not leaks, f"{where} renders {leaks} as Markdown: {source!r}"
        shown_any = shown_any or SHOWN in shown
    assert shown_any or not expect_shown, "the hostile text is not shown anywhere on the page"
    for text in plotly_strings(at):
        if "html" in text:  # a class name, a layout name
            assert "<b>html" not in text and "%{y}" not in text, text
            assert "&lt;b&gt;html&lt;/b&gt;" in text and "&#37;{y}" in text, text


def test_the_helpers_keep_text_literal():
    shown, live = shown_text(md(HOSTILE))
    assert shown.replace(WORD_JOINER, "") == HOSTILE  # the same characters, and invisible word joiners
    assert not re.search(r"[\\`*_\[\]<>!&~$:]", live)  # nothing that starts Markdown is left live
    # Streamlit's frontend finds bare URLs, e-mails and emoji codes in the text after escapes are undone
    # (mdast-util-gfm-autolink-literal, remark-emoji): their patterns, as in its bundle, must not match.
    for text in [HOSTILE, "see https://x.test, WWW.x.test or me@x.test :+1: :-1: :tada:"]:
        shown, _ = shown_text(md(text))
        assert not re.search(r"(https?://|www(?=\.))([-.\w]+)", shown, re.IGNORECASE), shown
        assert not re.search(r"([-.\w+]+)@([-\w]+(?:\.[-\w]+)+)", shown), shown
        assert not re.search(r":\+1:|:-1:|:[\w-]+:", shown), shown
    assert md("C:\\data, x: y") == "C\\:\\\\data, x\\: y"  # no joiner where nothing could link
    assert md("line one\n# two") == "line one # two"  # a heading can start only at the start
    assert md("# one") == "\\# one"
    assert md("2. x") == "2\\. x" and md(" - x") == " \\- x" and md("mnist-conv-16") == "mnist-conv-16"
    for text in [FILE_NAME, "``", "`a`", "a ``` b", " spaced "]:
        shown, live = shown_text(code(text))
        assert shown == text and live == "", (text, code(text))
    assert code("x :material/home: y") == md("x :material/home: y")  # Streamlit rewrites that even in code
    assert plot_text("<a href='x'>%{y}</a> & $1$") == "&lt;a href='x'&gt;&#37;{y}&lt;/a&gt; &amp; &#36;1&#36;"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: Path(p).stem)
def test_every_page_shows_a_hostile_checkpoint_as_text(hostile_env: Path, page: str):
    at = app_test()  # the home page draws the sidebar: the picker, the skipped file, the model summary
    assert_shows_text_literally(at)
    skipped = [w.value for w in at.sidebar.warning]
    assert any(code(f"C {FILE_NAME}.pt") in w for w in skipped), skipped
    at.switch_page(page)
    at.run()
    select_model(at, next(hostile_env.glob("A *.pt")))
    assert_shows_text_literally(at, expect_shown=Path(page).stem not in ("decode", "health"))


def _png(name: str) -> tuple[str, bytes, str]:
    buffer = io.BytesIO()
    Image.new("L", (40, 40), 255).save(buffer, format="PNG")
    return (name, buffer.getvalue(), "image/png")


@pytest.mark.parametrize("broken", [False, True], ids=["image", "broken image"])
def test_uploaded_image_names_are_text(hostile_env: Path, broken: bool):
    name, content, mime = _png(f"{FILE_NAME}.png")
    at = app_test("vae_app/views/encode.py")
    select_model(at, next(hostile_env.glob("A *.pt")))
    at.radio(key="encode_source").set_value("upload").run()
    at.file_uploader(key="encode_upload").set_value((name, b"\x89PNG broken" if broken else content, mime))
    at.run()
    assert_shows_text_literally(at)
    at = app_test("vae_app/views/interpolate.py")
    select_model(at, next(hostile_env.glob("A *.pt")))
    at.radio(key="interp_a_source").set_value("upload").run()
    at.file_uploader(key="interp_a_upload").set_value((name, b"\x89PNG broken" if broken else content, mime))
    at.run()
    assert_shows_text_literally(at)


def test_an_uploaded_checkpoints_name_is_text(hostile_env: Path):
    at = app_test()
    bad = (f"{FILE_NAME}.pt", b"not a checkpoint", "application/octet-stream")
    at.file_uploader(key="app_checkpoint_upload").set_value(bad).run()
    assert_shows_text_literally(at)
    assert any("was not loaded" in e.value for e in at.sidebar.error)


def test_a_failed_run_of_a_hostile_model_reports_its_dataset_as_text(hostile_env: Path, tmp_path: Path):
    # Continue training model A: its dataset name is no dataset, so the run fails and says so.
    folder = tmp_path / "own"
    shutil.copytree(hostile_env, folder)
    at = app_test("vae_app/views/train.py")
    select_model(at, next(folder.glob("A *.pt")))
    at.checkbox(key="train_resume").check()
    at.number_input(key="train_epochs").set_value(1)
    next(b for b in at.button if b.label == "Start training").click()
    at.run()
    run = at.session_state["train_run"]
    if run is not None:
        assert run.join(60)
        at.run()
    assert_shows_text_literally(at)
    assert at.error, "the failed run must say why"


@pytest.mark.browser
def test_no_link_image_math_or_html_reaches_the_browser(chromium, hostile_folder: Path, tmp_path: Path):
    empty = tmp_path / "no-data"
    empty.mkdir()
    env = {"VAE_CHECKPOINT_DIR": str(hostile_folder), "VAE_DATA_DIR": str(empty)}
    with streamlit_server(env=env) as url:
        context = chromium.new_context(viewport={"width": 1400, "height": 1200})
        page = context.new_page()
        requests: list[str] = []
        page.on("request", lambda request: requests.append(request.url))
        page.goto(url)
        wait_for_app(page, timeout_ms=120_000)
        for title in ("Home", "Latent map", "Training timeline", "Compare", "Export"):
            page.locator('[data-testid="stSidebarNav"] a', has_text=title).click()
            page.wait_for_timeout(500)
            wait_for_app(page, timeout_ms=120_000)
            page.wait_for_timeout(1500)  # Plotly draws its legends after the script ends
            leaks = page.evaluate(
                """() => ({
                    links: [...document.querySelectorAll('a')].map(a => a.href).filter(h => h.includes('x.test')),
                    images: [...document.querySelectorAll('img, image')]
                        .map(i => i.getAttribute('src') || i.getAttribute('href') || '')
                        .filter(s => s.includes('x.test')),
                    bold: [...document.querySelectorAll('b, strong')].map(b => b.textContent)
                        .filter(t => t === 'html' || t === 'bold'),
                    math: document.querySelectorAll('.katex').length,
                    coloured: [...document.querySelectorAll('[data-testid="stMain"] span, section span')]
                        .filter(s => s.textContent === 'c' && s.getAttribute('style')).length,
                    text: document.body.innerText,
                    svg: [...document.querySelectorAll('.legendtext')].map(t => t.textContent),
                })"""
            )
            where = f"the {title} page"
            assert leaks["links"] == [] and leaks["images"] == [], where
            assert leaks["bold"] == [] and leaks["math"] == 0 and leaks["coloured"] == 0, (
                where,
                leaks["bold"],
            )
            assert "**bold** [link](http" in leaks["text"], where  # shown, character for character
            assert "\U0001f604" not in leaks["text"], where  # :smile: stayed a word
            if title == "Latent map":
                assert any("<b>html</b>" in t for t in leaks["svg"]), leaks["svg"]
        assert not [r for r in requests if "x.test" in r], "the page fetched a remote image (a beacon)"
        context.close()
