"""Autosaving runs (issue 12, F6): one atomic file per run each epoch, interrupted runs found, resumed, reopened.

The last test kills a real training process with SIGKILL and reads what it left.
"""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from tests.helpers import TINY, random_splits, tiny_model
from vae_core import autosave
from vae_core.autosave import Autosaver, AutosaveTaken, interrupted_runs
from vae_core.checkpoints import list_checkpoints, load_checkpoint, read_info
from vae_core.config import TrainConfig
from vae_core.runs import TrainingRun
from vae_core.saving import save_checkpoint
from vae_core.timeline import TimelineRecorder
from vae_core.training import fit

CPU = dict(dataset="random", device="cpu", batch_size=32)
ROOT = Path(__file__).resolve().parents[1]


def _wait(run, timeout=60):
    assert run.join(timeout), "the run did not end in time"
    return run.snapshot()


def dead_id(token: str = "abcdef") -> str:
    """Return a run id of this pid with a start time that is not this process's: a process that is gone."""
    return f"20240101-000000-{os.getpid()}-1-{token}"


def interrupted(folder: Path, data, *, epochs: int = 2, planned: int = 5, token: str = "abcdef") -> Path:
    """Write the autosave a killed run leaves: ``epochs`` of a ``planned``-epoch run, by a process that is gone."""
    model = tiny_model()
    recorder = TimelineRecorder(data.test_x, data.test_y, latent_dim=TINY.latent_dim)
    config = TrainConfig(epochs=planned, **CPU)
    history = fit(model, data, replace(config, epochs=epochs), on_epoch=recorder).history
    return save_checkpoint(
        folder / f"{dead_id(token)}.pt",
        model=model,
        train_config=config,
        dataset=data.name,
        history=history,
        class_names=data.class_names,
        extra={"autosave": {"epochs_planned": planned}},
        timeline=recorder.timeline(),
    )


def test_a_run_autosaves_every_epoch_and_is_claimed_while_it_lives(tmp_path: Path) -> None:
    folder = tmp_path / ".autosave"
    run = TrainingRun(TINY, TrainConfig(epochs=3, **CPU), data=random_splits(), autosave=Autosaver(folder))
    snap = _wait(run.start())
    assert snap.status == "finished" and snap.autosave_error is None
    [path] = folder.glob("*.pt")
    assert path == run.autosave.path and not list(folder.glob(".*"))  # no temporary file left behind
    loaded = load_checkpoint(path)
    assert loaded.info.epochs == 3 and loaded.info.extra["autosave"]["epochs_planned"] == 3
    assert [f.epoch for f in loaded.timeline.frames] == [1, 2, 3]
    assert loaded.info.train_config == run.train_config and loaded.info.model_config == TINY
    for a, b in zip(loaded.model.state_dict().values(), run.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    # Hidden: the model picker never lists autosaves.
    assert list_checkpoints(tmp_path).good == []
    assert interrupted_runs(folder) == []  # the run (and its Autosaver) still lives: claimed
    del run
    gc.collect()
    [item] = interrupted_runs(folder)  # its session dropped it unsaved: offered
    assert item.path == path and item.epochs_done == 3 and item.epochs_left == 0


def test_a_dead_process_s_autosave_is_interrupted_a_live_one_s_is_not(tmp_path: Path) -> None:
    folder = tmp_path / "auto"
    path = interrupted(folder, random_splits(), epochs=2, planned=5)
    [item] = interrupted_runs(folder)
    assert item.path == path and item.epochs_done == 2 and item.epochs_planned == 5 and item.epochs_left == 3

    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        ticks = autosave._start_ticks(sleeper.pid)
        live = folder / f"20240101-000000-{sleeper.pid}-{ticks}-123456.pt"
        live.write_bytes(path.read_bytes())
        assert [r.path for r in interrupted_runs(folder)] == [path]  # another live process owns it
    finally:
        sleeper.kill()
        sleeper.wait()
    assert {r.path for r in interrupted_runs(folder)} == {path, live}  # now it is gone


def test_stale_temporaries_are_removed_and_live_ones_kept(tmp_path: Path) -> None:
    folder = tmp_path / "auto"
    folder.mkdir()
    stale = folder / f".{dead_id()}.pt.x1y2z3.tmp"
    stale.write_bytes(b"half a checkpoint")
    mine = Autosaver(folder)
    writing = folder / f".{mine.run_id}.pt.q1w2e3.tmp"
    writing.write_bytes(b"being written now")
    assert interrupted_runs(folder) == []
    assert not stale.exists() and writing.exists()


def test_resume_continues_history_and_timeline_and_replaces_the_old_file(tmp_path: Path) -> None:
    folder, data = tmp_path / "auto", random_splits()
    path = interrupted(folder, data, epochs=2, planned=4)
    [item] = interrupted_runs(folder)
    run = TrainingRun.from_autosave(item, data=data)
    with pytest.raises(AutosaveTaken):  # a second session cannot take the same run
        TrainingRun.from_autosave(item, data=data)
    assert interrupted_runs(folder) == []  # claimed by the resumed run
    snap = _wait(run.start())
    assert snap.status == "finished", snap.error
    assert [int(r["epoch"]) for r in snap.history] == [1, 2, 3, 4] and snap.epochs == 4
    assert [f.epoch for f in run.timeline().frames] == [1, 2, 3, 4]
    assert not path.exists() and read_info(run.autosave.path).epochs == 4
    run.autosave.discard()  # what saving the run for good does
    assert list(folder.iterdir()) == []


def test_reopen_for_saving_ends_at_once_with_the_autosaved_model(tmp_path: Path) -> None:
    folder, data = tmp_path / "auto", random_splits()
    path = interrupted(folder, data, epochs=2, planned=6)
    saved = load_checkpoint(path)
    run = TrainingRun.from_autosave(path, train=False, data=data)
    snap = _wait(run.start())
    assert snap.status == "stopped" and "reopened" in snap.message and snap.progress == 1.0
    assert len(snap.history) == 2 and snap.epochs == 2 and [f.epoch for f in snap.timeline] == [1, 2]
    for a, b in zip(saved.model.state_dict().values(), run.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert path.exists() and interrupted_runs(folder) == []  # kept, and claimed until saved or dropped
    run.autosave.discard()
    assert not path.exists()


def test_discard_refuses_a_claimed_run_and_drops_an_interrupted_one(tmp_path: Path) -> None:
    folder, data = tmp_path / "auto", random_splits()
    path = interrupted(folder, data, epochs=1, planned=2)
    holder = TrainingRun.from_autosave(path, train=False, data=data)
    with pytest.raises(AutosaveTaken):
        autosave.discard(path)
    del holder
    gc.collect()
    autosave.discard(path)
    assert not path.exists() and interrupted_runs(folder) == []


def test_prune_keeps_the_newest_unclaimed_autosaves(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "auto"
    first = interrupted(folder, random_splits(), epochs=1, planned=1, token="000001")
    for i, token in enumerate(("000002", "000003")):
        copy = folder / f"{dead_id(token)}.pt"
        copy.write_bytes(first.read_bytes())
        os.utime(copy, (time.time() + i + 1, time.time() + i + 1))
    monkeypatch.setenv(autosave.AUTOSAVE_KEEP_ENV, "2")
    assert autosave.autosave_keep() == 2
    gone = autosave.prune(folder, keep=autosave.autosave_keep())
    assert gone == [first] and len(interrupted_runs(folder)) == 2
    monkeypatch.setenv(autosave.AUTOSAVE_KEEP_ENV, "-3")
    with pytest.raises(ValueError, match="VAE_AUTOSAVE_KEEP must be a whole number >= 0"):
        autosave.autosave_keep()


def test_a_failing_autosave_never_stops_training(tmp_path: Path) -> None:
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    run = TrainingRun(TINY, TrainConfig(epochs=2, **CPU), data=random_splits(), autosave=Autosaver(blocked))
    snap = _wait(run.start())
    assert snap.status == "finished" and len(snap.history) == 2
    assert snap.autosave_error is not None and snap.autosave_error.startswith(
        ("FileExistsError", "NotADirectory")
    )


def test_writes_are_spaced_by_their_cost_and_the_last_epoch_is_always_saved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(autosave, "AUTOSAVE_TIME_SHARE", 1e-9)  # as if each write took ages
    run = TrainingRun(TINY, TrainConfig(epochs=4, **CPU), data=random_splits(), autosave=Autosaver(tmp_path))
    assert _wait(run.start()).status == "finished"
    assert read_info(run.autosave.path).epochs == 4  # epochs 2 and 3 were skipped, the last forced
    assert run.autosave.epochs_saved == 4


def test_autosave_folder_follows_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(autosave.AUTOSAVE_DIR_ENV, raising=False)
    assert autosave.autosave_dir(tmp_path) == tmp_path / ".autosave"
    monkeypatch.setenv(autosave.AUTOSAVE_DIR_ENV, str(tmp_path / "elsewhere"))
    assert autosave.autosave_dir(tmp_path) == tmp_path / "elsewhere"
    assert autosave.age_text(100.0, now=100.0 + 150) == "2 min ago"


CHILD = """
import sys, time
import torch
torch.set_num_threads(1)
from vae_core.autosave import Autosaver
from vae_core.config import ModelConfig, TrainConfig
from vae_core.runs import TrainingRun
from vae_core.saving import save_checkpoint
from vae_core.timeline import TimelineRecorder
from vae_core.training import fit

run = TrainingRun(
    # Epochs of ~0.2 s, far longer than a write (~10 ms): every epoch is autosaved.
    ModelConfig(arch="mlp", latent_dim=2, hidden=(256,)),
    TrainConfig(dataset="digits", epochs=10_000, batch_size=16, device="cpu"),
    autosave=Autosaver(sys.argv[1]),
).start()
seen = 0
while run.alive:
    done = len(run.snapshot().history)
    if done != seen:
        print(done, flush=True)
        seen = done
    time.sleep(0.005)
print("ended", run.snapshot().error, flush=True)
"""


def test_sigkill_mid_run_leaves_a_loadable_autosave_at_most_one_epoch_behind(tmp_path: Path) -> None:
    folder = tmp_path / ".autosave"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(folder)], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        printed = 0
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # wait until the file itself holds two epochs
            line = child.stdout.readline()
            assert line and not line.startswith("ended"), f"the training process ended early: {line!r}"
            printed = int(line)
            files = list(folder.glob("*.pt"))
            if files and read_info(files[0]).epochs >= 2:
                break
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        printed = max([printed] + [int(n) for n in child.stdout.read().split() if n.isdigit()])
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL
    [item] = interrupted_runs(folder)  # its process is gone: interrupted
    loaded = load_checkpoint(item.path)
    assert loaded.info.epochs >= 2 and loaded.info.epochs >= printed - 1, (loaded.info.epochs, printed)
    assert loaded.info.dataset == "digits" and item.epochs_planned == 10_000
    # Adam's state of the saved epoch travels with it, so a resume from the autosave continues exactly.
    assert loaded.train_state is not None
    steps = loaded.info.history[-1]["steps"]
    assert loaded.train_state.step == steps and steps % loaded.info.epochs == 0 and steps > 0
    assert loaded.train_state.optimizer["state"], "Adam's moments are saved, not a fresh optimizer"
    # No half-written file remains: only the autosave, which loaded above.
    assert [p.name for p in folder.iterdir()] == [item.path.name]
