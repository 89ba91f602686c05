"""Every page works with the shipped checkpoints alone: no dataset on disk and no network."""

import socket
from pathlib import Path

import pytest

from tests.app_support import PAGES, ROOT, app_test, assert_no_exception, select_model

SHIPPED = ["mnist-conv-16", "mnist-mlp-2", "digits-mlp-8"]


@pytest.fixture
def offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Use the repository's checkpoints, an empty data folder, and refuse every non-loopback connection."""
    for name in SHIPPED:
        if not (ROOT / "checkpoints" / f"{name}.pt").exists():
            pytest.fail(f"the shipped checkpoint checkpoints/{name}.pt is missing (make checkpoints)")
    empty = tmp_path / "no-data"
    empty.mkdir()
    monkeypatch.setenv("VAE_DATA_DIR", str(empty))
    monkeypatch.setenv("VAE_CHECKPOINT_DIR", str(ROOT / "checkpoints"))
    attempts: list[str] = []
    real_connect = socket.socket.connect

    def guarded(self, address):
        host = address[0] if isinstance(address, tuple) else str(address)
        if host not in ("127.0.0.1", "::1", "localhost"):
            attempts.append(host)
            raise OSError(f"network disabled in this test (tried {host})")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)
    return attempts


@pytest.mark.parametrize("page", PAGES)
def test_every_page_shows_real_content_offline(offline: list[str], page: str):
    at = app_test(page, timeout=180)
    assert_no_exception(at)
    assert at.title, f"{page} drew no title"
    problems = [e.value for e in at.error] + [w.value for w in at.warning if "not on disk" in w.value]
    assert not problems, problems
    assert not offline, f"{page} tried to reach {offline}"


@pytest.mark.parametrize("name", SHIPPED)
def test_each_shipped_model_loads_with_its_figures_and_sample(offline: list[str], name: str):
    at = app_test(timeout=180)
    select_model(at, ROOT / "checkpoints" / f"{name}.pt")
    shown = {m.label: m.value for m in at.metric}
    assert shown["Test NLL (nats)"] != "—" and shown["Test −ELBO (nats)"] != "—"
    assert any("bundled with the model" in c.value for c in at.caption)
