"""Resume: checkpoints carry the optimizer state and step count safely; fit continues without a jump."""

from __future__ import annotations

import threading
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from tests.helpers import TINY, random_splits, tiny_model
from vae_core.checkpoints import load_checkpoint, read_info
from vae_core.config import ModelConfig, TrainConfig
from vae_core.datasets import load_dataset
from vae_core.model import VAE
from vae_core.safeload import CheckpointError
from vae_core.saving import save_checkpoint
from vae_core.train_state import TrainState, load_into, train_state_payload
from vae_core.training import fit, make_optimizer

CONV = ModelConfig(arch="conv", latent_dim=3, channels=(8, 16))


def _stepped_state(config: ModelConfig = TINY, steps: int = 3) -> tuple[torch.nn.Module, TrainState]:
    """Return a model and its Adam state after a few real steps."""
    model = tiny_model(config)
    optimizer = make_optimizer(model, lr=2e-3)
    for _ in range(steps):
        out = model(torch.rand(4, *config.image_shape))
        optimizer.zero_grad()
        out.logits.square().mean().backward()
        optimizer.step()
    return model, TrainState(optimizer.state_dict(), steps)


def _save(path: Path, model, state: TrainState | None) -> Path:
    return save_checkpoint(
        path,
        model=model,
        train_config=TrainConfig(dataset="random"),
        dataset="random",
        history=[],
        train_state=state,
    )


@pytest.mark.parametrize("config", [TINY, CONV], ids=["mlp", "conv"])
def test_the_train_state_round_trips_and_loads_into_a_fresh_optimizer(tmp_path: Path, config: ModelConfig):
    model, state = _stepped_state(config)
    loaded = load_checkpoint(_save(tmp_path / "m.pt", model, state))
    assert loaded.train_state is not None
    assert loaded.train_state.step == 3
    saved, back = state.optimizer, loaded.train_state.optimizer
    assert back["param_groups"][0]["lr"] == pytest.approx(2e-3)
    assert set(back["state"]) == set(saved["state"])  # int keys again, as the optimizer wrote them
    for index, entry in saved["state"].items():
        for key, value in entry.items():
            assert torch.equal(back["state"][index][key], value), (index, key)
    # It loads into the optimizer of a fresh copy of the model and the next step matches the original's.
    fresh = tiny_model(config)
    fresh.load_state_dict(model.state_dict())
    optimizer = make_optimizer(fresh, lr=1.0)
    load_into(optimizer, loaded.train_state, lr=2e-3)
    original = make_optimizer(model, lr=2e-3)
    original.load_state_dict(state.optimizer)
    x = torch.rand(4, *config.image_shape)
    for net, opt in ((model, original), (fresh, optimizer)):
        torch.manual_seed(5)
        opt.zero_grad()
        net(x).logits.square().mean().backward()
        opt.step()
    for a, b in zip(model.parameters(), fresh.parameters()):
        torch.testing.assert_close(a, b)


def test_old_checkpoints_without_a_train_state_load_with_none(tmp_path: Path):
    model, _ = _stepped_state()
    path = _save(tmp_path / "old.pt", model, None)
    payload = torch.load(path, weights_only=True)
    del payload["train_state"]  # exactly what files written before this field look like
    torch.save(payload, path)
    assert load_checkpoint(path).train_state is None
    assert read_info(path).epochs == 0


def _tamper(path: Path, change) -> Path:
    payload = torch.load(path, weights_only=True)
    change(payload["train_state"])
    torch.save(payload, path)
    return path


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda t: t["optimizer"]["state"].update({"99": t["optimizer"]["state"]["0"]}), "parameter '99'"),
        (
            lambda t: t["optimizer"]["state"]["0"].update(exp_avg=torch.zeros(3)),
            "exp_avg of parameter 0 has shape",
        ),
        (
            lambda t: t["optimizer"]["state"]["1"].update(exp_avg_sq=torch.full((32,), -1.0)),
            "impossible negative",
        ),
        (lambda t: t["optimizer"]["state"]["1"].update(exp_avg=torch.full((32,), float("nan"))), "NaN"),
        (lambda t: t["optimizer"]["state"]["0"].update(payload="hi"), "must hold only"),
        (lambda t: t["optimizer"]["param_groups"][0].update(params=[0, 1]), "the model has 10"),
        (lambda t: t["optimizer"]["param_groups"][0].update(lr=-1.0), "positive number"),
        (lambda t: t["optimizer"]["param_groups"][0].update(eps=torch.ones(1000)), "'eps'"),
        (lambda t: t.update(step=-4), "step count"),
        (lambda t: t.update(extra=1), "exactly 'step' and 'optimizer'"),
    ],
    ids=[
        "unknown-param",
        "wrong-shape",
        "negative",
        "nan",
        "extra-key",
        "groups",
        "lr",
        "tensor-setting",
        "step",
        "extra-field",
    ],
)
def test_a_hostile_or_broken_optimizer_entry_is_refused_with_a_clear_message(
    tmp_path: Path, change, match: str
):
    model, state = _stepped_state()
    path = _tamper(_save(tmp_path / "bad.pt", model, state), change)
    with pytest.raises(CheckpointError, match="optimizer state") as err:
        load_checkpoint(path)
    assert match in str(err.value)
    with pytest.raises(CheckpointError, match="optimizer state"):
        read_info(path)


def test_an_optimizer_entry_that_pickles_code_never_runs(tmp_path: Path):
    model, state = _stepped_state()
    path = _save(tmp_path / "evil.pt", model, state)

    class Boom:
        def __reduce__(self):
            return (print, ("this must never print",))

    payload = torch.load(path, weights_only=True)
    payload["train_state"]["optimizer"]["param_groups"][0]["betas"] = Boom()
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(path)
    with zipfile.ZipFile(path) as archive:  # the file really does name a callable
        assert any(b"print" in archive.read(n) for n in archive.namelist() if n.endswith("data.pkl"))


def test_save_refuses_something_that_is_not_a_train_state():
    with pytest.raises(ValueError, match="TrainState"):
        train_state_payload({"optimizer": {}, "step": 1})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="step"):
        train_state_payload(TrainState({"state": {}, "param_groups": []}, -1))


def test_a_sliced_moment_tensor_saves_only_its_own_numbers(tmp_path: Path):
    model, state = _stepped_state()
    big = torch.zeros(1_000_000)  # 4 MB behind a 32-number view
    state.optimizer["state"][1]["exp_avg"] = big[:32]  # a view of a larger storage
    path = _save(tmp_path / "view.pt", model, state)
    assert load_checkpoint(path).train_state.optimizer["state"][1]["exp_avg"].shape == (32,)
    assert path.stat().st_size < 1_000_000


def test_fit_resumes_without_a_jump_where_a_fresh_optimizer_jumps():
    # Issue 11: resuming restarted Adam from zero and test -ELBO jumped from 142.5 to 158.3. A fresh Adam's
    # first update moves every weight by lr (m_hat / sqrt(v_hat) = sign(g)); the saved state's is far smaller.
    data = load_dataset("digits")
    config = ModelConfig(arch="mlp", latent_dim=4, hidden=(256,))
    train = TrainConfig(dataset="digits", epochs=10, batch_size=64, lr=3e-3, device="cpu")
    torch.manual_seed(0)
    model = VAE(config)
    first = fit(model, data, train)
    assert first.state.step == 10 * 24 and first.history[-1]["steps"] == 240
    weights = {k: v.clone() for k, v in model.state_dict().items()}

    def resume(state: TrainState | None) -> tuple[list[dict], list[float], list[float]]:
        again = VAE(config)
        again.load_state_dict(weights)
        losses: list[float] = []
        moved: list[float] = []

        def on_step(info) -> None:
            losses.append(info.total)
            if info.step == 1:
                deltas = torch.cat([(p - weights[n]).abs().flatten() for n, p in again.named_parameters()])
                moved.extend([deltas.max().item(), deltas.mean().item()])

        result = fit(
            again, data, replace(train, epochs=1), history=first.history, resume=state, on_step=on_step
        )
        # Without a state the earlier steps are unknown: the count starts again (old checkpoints).
        assert result.state.step == (240 if state else 0) + 24
        assert [r["epoch"] for r in result.history] == list(range(1, 12))
        return result.history, losses, moved

    exact, exact_losses, exact_move = resume(first.state)
    fresh, fresh_losses, fresh_move = resume(None)
    last = first.history[-1]["train_total"]
    # Exact: the first resumed epoch goes on from the last one (a little lower, within noise).
    assert last * 0.97 < exact[-1]["train_total"] < last * 1.005, (last, exact[-1]["train_total"])
    # Fresh: the same batches and the same noise, but every weight jumps by lr on the first step ...
    assert fresh_move[0] == pytest.approx(train.lr, rel=0.01)
    assert fresh_move[1] > 3 * exact_move[1], (fresh_move, exact_move)  # mean |change| of a weight
    # ... and the loss jumps over the next steps, where the exact resume's does not.
    jump = sum(f - e for f, e in zip(fresh_losses[1:6], exact_losses[1:6])) / 5
    assert jump > 1.0, (fresh_losses[:6], exact_losses[:6])  # 5.0 nats when measured
    assert exact_losses[0] == pytest.approx(fresh_losses[0])  # the same start: only the optimizer differs


def test_a_stopped_run_returns_the_optimizer_state_of_its_last_complete_epoch():
    data = random_splits(n_train=128, n_test=32)
    train = TrainConfig(dataset="random", epochs=3, batch_size=32, device="cpu")
    model = tiny_model()
    stop = threading.Event()

    def on_epoch(record, trained) -> None:
        if record["epoch"] == 2:
            stop.set()  # the next step sees it: epoch 3 is rolled back

    result = fit(model, data, train, stop=stop, on_epoch=on_epoch)
    assert result.stopped and len(result.history) == 2
    assert result.state.step == 2 * 4
    steps = {int(entry["step"]) for entry in result.state.optimizer["state"].values()}
    assert steps == {8}  # Adam's own count agrees: the state after epoch 2, not a partial epoch 3


def test_the_kl_warm_up_counts_from_the_first_epoch_ever_trained():
    data = random_splits(n_train=64, n_test=16)
    train = TrainConfig(dataset="random", epochs=2, batch_size=32, kl_warmup_epochs=4, device="cpu")
    model = tiny_model()
    first = fit(model, data, train)
    more = fit(model, data, train, history=first.history, resume=first.state)
    weights = [r["kl_weight"] for r in more.history]
    # The weight after each epoch's last step: (epoch - 1 + 1/2) / 4, never restarting at 0 on resume.
    assert weights == pytest.approx([0.125, 0.375, 0.625, 0.875])


def test_a_state_saved_by_another_implementation_loads_with_this_machines_flags():
    model, state = _stepped_state()
    for group in state.optimizer["param_groups"]:
        group.update(fused=None, foreach=True, capturable=True)  # as a GPU's foreach Adam might save it
    optimizer = make_optimizer(model, lr=1.0)
    fresh = {k: optimizer.param_groups[0][k] for k in ("fused", "foreach", "capturable")}
    load_into(optimizer, state, lr=2e-3)
    assert {k: optimizer.param_groups[0][k] for k in fresh} == fresh
    assert optimizer.param_groups[0]["lr"] == 2e-3 and optimizer.param_groups[0]["betas"] == (0.9, 0.999)
    model(torch.rand(4, 1, 28, 28)).logits.square().mean().backward()
    optimizer.step()  # it steps with the loaded moments
    assert int(optimizer.state_dict()["state"][0]["step"]) == 4
