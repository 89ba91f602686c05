"""The Train and Training-timeline pages through AppTest: start, poll, stop, save, resume, refuse, explain."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

import vae_core.runs
import vae_core.training
from tests.app_support import app_test, assert_no_exception, chart_spec, plotly_array, select_model
from tests.helpers import random_splits, tiny_model
from vae_app import figures
from vae_core.bundle import save_trained
from vae_core.checkpoints import load_checkpoint
from vae_core.config import TrainConfig
from vae_core.imaging import label_hex

TRAIN, TIMELINE = "vae_app/views/train.py", "vae_app/views/timeline.py"


@pytest.fixture
def folder(app_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private checkpoint folder (the tiny models plus a shipped one), so saving touches no shared folder."""
    own = tmp_path / "checkpoints"
    own.mkdir()
    for path in app_env.glob("*.pt"):
        shutil.copy(path, own / path.name)
    data = random_splits(n_train=32, n_test=16)
    save_trained(
        own / "shipped-one.pt",
        model=tiny_model(),
        data=data,
        train_config=TrainConfig(dataset="random", epochs=1),
        history=[],
        sample_size=0,
        extra={"shipped": True},
    )
    monkeypatch.setenv("VAE_CHECKPOINT_DIR", str(own))
    return own


def start(
    at, *, dataset: str = "digits", epochs: int = 1, resume: bool = False, seed: int = 0, hidden: str = "16"
):
    """Fill the form with tiny settings and press Start; return the AppTest after the rerun."""
    if resume:
        at.checkbox(key="train_resume").check()
    else:
        at.selectbox(key="train_dataset").set_value(dataset)
        at.radio(key="train_arch").set_value("mlp")
        at.number_input(key="train_latent").set_value(2)
        at.text_input(key="train_hidden").set_value(hidden)
    at.number_input(key="train_epochs").set_value(epochs)
    at.number_input(key="train_batch").set_value(256)
    at.number_input(key="train_seed").set_value(seed)
    next(b for b in at.button if b.label == "Start training").click()
    return at.run()


def finish(at, *, timeout: float = 90):
    """Wait for the session's run to end, then rerun the page as the fragment would; return the run."""
    run = at.session_state["train_run"]
    assert run.join(timeout), "the training run did not finish in time"
    at.run()
    assert_no_exception(at)
    return run


def texts(elements) -> str:
    return "\n".join(str(e.value) for e in elements)


def save(at, name: str, *, overwrite: bool = False):
    at.text_input(key="train_save_name").set_value(name)
    if overwrite:
        next(c for c in at.checkbox if c.label == "Replace a model of the same name").check()
    at.button(key="train_save").click()
    return at.run()


def test_train_save_resume_journey(folder: Path) -> None:
    at = app_test(TRAIN)
    assert_no_exception(at)
    assert at.title[0].value == "Train a VAE"
    assert at.selectbox(key="train_dataset").value in ("digits", "mnist")
    assert "digits" in texts(at.caption)  # the offline choices are named next to the dataset

    start(at, epochs=1)
    assert_no_exception(at)
    run = at.session_state["train_run"]
    assert run.train_config.dataset == "digits"

    # Leaving the page keeps the run; the timeline page shows it.
    at.switch_page(TIMELINE).run()
    assert_no_exception(at)
    run = finish(at)
    assert at.session_state["train_run"] is run
    charts = at.get("plotly_chart")
    assert len(charts) == 1
    figure = json.loads(charts[0].proto.spec)
    assert len(figure["frames"]) == 1 and figure["frames"][0]["name"] == "1"
    assert len(at.get("download_button")) == 2  # both GIFs
    assert at.selectbox(key="timeline_source").value == "run:0"  # the finished run, kept for the session
    at.switch_page(TRAIN).run()
    assert_no_exception(at)

    snap = run.snapshot()
    assert snap.status == "finished" and len(snap.history) == 1
    assert "Finished" in texts(at.success)
    assert len(at.get("plotly_chart")) == 2  # the loss curves and the map of the last epoch
    assert [m.label for m in at.metric][:2] == ["Epoch", "Test −ELBO (nats)"]

    # A shipped model is never replaced, even with "overwrite" ticked.
    shipped = (folder / "shipped-one.pt").read_bytes()
    save(at, "shipped-one", overwrite=True)
    assert_no_exception(at)
    assert "shipped with the app" in texts(at.error)
    assert (folder / "shipped-one.pt").read_bytes() == shipped

    # A path-like name is sanitized into the folder.
    save(at, "../evil")
    assert_no_exception(at)
    saved = folder / "evil.pt"
    assert saved.is_file() and not (folder.parent / "evil.pt").exists()
    loaded = load_checkpoint(saved)
    assert loaded.sample is not None and len(loaded.sample.images) == len(run.data.test_x)
    assert loaded.info.epochs == 1 and "test_nll" in loaded.info.metrics
    # The saved model carries the run's timeline and the atlas of its bundled sample.
    assert [f.epoch for f in loaded.timeline.frames] == [1]
    assert loaded.atlas is not None and len(loaded.atlas) == len(loaded.sample.images)
    assert at.session_state["app_model"] == {"kind": "file", "path": str(saved)}
    assert "Saved to" in texts(at.success)

    # The same name again without "overwrite" is refused.
    before = saved.stat().st_mtime_ns
    save(at, "evil")
    assert "already exists" in texts(at.error)
    assert saved.stat().st_mtime_ns == before

    # Resume the saved (now current) model: its history continues, the file is untouched, and the
    # cached model that every session shares is not trained in place.
    from vae_app import cache

    cached = cache.model_file(str(saved), saved.stat().st_mtime).model
    cached_before = {k: v.clone() for k, v in cached.state_dict().items()}
    start(at, epochs=1, resume=True)
    resumed = finish(at)
    assert resumed is not run
    assert [int(r["epoch"]) for r in resumed.snapshot().history] == [1, 2]
    assert saved.stat().st_mtime_ns == before
    assert resumed.model is not cached
    assert all(torch.equal(v, cached_before[k]) for k, v in cached.state_dict().items())
    assert any(not torch.equal(v, cached_before[k]) for k, v in resumed.model.state_dict().items())
    # The resumed run continues the saved timeline, and both runs are kept for the session.
    assert [f.epoch for f in resumed.timeline().frames] == [1, 2]
    assert resumed.timeline().frames[0].mu.tobytes() == loaded.timeline.frames[0].mu.tobytes()
    at.switch_page(TIMELINE).run()
    assert_no_exception(at)
    options = at.selectbox(key="timeline_source").options
    assert sum("This session: run" in o for o in options) == 2, options
    assert "evil continued" in options[1]


def test_stop_keeps_last_complete_epoch(folder: Path) -> None:
    at = app_test(TRAIN)
    start(at, epochs=500)
    run = at.session_state["train_run"]
    at.run()
    at.button(key="train_stop").click().run()
    assert_no_exception(at)
    run = finish(at)
    snap = run.snapshot()
    assert snap.status == "stopped" and len(snap.history) < 500
    assert f"Kept the model after epoch {len(snap.history)}" in texts(at.info)


def test_missing_dataset_names_the_offline_choices(folder: Path) -> None:
    at = app_test(TRAIN)
    start(at, dataset="mnist")
    assert_no_exception(at)
    assert "digits" in texts(at.info)  # said before the download is even tried
    run = finish(at, timeout=120)
    assert run.snapshot().status == "failed"
    assert "MNIST is not available" in texts(at.error)
    assert "digits" in texts(at.info)
    assert "Traceback" not in texts(at.error)


def test_capacity_limit_answers_with_a_warning(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    full = threading.BoundedSemaphore(1)
    full.acquire()
    monkeypatch.setattr(vae_core.runs, "_slots", full)
    at = app_test(TRAIN)
    start(at)
    assert_no_exception(at)
    assert "already going" in texts(at.warning)
    assert at.session_state["train_run"] is None


def test_bad_settings_give_a_message(folder: Path) -> None:
    at = app_test(TRAIN)
    start(at, hidden="four hundred")
    assert_no_exception(at)
    assert "whole numbers" in texts(at.error)
    assert at.session_state["train_run"] is None


def test_timeline_without_a_run_explains(folder: Path) -> None:
    at = app_test(TIMELINE)
    select_model(at, folder / "shipped-one.pt")  # saved without a timeline
    assert_no_exception(at)
    assert "carries no training timeline" in texts(at.info)
    assert "Start a run on the **Train** page" in texts(at.info)
    assert not at.get("plotly_chart")


def test_timeline_plays_a_saved_models_timeline_without_training(folder: Path) -> None:
    at = app_test(TIMELINE)
    select_model(at, folder / "tiny-mlp-2.pt")
    assert_no_exception(at)
    loaded = load_checkpoint(folder / "tiny-mlp-2.pt")
    timeline, names = loaded.timeline, loaded.info.class_names
    epochs = [str(f.epoch) for f in timeline.frames]
    assert epochs == ["1", "2"]
    assert at.selectbox(key="timeline_source").value == "model"
    figure = chart_spec(at)
    assert [f["name"] for f in figure["frames"]] == epochs
    # Each class trace of the last frame holds that class's codes, in the palette of the GIF export.
    labels, mu = timeline.labels, timeline.frames[-1].mu
    for trace in figure["data"]:
        label = next(c for c in range(10) if trace["name"] == figures.class_name(names, c))
        assert trace["marker"]["color"] == label_hex(label)
        assert np.allclose(plotly_array(trace["x"]), mu[labels == label, 0])
    assert len(at.get("download_button")) == 2


def test_two_runs_in_one_session_are_both_listed(folder: Path) -> None:
    at = app_test(TRAIN)
    start(at, epochs=1, seed=1)
    first = finish(at)
    start(at, epochs=2, seed=2)
    second = finish(at)
    assert first is not second
    at.switch_page(TIMELINE).run()
    assert_no_exception(at)
    box = at.selectbox(key="timeline_source")
    assert box.options[:2] == [
        "This session: run 1: digits · MLP · z = 2 (1 epochs)",
        "This session: run 2: digits · MLP · z = 2 (2 epochs)",
    ]
    assert box.value == "run:1"  # the newest run
    assert [f["name"] for f in chart_spec(at)["frames"]] == ["1", "2"]
    box.set_value("run:0").run()
    assert_no_exception(at)
    assert [f["name"] for f in chart_spec(at)["frames"]] == ["1"]


def test_worker_failure_reaches_the_page(folder: Path) -> None:
    # The tiny model was trained on "random" blobs, a dataset the run cannot load: its thread fails.
    at = app_test(TRAIN)
    select_model(at, folder / "tiny-mlp-2.pt")
    start(at, resume=True)
    assert_no_exception(at)
    run = finish(at)
    assert run.snapshot().status == "failed"
    assert "Training failed: ValueError: unknown dataset 'random'" in texts(at.error)


def test_non_finite_loss_stops_and_keeps_the_last_good_epoch(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = vae_core.training.elbo_loss
    steps = {"n": 0}

    def diverging(*args, **kwargs):
        terms = real(*args, **kwargs)
        if torch.is_grad_enabled():  # training steps only, not validation
            steps["n"] += 1
            if steps["n"] > 6:  # digits: 1,500 images in batches of 256 make 6 steps; epoch 2 diverges
                return terms._replace(total=terms.total * float("nan"))
        return terms

    monkeypatch.setattr(vae_core.training, "elbo_loss", diverging)
    at = app_test(TRAIN)
    start(at, epochs=3)
    run = finish(at)
    snap = run.snapshot()
    assert snap.status == "failed" and len(snap.history) == 1
    assert "infinite or NaN" in texts(at.error) and "last good epoch (1)" in texts(at.error)
    assert at.text_input(key="train_save_name").value  # the good epoch can still be saved
