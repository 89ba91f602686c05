"""Checkpoints uploaded in the sidebar: limited per session, kept in the session and freed with it,
and every failure shown as a message (issue 12, F2)."""

from __future__ import annotations

import gc
import re
import weakref
from pathlib import Path

import pytest

from tests.app_support import app_test, assert_no_exception
from tests.crafted import deflate_bomb, real_checkpoint, stride0_checkpoint
from tests.helpers import tiny_model
from vae_app import cache, state
from vae_core.saving import save_checkpoint

UPLOAD = "app_checkpoint_upload"


@pytest.fixture
def checkpoint_bytes(tmp_path: Path):
    """Return a function of ``seed`` giving a distinct small checkpoint's bytes."""

    def make(seed: int) -> bytes:
        path = save_checkpoint(
            tmp_path / f"upload-{seed}.pt",
            model=tiny_model(seed=seed),
            train_config=None,
            dataset="random",
            history=[],
        )
        return path.read_bytes()

    return make


def upload(at, name: str, data: bytes):
    at.sidebar.file_uploader(key=UPLOAD).set_value((name, data, "application/octet-stream")).run()
    assert_no_exception(at)
    return at


def shown(elements) -> str:
    """Return the elements' text as shown: Markdown escapes (``vae_app.escape.md``) and code spans removed."""
    return "\n".join(re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", str(e.value)).replace("`", "") for e in elements)


def sidebar_errors(at) -> str:
    return shown(at.sidebar.error)


def uploaded(at) -> list[str]:
    return [name for name, _ in at.session_state[state.UPLOADS_KEY].values()]


def test_a_session_keeps_at_most_the_limit_of_uploads(app_env: Path, checkpoint_bytes) -> None:
    # F2 (c): three 150 MB uploads stayed in memory minutes after the tab closed, and nothing limited them.
    at = app_test()
    for seed in range(3):
        upload(at, f"m{seed}.pt", checkpoint_bytes(seed))
        assert not sidebar_errors(at)
    assert uploaded(at) == ["m0.pt", "m1.pt", "m2.pt"]
    assert at.session_state[state.MODEL_KEY]["name"] == "m2.pt"
    upload(at, "m3.pt", checkpoint_bytes(3))
    message = sidebar_errors(at)
    assert "m3.pt" in message and "was not loaded" in message
    assert "more than the limit of 3 uploaded checkpoints" in message and "VAE_MAX_SESSION_UPLOADS" in message
    assert uploaded(at) == ["m0.pt", "m1.pt", "m2.pt"]
    upload(at, "m1-again.pt", checkpoint_bytes(1))  # the same file again takes no more room
    assert not sidebar_errors(at) and len(uploaded(at)) == 3


def test_a_session_keeps_at_most_the_limit_of_upload_bytes(
    app_env: Path, checkpoint_bytes, monkeypatch
) -> None:
    first = checkpoint_bytes(0)
    monkeypatch.setenv("VAE_MAX_SESSION_UPLOAD_MB", str(1.5 * len(first) / 1024**2))
    at = app_test()
    upload(at, "first.pt", first)
    upload(at, "second.pt", checkpoint_bytes(1))
    message = sidebar_errors(at)
    assert "second.pt" in message and "this session's uploads would take" in message
    assert "VAE_MAX_SESSION_UPLOAD_MB" in message and "Forget uploaded models" in message
    assert uploaded(at) == ["first.pt"]


def test_uploads_live_in_the_session_and_go_with_it(app_env: Path, checkpoint_bytes) -> None:
    assert not hasattr(cache, "model_bytes"), "no cache shared by every session may hold uploads"
    at = app_test()
    upload(at, "mine.pt", checkpoint_bytes(0))
    ((_, loaded),) = at.session_state[state.UPLOADS_KEY].values()
    model = weakref.ref(loaded.model)
    del loaded
    assert model() is not None
    del at  # the session ends (its tab closed)
    gc.collect()
    assert model() is None, "the uploaded model outlived its session"


def test_forget_uploaded_models_frees_them_and_falls_back_to_a_file(app_env: Path, checkpoint_bytes) -> None:
    at = app_test()
    upload(at, "mine.pt", checkpoint_bytes(0))
    assert at.session_state[state.MODEL_KEY]["kind"] == "upload"
    at.sidebar.button(key="app_forget_uploads").click().run()
    assert_no_exception(at)
    assert state.UPLOADS_KEY not in at.session_state
    assert (at.session_state[state.MODEL_KEY] or {}).get("kind") == "file"
    assert not [b for b in at.sidebar.button if b.key == "app_forget_uploads"]


@pytest.mark.parametrize("kind", ["stride0", "deflate-bomb"])
def test_a_crafted_upload_gets_a_message_and_is_not_kept(app_env: Path, tmp_path: Path, kind: str) -> None:
    # F2 (a), (b): the server died 7.6 s after the upload, or the page became Streamlit's error page.
    if kind == "stride0":
        data = stride0_checkpoint(tmp_path / "huge.pt", hidden=(10**7,)).read_bytes()
    else:
        data = deflate_bomb(real_checkpoint(tmp_path / "ok.pt"), tmp_path / "bomb.pt").read_bytes()
    at = app_test()
    upload(at, "crafted.pt", data)
    message = sidebar_errors(at)
    assert "crafted.pt" in message and "was not loaded" in message
    assert ("is a view" if kind == "stride0" else "unpacks to 3,072 MB") in message
    assert not at.session_state[state.UPLOADS_KEY]


def test_any_exception_while_loading_an_upload_is_a_message(
    app_env: Path, checkpoint_bytes, monkeypatch
) -> None:
    def explode(*args, **kwargs):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: not enough memory")

    monkeypatch.setattr(state, "load_checkpoint", explode)
    at = app_test()
    upload(at, "odd.pt", checkpoint_bytes(0))
    assert "odd.pt was not loaded: RuntimeError: [enforce fail" in sidebar_errors(at)


def test_any_exception_while_loading_the_selected_file_is_a_message(app_env: Path, monkeypatch) -> None:
    def explode(*args, **kwargs):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: not enough memory")

    monkeypatch.setattr(state.cache, "model_file", explode)
    at = app_test()
    assert_no_exception(at)
    assert "could not be loaded: RuntimeError: [enforce fail" in shown(at.error)
