"""The Train and Training-timeline pages through AppTest: start, poll, stop, save, resume, refuse, explain."""

from __future__ import annotations

import json
import os
import re
import resource
import secrets
import shutil
import threading
import time
from dataclasses import replace
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
from vae_core.config import ModelConfig, TrainConfig
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
    """Return the elements' text as shown: Markdown escapes (``vae_app.escape.md``) removed."""
    shown = (re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", str(e.value)).replace("\u2060", "") for e in elements)
    return "\n".join(shown)


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


def autosaved_digits_run(folder: Path, *, done: int = 2, planned: int = 4) -> Path:
    """Write the autosave a killed server leaves: ``done`` of ``planned`` epochs on digits, by a process gone."""
    from vae_core.datasets import load_dataset
    from vae_core.saving import save_checkpoint
    from vae_core.timeline import TimelineRecorder
    from vae_core.training import fit

    data = load_dataset("digits")
    model = tiny_model(ModelConfig(arch="mlp", latent_dim=2, hidden=(16,)))
    recorder = TimelineRecorder(data.test_x, data.test_y, latent_dim=2)
    config = TrainConfig(dataset="digits", epochs=planned, batch_size=256, device="cpu")
    history = fit(model, data, replace(config, epochs=done), on_epoch=recorder).history
    # This pid with another start time: a process that has ended.
    path = folder / f"20240101-000000-{os.getpid()}-1-{secrets.token_hex(3)}.pt"
    return save_checkpoint(
        path,
        model=model,
        train_config=config,
        dataset="digits",
        history=history,
        class_names=data.class_names,
        extra={"autosave": {"epochs_planned": planned}},
        timeline=recorder.timeline(),
    )


def test_train_page_offers_an_interrupted_run_and_resume_continues_it(folder: Path) -> None:
    auto = Path(os.environ["VAE_AUTOSAVE_DIR"])
    path = autosaved_digits_run(auto, done=2, planned=4)
    at = app_test(TRAIN)
    assert_no_exception(at)
    assert "2 of 4 epochs" in texts(at.markdown) and "Unsaved runs" in texts(at.markdown)
    next(b for b in at.button if b.label == "Resume (2 left)").click()
    at.run()
    assert_no_exception(at)
    run = finish(at)
    snap = run.snapshot()
    assert snap.status == "finished", snap.error
    assert [int(r["epoch"]) for r in snap.history] == [1, 2, 3, 4]
    assert [f.epoch for f in run.timeline().frames] == [1, 2, 3, 4]  # the autosaved frames, then new ones
    assert "Finished: 4 epochs trained" in texts(at.success)
    assert "Unsaved runs" not in texts(at.markdown)  # this session's run claims it now
    assert not path.exists() and run.autosave.path.exists()  # its own autosave replaced the old one
    save(at, "resumed")
    assert_no_exception(at)
    assert load_checkpoint(folder / "resumed.pt").info.epochs == 4
    assert list(auto.iterdir()) == []  # saved for good: no autosave left


def test_an_interrupted_run_can_be_reopened_to_save_or_discarded(folder: Path) -> None:
    auto = Path(os.environ["VAE_AUTOSAVE_DIR"])
    path = autosaved_digits_run(auto, done=2, planned=4)
    at = app_test(TRAIN)
    next(b for b in at.button if b.label == "Open to save").click()
    at.run()
    run = finish(at)
    assert run.snapshot().status == "stopped" and len(run.snapshot().history) == 2
    assert "Reopened the unsaved run: the model after epoch 2" in texts(at.info)
    save(at, "reopened")
    assert_no_exception(at)
    assert load_checkpoint(folder / "reopened.pt").info.epochs == 2 and not path.exists()

    autosaved_digits_run(auto, done=1, planned=3)
    at = app_test(TRAIN)
    assert "1 of 3 epochs" in texts(at.markdown)
    next(b for b in at.button if b.label == "Discard").click()
    at.run()
    assert_no_exception(at)
    assert list(auto.iterdir()) == [] and "Unsaved runs" not in texts(at.markdown)


class FakeRuntime:
    """Stands in for Streamlit's Runtime: a session that is connected or not."""

    def __init__(self) -> None:
        self.connected = True

    def is_active_session(self, session_id: str) -> bool:
        return self.connected and session_id == "s1"


def test_a_dropped_connection_keeps_the_session_alive_within_the_reconnect_window() -> None:
    from vae_app.state import SessionWatch

    runtime, now = FakeRuntime(), [0.0]
    alive = SessionWatch(runtime, "s1", grace_s=130.0, clock=lambda: now[0])
    assert alive()
    runtime.connected = False  # the websocket dropped (F5: a 3 s network drop)
    now[0] = 2.0
    assert alive()
    now[0] = 5.0
    assert alive()
    runtime.connected = True  # the browser reconnected to the same session
    now[0] = 6.0
    assert alive()
    runtime.connected = False  # a later drop is timed afresh
    now[0] = 100.0
    assert alive()
    now[0] = 229.0
    assert alive()
    now[0] = 231.0  # disconnected longer than Streamlit keeps a session: gone
    assert not alive()


def test_a_run_keeps_going_through_a_short_drop_and_stops_when_the_session_is_gone(monkeypatch) -> None:
    from vae_app.state import SessionWatch
    from vae_core.runs import TrainingRun

    monkeypatch.setattr(vae_core.runs, "KEEP_GOING_CHECK_S", 0.0)
    runtime, now = FakeRuntime(), [0.0]
    watch = SessionWatch(runtime, "s1", grace_s=130.0, clock=lambda: now[0])
    config = TrainConfig(dataset="random", epochs=10_000, batch_size=32, device="cpu")
    run = TrainingRun(tiny_model().config, config, data=random_splits(), keep_going=watch).start()
    try:
        while len(run.snapshot().history) < 1:
            threading.Event().wait(0.01)
        runtime.connected, now[0] = False, 3.0  # a 3 s drop, as the old check saw it: stopped at once
        threading.Event().wait(0.3)
        assert not run.snapshot().done
        runtime.connected = True
        seen = len(run.snapshot().history)
        while len(run.snapshot().history) < seen + 1:
            threading.Event().wait(0.01)
        assert not run.snapshot().done
        runtime.connected, now[0] = False, 10.0
        threading.Event().wait(0.05)
        now[0] = 200.0  # never came back
        assert run.join(30)
        snap = run.snapshot()
        assert snap.status == "stopped" and "abandoned" in snap.message
    finally:
        run.stop()
        run.join(30)


def test_session_alive_check_outside_a_server_always_says_yes() -> None:
    from vae_app.state import session_alive_check

    assert session_alive_check()()


def test_a_failed_save_clears_the_earlier_saved_message(folder: Path) -> None:
    # Issue 12: after a failed save the earlier "Saved to …" stayed above the error.
    at = app_test(TRAIN)
    start(at, epochs=1)
    finish(at)
    save(at, "kept")
    assert "Saved to" in texts(at.success)
    save(at, "kept")  # the same name again, Replace unticked
    assert_no_exception(at)
    assert "already exists" in texts(at.error)
    assert "Saved to" not in texts(at.success)


def test_a_name_taken_while_saving_is_refused_and_keeps_the_other_model(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Issue 12, F4: sessions A and B both saved "race"; both were told "Saved", the file held B's model and
    # A's sidebar showed B's model as its own. Here B's save lands while A measures its test figures.
    import vae_app.train_run

    target = folder / "race.pt"
    real_metrics = vae_app.train_run.test_metrics
    other = tiny_model(seed=7)

    def other_session_saves_first(*args, **kwargs):
        metrics = real_metrics(*args, **kwargs)
        save_trained(
            target,
            model=other,
            data=random_splits(n_train=32, n_test=16),
            train_config=TrainConfig(dataset="random", epochs=1),
            history=[],
            sample_size=0,
        )
        return metrics

    monkeypatch.setattr(vae_app.train_run, "test_metrics", other_session_saves_first)
    at = app_test(TRAIN)
    start(at, epochs=1)
    finish(at)
    chosen = at.session_state["app_model"] if "app_model" in at.session_state else None
    save(at, "race")
    assert_no_exception(at)
    assert "name taken" in texts(at.error) and "nothing was overwritten" in texts(at.error)
    assert "Saved to" not in texts(at.success)
    saved = load_checkpoint(target).model.state_dict()
    assert all(torch.equal(v, other.state_dict()[k]) for k, v in saved.items())  # B's model, untouched
    assert (at.session_state["app_model"] if "app_model" in at.session_state else None) == chosen
    assert sorted(p.name for p in folder.iterdir() if p.name.startswith(".")) == []  # no temporary file left


def test_the_suggested_save_name_is_never_a_shipped_models_name(folder: Path) -> None:
    # Issue 11/12: a digits MLP run with the default latent size (8) suggested "digits-mlp-8", a shipped name.
    at = app_test(TRAIN)
    at.selectbox(key="train_dataset").set_value("digits")
    at.radio(key="train_arch").set_value("mlp")
    at.number_input(key="train_latent").set_value(8)
    at.text_input(key="train_hidden").set_value("16")
    at.number_input(key="train_epochs").set_value(1)
    at.number_input(key="train_batch").set_value(256)
    next(b for b in at.button if b.label == "Start training").click()
    at.run()
    finish(at)
    assert at.text_input(key="train_save_name").value == "digits-mlp-8-2"
    assert "digits-mlp-8-2.pt" in texts(at.caption)


# --- Your own images: server folders only below the allowed roots; zips unpacked per session (issue 12, F3) ---


def own_images_zip(*, seed: int = 0, entries: dict[str, bytes] | None = None) -> bytes:
    """Return a zip of two class folders (cats, dogs) of 8 small PNGs each, or of ``entries``."""
    import io
    import zipfile

    from PIL import Image

    def png(value: int) -> bytes:
        out = io.BytesIO()
        Image.new("L", (20, 20), value).save(out, format="PNG")
        return out.getvalue()

    rng = np.random.default_rng(seed)
    if entries is None:
        entries = {f"{c}/{i}.png": png(int(rng.integers(0, 256))) for c in ("cats", "dogs") for i in range(8)}
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return out.getvalue()


def start_own(at, *, path: str = "", archive: tuple[str, bytes] | None = None):
    """Fill the form for a tiny run on the user's own images (a folder path or a zip) and press Start."""
    at.radio(key="train_arch").set_value("mlp")
    at.number_input(key="train_latent").set_value(2)
    at.text_input(key="train_hidden").set_value("16")
    at.number_input(key="train_epochs").set_value(1)
    at.number_input(key="train_batch").set_value(256)
    if path:
        at.text_input(key="train_folder").set_value(path)
    if archive is not None:
        at.file_uploader(key="train_zip").set_value((archive[0], archive[1], "application/zip"))
    next(b for b in at.button if b.label == "Start training").click()
    return at.run()


def server_files(tmp_path: Path) -> Path:
    """Return a folder of 'server' images outside the allowed roots, in two class folders."""
    from PIL import Image

    outside = tmp_path / "server-files"
    for name in ("icons", "logos"):
        (outside / name).mkdir(parents=True)
        for i in range(5):
            Image.new("L", (16, 16), 30 * i).save(outside / name / f"{i}.png")
    return outside


def test_a_folder_outside_the_roots_gets_one_message_and_no_run(
    folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    outside = server_files(tmp_path)
    monkeypatch.setenv("VAE_FOLDER_ROOTS", str(allowed))
    before = sorted(p.name for p in folder.iterdir())
    at = app_test(TRAIN)
    assert not at.text_input(key="train_folder").disabled
    errors = {}
    for path in ("/root", "/nonexistent", str(outside), f"{allowed}/../server-files", "/", "/proc"):
        start_own(at, path=path)
        assert_no_exception(at)
        errors[path] = texts(at.error)
        assert at.session_state["train_run"] is None
    assert errors["/root"] == errors["/nonexistent"], errors
    assert len(set(errors.values())) == 1, errors
    message = errors["/root"]
    assert "Could not start training" in message and "reads image folders only inside" in message
    assert "exist" not in message and "no images" not in message and "readable" not in message
    assert sorted(p.name for p in folder.iterdir()) == before  # nothing saved, no sample of server files


def test_a_served_app_reads_no_server_folder(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(
        "VAE_FOLDER_ROOTS", raising=False
    )  # AppTest, like a default server, listens beyond localhost
    at = app_test(TRAIN)
    box = at.text_input(key="train_folder")
    assert box.disabled and "upload a zip" in box.help
    at.session_state["train_folder"] = os.environ["VAE_DATA_DIR"]  # as a crafted client could; the data dir
    start_own(at)
    assert_no_exception(at)
    assert "reads no folders of its own" in texts(at.error) and "zip" in texts(at.error)
    assert at.session_state["train_run"] is None


def test_a_zip_of_two_class_folders_trains_and_its_folder_goes_with_the_session(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gc

    monkeypatch.delenv("VAE_FOLDER_ROOTS", raising=False)  # no server folder at all: a zip still works
    at = app_test(TRAIN)
    start_own(at, archive=("pets.zip", own_images_zip()))
    assert_no_exception(at)
    run = finish(at)
    assert run.snapshot().status == "finished", texts(at.error)
    assert run.data.class_names == ("cats", "dogs")
    assert len(run.data.train_x) + len(run.data.test_x) == 16
    first = Path(at.session_state["train_zip_folder"][1].name)
    assert run.train_config.dataset == f"folder:{first.resolve() / 'pets'}"
    assert at.text_input(key="train_save_name").value == "pets-mlp-2"
    # A new zip replaces the session's folder; the old one is removed.
    start_own(at, archive=("more.zip", own_images_zip(seed=1)))
    assert_no_exception(at)
    finish(at)
    second = Path(at.session_state["train_zip_folder"][1].name)
    assert second != first and (second / "more" / "cats").is_dir() and not first.exists()
    # The session ends: its state goes, and the folder with it.
    del at, run
    gc.collect()
    assert not second.exists()


def test_an_unsafe_zip_gets_a_message_and_no_run(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VAE_FOLDER_ROOTS", raising=False)
    at = app_test(TRAIN)
    evil = own_images_zip(entries={"cats/1.png": b"x", "../../evil.png": b"x"})
    start_own(at, archive=("evil.zip", evil))
    assert_no_exception(at)
    assert "outside its folder" in texts(at.error)
    assert at.session_state["train_run"] is None and "train_zip_folder" not in at.session_state


def test_continuing_a_model_that_names_a_server_folder_reads_nothing(
    folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vae_core.folders import allowed_roots, refused_message

    outside = server_files(tmp_path)
    monkeypatch.setenv("VAE_FOLDER_ROOTS", str(tmp_path / "allowed"))
    crafted = folder / "crafted.pt"
    save_trained(
        crafted,
        model=tiny_model(),
        data=random_splits(n_train=32, n_test=16)._replace(name=f"folder:{outside}"),
        train_config=TrainConfig(dataset=f"folder:{outside}", epochs=1),
        history=[],
        sample_size=16,
    )
    import vae_core.folders

    listed: list[str] = []
    real_scandir = os.scandir
    monkeypatch.setattr(vae_core.folders.os, "scandir", lambda p: listed.append(str(p)) or real_scandir(p))
    at = app_test(TRAIN)
    select_model(at, crafted)  # the sidebar looks for the model's full test split: refused, not read
    start(at, resume=True)
    assert_no_exception(at)
    run = finish(at)
    assert run.snapshot().status == "failed" and run.data is None
    assert refused_message(allowed_roots(address=None)) in texts(at.error)
    assert not [t for t in at.text_input if t.key == "train_save_name"]  # nothing to save
    assert not [p for p in listed if p.startswith(str(outside))]


# Issue 12, F1: two numbers in the Train form killed the server; a number out of range did nothing.


def start_with(at, *, arch: str = "mlp", **values):
    """Choose digits and ``arch``, set form fields by name (``hidden=...``, ``latent=...``), press Start."""
    at.selectbox(key="train_dataset").set_value("digits")
    at.radio(key="train_arch").set_value(arch)
    for name, value in values.items():
        field = at.text_input if name in ("hidden", "channels") else at.number_input
        field(key=f"train_{name}").set_value(value)
    next(b for b in at.button if b.label == "Start training").click()
    return at.run()


@pytest.mark.parametrize(
    ("values", "env"),
    [
        ({"hidden": "20000, 20000"}, "VAE_MAX_WIDTH"),  # killed the server after 32 s
        ({"hidden": "100000000"}, "VAE_MAX_WIDTH"),  # the raw allocator error
        ({"arch": "conv", "channels": "100000, 100000"}, "VAE_MAX_CHANNELS"),
        ({"hidden": "10000, 10000"}, "VAE_MAX_PARAMETERS"),
        ({"latent": 100_000}, "VAE_MAX_LATENT_DIM"),
        ({"batch": 100_000}, "VAE_MAX_BATCH"),
        ({"arch": "conv", "channels": "512, 512", "batch": 4096}, "VAE_MAX_TRAIN_MEMORY_MB"),
    ],
    ids=lambda v: v if isinstance(v, str) else " ".join(f"{k}={x}" for k, x in v.items()),
)
def test_a_model_past_a_limit_is_refused_with_a_message_naming_it(folder: Path, values, env) -> None:
    at = app_test(TRAIN)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.perf_counter()
    start_with(at, **values)
    assert time.perf_counter() - started < 5  # the page's whole rerun; the refusal itself takes milliseconds
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - before < 200
    assert_no_exception(at)
    message = texts(at.error)
    assert "Could not start training" in message and "more than the limit of" in message and env in message
    assert at.session_state["train_run"] is None


def test_the_number_fields_leave_range_checks_to_the_server(folder: Path) -> None:
    # The browser refused an out-of-range number by keeping Start from submitting, with a red outline and
    # its reason only in a tooltip: Start seemed to do nothing. The fields now have no min or max.
    at = app_test(TRAIN)
    keys = ("latent", "beta", "warmup", "epochs", "batch", "lr", "seed", "limit")
    for key in keys:
        field = at.number_input(key=f"train_{key}")
        assert field.min is None and field.max is None, key


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("latent", 0, "latent_dim must be >= 1, got 0"),
        ("epochs", 0, "epochs must be >= 1, got 0"),
        ("batch", -5, "batch_size must be >= 1, got -5"),
        ("warmup", -1, "kl_warmup_epochs must be >= 0, got -1"),
        ("beta", -1.0, "beta must be >= 0, got -1.0"),
        ("lr", 0.0, "The learning rate must be between 1e-06 and 1, got 0"),
        ("lr", 5.0, "The learning rate must be between 1e-06 and 1, got 5"),
        ("seed", -1, "The seed must be between 0 and 2,147,483,647, got -1"),
        ("limit", -3, "the number of training images must be 0 (all) or more, got -3"),
    ],
)
def test_an_out_of_range_number_gets_a_message_and_no_run(folder: Path, name: str, value, expected) -> None:
    at = app_test(TRAIN)
    start_with(at, hidden="16", **{name: value})
    assert_no_exception(at)
    assert expected in texts(at.error)
    assert at.session_state["train_run"] is None


def test_an_app_on_localhost_reads_folders_in_the_home_folder(
    folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import streamlit

    real_option = streamlit.get_option
    monkeypatch.setattr(
        streamlit, "get_option", lambda key: "127.0.0.1" if key == "server.address" else real_option(key)
    )
    monkeypatch.delenv("VAE_FOLDER_ROOTS", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    mine = server_files(tmp_path / "home")  # in the home folder this time: allowed
    at = app_test(TRAIN)
    box = at.text_input(key="train_folder")
    assert not box.disabled and str((tmp_path / "home").resolve()) in box.help
    start_own(at, path=str(mine))
    assert_no_exception(at)
    run = finish(at)
    assert run.snapshot().status == "finished", texts(at.error)
    assert run.data.class_names == ("icons", "logos")
    start_own(at, path="/root")  # outside the home and the data folder: the one message
    assert "reads image folders only inside" in texts(at.error)
