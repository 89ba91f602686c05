"""The training loop and the background run: learning, stopping, NaN handling, resuming."""

import threading
import time

import pytest
import torch

from tests.helpers import TINY, random_splits, tiny_model
from vae_core.config import ModelConfig, TrainConfig
from vae_core.runs import MAX_CONCURRENT_RUNS, RunCapacityError, TrainingRun
from vae_core.training import PROBE_EVERY_S, PROBE_STEPS, NonFiniteLossError, ThreadTuner, fit, select_device

CPU = dict(dataset="random", device="cpu", batch_size=32)


def test_fit_lowers_the_loss_and_records_history():
    data = random_splits()
    model = tiny_model()
    result = fit(model, data, TrainConfig(epochs=4, seed=0, **CPU))
    history = result.history
    assert [r["epoch"] for r in history] == [1, 2, 3, 4]
    assert history[-1]["val_total"] < history[0]["val_total"]
    for r in history:
        assert r["train_total"] == pytest.approx(r["train_recon"] + r["train_kl"])
        assert r["val_total"] == pytest.approx(r["val_recon"] + r["val_kl"])
        assert r["images_per_second"] > 0
    assert not result.stopped and not model.training


def test_fit_is_seeded():
    data = random_splits()
    a, b = tiny_model(seed=1), tiny_model(seed=1)
    ha = fit(a, data, TrainConfig(epochs=2, seed=5, **CPU)).history
    hb = fit(b, data, TrainConfig(epochs=2, seed=5, **CPU)).history
    assert ha[-1]["val_total"] == hb[-1]["val_total"]


def test_fit_calls_step_and_epoch_callbacks():
    steps, epochs = [], []
    fit(
        tiny_model(),
        random_splits(n_train=100),
        TrainConfig(epochs=2, **CPU),
        on_step=steps.append,
        on_epoch=lambda r, m: epochs.append(r["epoch"]),
    )
    assert len(steps) == 2 * 4 and steps[-1].step == 4 and steps[-1].steps_per_epoch == 4
    assert epochs == [1, 2]


def test_fit_hands_over_the_optimizer_state_after_every_epoch():
    states, order = [], []
    result = fit(
        tiny_model(),
        random_splits(n_train=100),
        TrainConfig(epochs=2, **CPU),
        on_state=lambda state: (states.append(state), order.append("state")),
        on_epoch=lambda r, m: order.append("epoch"),
    )
    assert [s.step for s in states] == [4, 8] == [r["steps"] for r in result.history]
    assert order == ["state", "epoch", "state", "epoch"]  # a saver in on_epoch already has the state
    assert states[-1].step == result.state.step
    for name, value in result.state.optimizer["state"][0].items():  # the last one is fit's final state
        assert torch.equal(torch.as_tensor(value), torch.as_tensor(states[-1].optimizer["state"][0][name]))


def test_kl_warmup_ramps_the_recorded_weight():
    history = fit(tiny_model(), random_splits(), TrainConfig(epochs=3, kl_warmup_epochs=4, **CPU)).history
    weights = [r["kl_weight"] for r in history]
    assert weights == sorted(weights) and weights[-1] < 1.0 and weights[0] > 0


def test_a_nan_loss_stops_the_run_and_restores_the_last_good_epoch():
    data = random_splits()
    model = tiny_model()
    fit(model, data, TrainConfig(epochs=1, **CPU))
    good = {k: v.clone() for k, v in model.state_dict().items()}
    calls = {"n": 0}

    def poison(info):
        calls["n"] += 1
        if calls["n"] == 3:
            with torch.no_grad():
                model.to_mu.weight.fill_(float("nan"))

    with pytest.raises(NonFiniteLossError, match="non-finite|nan|became"):
        fit(model, data, TrainConfig(epochs=2, **CPU), on_step=poison)
    for key, value in model.state_dict().items():
        assert torch.equal(value, good[key]), key


def test_stop_mid_epoch_keeps_the_last_completed_epoch():
    data = random_splits(n_train=320)
    model = tiny_model()
    stop = threading.Event()
    states = []

    def on_epoch(record, m):
        states.append({k: v.clone() for k, v in m.state_dict().items()})

    def on_step(info):
        if info.epoch == 2 and info.step == 3:
            stop.set()

    result = fit(model, data, TrainConfig(epochs=5, **CPU), on_step=on_step, on_epoch=on_epoch, stop=stop)
    assert result.stopped and len(result.history) == 1
    for key, value in model.state_dict().items():
        assert torch.equal(value, states[0][key])


def test_fit_continues_a_history():
    data = random_splits()
    model = tiny_model()
    first = fit(model, data, TrainConfig(epochs=2, **CPU)).history
    more = fit(model, data, TrainConfig(epochs=2, **CPU), history=first).history
    assert [r["epoch"] for r in more] == [1, 2, 3, 4] and more[:2] == first


def test_fit_rejects_data_of_the_wrong_shape():
    with pytest.raises(ValueError, match="expects"):
        fit(tiny_model(), random_splits(shape=(3, 32, 32)), TrainConfig(epochs=1, **CPU))


def test_select_device():
    assert select_device("cpu").type == "cpu"
    assert select_device("auto").type in ("cpu", "cuda", "mps")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA"):
            select_device("cuda")


def _wait(run, timeout=60):
    deadline = time.monotonic() + timeout
    while not run.snapshot().done and time.monotonic() < deadline:
        time.sleep(0.05)
    return run.snapshot()


def test_training_run_finishes_in_the_background_with_previews_and_timeline():
    run = TrainingRun(TINY, TrainConfig(epochs=2, **CPU), data=random_splits()).start()
    snap = _wait(run)
    assert snap.status == "finished", snap.error
    assert len(snap.history) == 2 and snap.progress == 1.0
    assert snap.reconstructions.shape == snap.originals.shape == (8, 1, 28, 28)
    assert snap.samples.dtype.name == "uint8" and len(snap.samples) == 16
    assert [f.epoch for f in snap.timeline] == [1, 2] and snap.timeline[0].mu.shape == (64, 2)
    assert run.join(5) and not run.alive
    assert run.model is not None and not run.model.training


def test_training_run_stop_and_failure_are_reported():
    run = TrainingRun(TINY, TrainConfig(epochs=500, **CPU), data=random_splits()).start()
    while run.snapshot().epoch < 2:
        time.sleep(0.02)
    run.stop()
    snap = _wait(run)
    assert snap.status == "stopped" and len(snap.history) >= 1

    bad = TrainingRun(
        ModelConfig(arch="mlp", latent_dim=2, image_shape=(3, 32, 32), hidden=(8,)),
        TrainConfig(epochs=1, **CPU),
        data=random_splits(),
    ).start()
    snap = _wait(bad)
    assert snap.status == "failed" and "expects" in snap.error


def test_training_runs_are_capped():
    runs = [
        TrainingRun(TINY, TrainConfig(epochs=10_000, **CPU), data=random_splits()).start()
        for _ in range(MAX_CONCURRENT_RUNS)
    ]
    try:
        with pytest.raises(RunCapacityError, match="already going"):
            TrainingRun(TINY, TrainConfig(epochs=1, **CPU), data=random_splits()).start()
    finally:
        for run in runs:
            run.stop()
        for run in runs:
            assert run.join(30)
    # the slots are free again
    assert (
        _wait(TrainingRun(TINY, TrainConfig(epochs=1, **CPU), data=random_splits()).start()).status
        == "finished"
    )


def test_an_abandoned_run_stops_itself_and_frees_its_slot(monkeypatch):
    import vae_core.runs as training

    monkeypatch.setattr(training, "KEEP_GOING_CHECK_S", 0.0)
    wanted = {"yes": True}
    run = TrainingRun(
        TINY, TrainConfig(epochs=10_000, **CPU), data=random_splits(), keep_going=lambda: wanted["yes"]
    ).start()
    while run.snapshot().epoch < 2:
        time.sleep(0.02)
    wanted["yes"] = False
    snap = _wait(run)
    assert snap.status == "stopped" and "abandoned" in snap.message
    assert run.join(5)


def test_a_resumed_run_continues_the_history_and_the_timeline():
    data = random_splits()
    first = TrainingRun(TINY, TrainConfig(epochs=2, **CPU), data=data).start()
    assert _wait(first).status == "finished"
    earlier = first.timeline()
    assert [f.epoch for f in earlier.frames] == [1, 2]
    resumed = TrainingRun(
        TINY,
        TrainConfig(epochs=1, **CPU),
        data=data,
        init_state=first.model.state_dict(),
        history=first.snapshot().history,
        timeline=earlier,
    ).start()
    snap = _wait(resumed)
    assert snap.status == "finished", snap.error
    timeline = resumed.timeline()
    assert [f.epoch for f in timeline.frames] == [1, 2, 3] == [int(r["epoch"]) for r in snap.history]
    assert all(a.mu is b.mu for a, b in zip(timeline.frames[:2], earlier.frames, strict=True))
    assert [f.epoch for f in snap.timeline] == [1, 2, 3]
    assert timeline.labels.tolist() == earlier.labels.tolist()  # the same test images, followed further


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def _feed(tuner, seconds, steps):
    for _ in range(steps):
        tuner.step_done(seconds)


def test_the_thread_tuner_keeps_one_thread_when_it_is_faster(two_threads):
    tuner = ThreadTuner(torch.device("cpu"))
    _feed(tuner, 0.010, PROBE_STEPS)  # two threads, slow: a trial of one thread starts
    assert torch.get_num_threads() == 1
    _feed(tuner, 0.001, PROBE_STEPS + 1)  # the trial (its first step skipped) is faster
    assert torch.get_num_threads() == 1
    tuner.close()
    assert torch.get_num_threads() == 2


def test_the_thread_tuner_goes_back_when_the_trial_is_slower(two_threads):
    tuner = ThreadTuner(torch.device("cpu"))
    _feed(tuner, 0.001, PROBE_STEPS)
    assert torch.get_num_threads() == 1
    _feed(tuner, 0.010, PROBE_STEPS + 1)
    assert torch.get_num_threads() == 2 and tuner.interval == 2 * PROBE_EVERY_S  # tries less often
    _feed(tuner, 0.001, 3 * PROBE_STEPS)  # no new trial before the interval has passed
    assert torch.get_num_threads() == 2
    tuner.close()


def test_the_thread_tuner_is_off_when_it_must_not_change_results(two_threads):
    torch.use_deterministic_algorithms(True)
    try:
        tuner = ThreadTuner(torch.device("cpu"))
        _feed(tuner, 0.010, 3 * PROBE_STEPS)
        assert not tuner.active and torch.get_num_threads() == 2
        tuner.close()
    finally:
        torch.use_deterministic_algorithms(False)
    torch.set_num_threads(1)
    tuner = ThreadTuner(torch.device("cpu"))
    assert not tuner.active
    tuner.close()


def test_overlapping_runs_restore_the_thread_count_of_the_first(two_threads):
    a = ThreadTuner(torch.device("cpu"))
    _feed(a, 0.010, PROBE_STEPS)
    _feed(a, 0.001, PROBE_STEPS + 1)  # a settles on one thread
    assert torch.get_num_threads() == 1
    b = ThreadTuner(torch.device("cpu"))  # starts while one thread is set, still tunes against two
    assert b.active and b.original == 2
    a.close()
    assert torch.get_num_threads() == 1  # b still runs
    b.close()
    assert torch.get_num_threads() == 2


def test_fit_gives_the_same_results_whatever_the_thread_count(two_threads):
    data = random_splits()
    histories = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        histories.append(fit(tiny_model(seed=3), data, TrainConfig(epochs=2, seed=3, **CPU)).history)
        assert torch.get_num_threads() == threads  # fit leaves the caller's setting as it was
    assert [r["val_total"] for r in histories[0]] == [r["val_total"] for r in histories[1]]


def test_fit_reports_step_losses_lazily():
    infos = []
    fit(tiny_model(), random_splits(n_train=64), TrainConfig(epochs=1, **CPU), on_step=infos.append)
    info = infos[-1]
    assert info.losses.shape == (2,) and not info.losses.requires_grad
    assert info.total == pytest.approx(info.recon + info.kl) and info.kl > 0
