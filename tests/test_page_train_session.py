"""Issue 11 on the Train page: runs found again by URL, a form that remembers, epochs that fit the data, β shown."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest

from tests.app_support import app_test, assert_no_exception, select_model
from tests.helpers import random_splits, tiny_model
from tests.test_page_train import TRAIN, finish, start, texts
from vae_core.bundle import save_trained
from vae_core.config import ModelConfig, TrainConfig
from vae_core.datasets import load_dataset
from vae_core.defaults import MIN_STEPS, PAGE_DEFAULTS, suggested_epochs
from vae_core.runs import TrainingRun

HOME, COMPARE = "vae_app/views/home.py", "vae_app/views/compare.py"


@pytest.fixture
def folder(app_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private checkpoint folder with the tiny models and a β = 4 model with KL warm-up."""
    own = tmp_path / "checkpoints"
    own.mkdir()
    for path in app_env.glob("*.pt"):
        shutil.copy(path, own / path.name)
    data = random_splits(n_train=64, n_test=32)
    config = ModelConfig(latent_dim=2, arch="mlp", hidden=(16,), beta=4.0)
    model = tiny_model(config)
    from vae_core.training import fit

    train = TrainConfig(dataset="random", epochs=2, batch_size=32, kl_warmup_epochs=1, device="cpu")
    history = fit(model, data, train).history
    save_trained(
        own / "beta-four.pt", model=model, data=data, train_config=train, history=history, sample_size=32
    )
    monkeypatch.setenv("VAE_CHECKPOINT_DIR", str(own))
    return own


def test_a_new_session_with_the_run_in_its_url_reattaches_to_the_run(folder: Path) -> None:
    at = app_test(TRAIN)
    start(at, epochs=2)
    run = at.session_state["train_run"]
    run_id = at.query_params["run"][0] if isinstance(at.query_params["run"], list) else at.query_params["run"]
    assert run_id == at.session_state["train_run_id"] and len(run_id) == 12

    # A reload is a new session: it knows the run only from the URL.
    reloaded = app_test()
    reloaded.query_params["run"] = run_id
    reloaded.run()
    reloaded.switch_page(TRAIN).run()
    assert_no_exception(reloaded)
    assert reloaded.session_state["train_run"] is run
    finish(reloaded)
    assert "Finished: 2 epochs trained" in texts(reloaded.success)
    assert reloaded.text_input(key="train_save_name").value  # it can still be saved

    lost = app_test()
    lost.query_params["run"] = "no-such-run0"
    lost.run()
    lost.switch_page(TRAIN).run()
    assert_no_exception(lost)
    assert "no longer on the server" in texts(lost.warning)
    assert lost.session_state["train_run"] is None


def test_the_form_keeps_its_values_when_the_user_visits_another_page(folder: Path) -> None:
    at = app_test(TRAIN)
    values = {"train_latent": 2, "train_epochs": 10, "train_beta": 4.0, "train_batch": 64, "train_warmup": 3}
    for key, value in values.items():
        at.number_input(key=key).set_value(value)
    at.radio(key="train_arch").set_value("conv")
    at.text_input(key="train_channels").set_value("8, 16")
    at.run()
    at.switch_page(HOME).run()
    at.run()  # Streamlit drops the Train page's widget state on the run after leaving it
    assert "train_latent" not in at.session_state
    at.switch_page(TRAIN).run()
    assert_no_exception(at)
    for key, value in values.items():
        assert at.number_input(key=key).value == value, key
    assert at.radio(key="train_arch").value == "conv"
    assert at.text_input(key="train_channels").value == "8, 16"


def test_epochs_follow_the_dataset_size_until_the_user_chooses_a_number(folder: Path) -> None:
    at = app_test(TRAIN)
    assert at.selectbox(key="train_dataset").value == PAGE_DEFAULTS.dataset
    n = len(load_dataset("digits").train_x)
    expected = suggested_epochs(n, batch_size=PAGE_DEFAULTS.batch_size)
    assert at.number_input(key="train_epochs").value == expected
    assert f"{n:,} training images" in texts(at.caption) and f"at least {MIN_STEPS} steps" in texts(
        at.caption
    )

    at.number_input(key="train_batch").set_value(32).run()
    smaller = suggested_epochs(n, batch_size=32)
    assert at.number_input(key="train_epochs").value == smaller
    assert f"Epochs changed from {expected} to {smaller}" in texts(at.caption)

    at.number_input(key="train_epochs").set_value(3).run()
    at.number_input(key="train_batch").set_value(128).run()
    assert at.number_input(key="train_epochs").value == 3  # the user's own number stays
    assert "you chose 3" in texts(at.caption)


def test_a_run_chooses_its_epochs_for_the_images_it_loads_and_reports_time_and_steps() -> None:
    data = random_splits(n_train=100, n_test=16)
    train = TrainConfig(dataset="random", epochs=50, batch_size=32, device="cpu")
    run = TrainingRun(
        tiny_model().config,
        train,
        data=data,
        epochs_for=lambda n: (n // 50, f"{n // 50} epochs for {n} images"),
    )
    run.start()
    assert run.join(60)
    snap = run.snapshot()
    assert snap.status == "finished" and snap.epochs == 2 and len(snap.history) == 2
    assert snap.epochs_note == "2 epochs for 100 images" and run.train_config.epochs == 2
    assert snap.steps == 2 * 4 and snap.seconds > 0
    assert snap.seconds == run.snapshot().seconds  # the clock stops when the run ends
    assert run.ended and not run.alive


def test_the_running_runs_settings_are_shown(folder: Path) -> None:
    at = app_test(TRAIN)
    at.number_input(key="train_beta").set_value(2.5)
    start(at, epochs=1)
    finish(at)
    shown = texts(at.markdown)
    assert "**latent dimensions**: 2" in shown and "**batch size**: 256" in shown
    assert "β = 2.5" in shown and "not the ELBO" in shown


def test_beta_and_the_objective_are_shown_for_a_saved_model(folder: Path) -> None:
    at = app_test(HOME)
    select_model(at, folder / "beta-four.pt")
    assert "β = 4 · KL warm-up 1 epoch" in texts(at.caption)
    assert "loss = reconstruction + β·KL with **β = 4**" in texts(at.markdown)
    assert "Training maximizes the evidence lower bound" not in texts(at.markdown)

    at.switch_page(COMPARE).run()
    at.selectbox(key="compare_a").set_value(str(folder / "beta-four.pt")).run()
    at.selectbox(key="compare_b").set_value(str(folder / "tiny-mlp-2.pt")).run()
    assert_no_exception(at)
    table = at.table[0].value
    row = table.loc["KL weight (trained with)"].tolist()
    assert row == ["β = 4 · KL warm-up 1 epoch", "β = 1"]
    overlay = [c for c in at.get("plotly_chart") if c.key == "compare_history"]
    assert len(overlay) == 1


def test_a_second_run_suggests_a_fresh_save_name(folder: Path) -> None:
    at = app_test(TRAIN)
    start(at, epochs=1)
    finish(at)
    first = at.text_input(key="train_save_name").value
    at.button(key="train_save").click().run()
    assert "Saved to" in texts(at.success)
    start(at, epochs=1)
    finish(at)
    second = at.text_input(key="train_save_name").value
    assert second != first and not (folder / f"{second}.pt").exists()


def test_an_abandoned_run_stops_even_after_a_reattach(monkeypatch: pytest.MonkeyPatch) -> None:
    import vae_core.runs
    from vae_core.registry import RunRegistry

    monkeypatch.setattr(vae_core.runs, "KEEP_GOING_CHECK_S", 0.0)
    registry, tabs = RunRegistry(), {"old": True, "new": True}
    config = TrainConfig(dataset="random", epochs=10_000, batch_size=32, device="cpu")
    run = TrainingRun(
        tiny_model().config, config, data=random_splits(), keep_going=lambda: registry.wanted("r")
    )
    registry.add("r", run, label="", watcher_key="old", watcher=lambda: tabs["old"])
    run.start()
    try:
        registry.attach("r", watcher_key="new", watcher=lambda: tabs["new"])
        tabs["old"] = False  # the reloaded tab's old session is gone; the new one watches
        threading.Event().wait(0.3)
        assert not run.snapshot().done
        tabs["new"] = False  # now nobody watches
        assert run.join(30)
        assert "abandoned" in run.snapshot().message
        registry.prune()
        assert registry.get("r") is None  # dropped at once: its autosave becomes an unsaved run
    finally:
        run.stop()
        run.join(30)


def test_progress_moves_within_an_epoch() -> None:
    data = random_splits(n_train=4096, n_test=16)
    train = TrainConfig(dataset="random", epochs=1, batch_size=8, device="cpu")  # 512 steps in one epoch
    run = TrainingRun(tiny_model().config, train, data=data).start()
    try:
        seen = []
        while not run.snapshot().done and len(seen) < 3:
            snap = run.snapshot()
            if snap.status == "running" and 0 < snap.step < snap.steps_per_epoch and not snap.history:
                if not seen or snap.step > seen[-1].step:
                    seen.append(snap)
            threading.Event().wait(0.005)
        assert len(seen) == 3, "no progress was reported inside the epoch"
        assert all(s.steps_per_epoch == 512 and s.steps == s.step for s in seen)
        assert 0 < seen[0].progress < seen[-1].progress < 1
    finally:
        run.stop()
        run.join(30)


def test_continuing_a_saved_model_carries_adams_state_through_the_app(folder: Path) -> None:
    from vae_core.checkpoints import load_checkpoint

    at = app_test(TRAIN)
    start(at, epochs=2)
    run = finish(at)
    per_epoch = run.snapshot().steps_per_epoch
    at.text_input(key="train_save_name").set_value("first")
    at.button(key="train_save").click().run()
    saved = load_checkpoint(folder / "first.pt")
    assert saved.train_state is not None and saved.train_state.step == 2 * per_epoch

    start(at, resume=True, epochs=1)  # the saved model is now the current one
    resumed = finish(at)
    assert resumed._resume is not None and resumed._resume.step == 2 * per_epoch
    assert resumed.train_state.step == 3 * per_epoch
    at.text_input(key="train_save_name").set_value("second")
    at.button(key="train_save").click().run()
    assert load_checkpoint(folder / "second.pt").train_state.step == 3 * per_epoch
    autosaves = list((folder.parent / "autosave").glob("*.pt"))
    assert autosaves == []  # both saved for good


def test_a_resumed_run_continues_where_an_uninterrupted_one_would_be() -> None:
    from dataclasses import replace

    data = random_splits(n_train=128, n_test=32)
    config = tiny_model().config
    train = TrainConfig(dataset="random", epochs=3, batch_size=32, device="cpu")

    def trained(run: TrainingRun) -> TrainingRun:
        run.start()
        assert run.join(60) and run.snapshot().status == "finished"
        return run

    straight = trained(TrainingRun(config, train, data=data))
    first = trained(TrainingRun(config, replace(train, epochs=2), data=data))
    weights = {k: t.clone() for k, t in first.model.state_dict().items()}
    history = first.snapshot().history

    def resumed(state) -> TrainingRun:
        more = replace(train, epochs=1)
        return trained(
            TrainingRun(config, more, data=data, init_state=weights, history=history, train_state=state)
        )

    def distance(run: TrainingRun) -> float:
        theirs = run.model.state_dict()
        return max((t - theirs[k]).abs().max().item() for k, t in straight.model.state_dict().items())

    exact, fresh = resumed(first.train_state), resumed(None)
    assert exact.train_state.step == straight.train_state.step == 3 * 4
    # Not bit-equal (the reparameterisation noise is drawn afresh), but far closer than a restarted Adam.
    assert distance(exact) < distance(fresh) / 2


def test_the_summary_counts_earlier_steps_of_a_continued_model() -> None:
    from vae_app.train_run import summary_text
    from vae_core.runs import RunSnapshot

    def snap(steps: int, history: tuple) -> RunSnapshot:
        return RunSnapshot(
            "finished", 2, 2, 4, 4, history, None, None, None, (), None, None, "", seconds=135.5, steps=steps
        )

    assert (
        summary_text(snap(8, ({"epoch": 2, "steps": 8},))) == "2 min 15 s of training · 8 optimisation steps"
    )
    assert summary_text(snap(8, ({"epoch": 5, "steps": 20},))).endswith("8 optimisation steps (20 in all)")


def test_continuing_a_model_names_the_batch_size_and_rate_it_was_trained_with(folder: Path) -> None:
    at = app_test(TRAIN)
    select_model(at, folder / "beta-four.pt")  # trained at batch 32, lr 1e-3
    at.checkbox(key="train_resume").check().run()
    assert_no_exception(at)
    hint = "It was trained at batch size 32 and learning rate 0.001"
    assert hint in texts(at.caption)
    at.number_input(key="train_batch").set_value(32).run()
    assert hint not in texts(at.caption)  # the same settings: nothing to say
