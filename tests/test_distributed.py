"""Data-parallel training: torchrun with 2 CPU processes (gloo) matches one process; rank 0 alone logs and saves."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from vae_core.checkpoints import load_checkpoint
from vae_core.cli import main
from vae_core.distributed import Parallel, backend_for

REPO_ROOT = Path(__file__).resolve().parents[1]
EPOCHS = 6
TRAIN = [
    "train", "--dataset", "digits", "--arch", "mlp", "--latent-dim", "4", "--hidden", "64",
    "--epochs", str(EPOCHS), "--batch-size", "64", "--lr", "2e-3", "--nll-k", "0", "--device", "cpu",
]  # fmt: skip


@pytest.mark.slow  # three processes start torch; about 20 s
def test_two_processes_match_one_and_only_rank_0_logs_and_saves(tmp_path: Path, capsys):
    single = tmp_path / "single" / "model.pt"
    assert main([*TRAIN, "--out", str(single)]) == 0
    capsys.readouterr()

    folder = tmp_path / "ddp"
    folder.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1", "--nproc_per_node", "2",
        "-m", "vae_core", *TRAIN, "--out", str(folder / "model.pt"),
    ]  # fmt: skip
    run = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "terminate called" not in run.stderr and "Traceback" not in run.stderr, run.stderr[-3000:]

    # One log: each epoch's line, the start line and the save line appear once, not once per process.
    lines = run.stdout.splitlines()
    for epoch in range(1, EPOCHS + 1):
        assert sum(line.startswith(f"epoch {epoch:>3}/{EPOCHS}") for line in lines) == 1, run.stdout
    assert sum("2 processes" in line for line in lines) == 1
    assert sum(line.startswith("saved ") for line in lines) == 1
    # One checkpoint, in the same format, and nothing else written (no fallback, no second copy).
    assert sorted(p.name for p in folder.rglob("*") if p.is_file()) == ["model.pt"]
    one, two = load_checkpoint(single), load_checkpoint(folder / "model.pt")
    assert two.info.epochs == one.info.epochs == EPOCHS and two.train_state is not None
    # The global batch is split across the processes: the same number of optimisation steps.
    assert two.train_state.step == one.train_state.step == EPOCHS * 24
    # The same result within noise (different shuffles and noise draws, so not bit for bit).
    a, b = one.info.metrics["test_total"], two.info.metrics["test_total"]
    assert abs(a - b) / a < 0.04, (a, b)
    assert abs(one.info.history[-1]["train_total"] - two.info.history[-1]["train_total"]) / a < 0.04
    # Both trained well past the start, so the comparison means something.
    assert two.info.history[-1]["val_total"] < 0.9 * two.info.history[0]["val_total"]


def test_each_process_takes_its_share_of_the_global_batch_and_of_every_epoch():
    ranks = [Parallel(rank=r, world_size=3, local_rank=r) for r in range(3)]
    assert [p.local_batch(128) for p in ranks] == [43, 43, 43]
    assert ranks[0].local_batch(1) == 1
    shares = []
    for p in ranks:
        sampler = p.sampler(10, seed=0)
        sampler.set_epoch(2)
        shares.append(list(sampler))
    assert set(i for share in shares for i in share) == set(range(10))  # every index appears ...
    assert all(len(share) == 4 for share in shares)  # ... padded to equal shares of ceil(10 / 3)
    sampler = ranks[0].sampler(10, seed=0)
    sampler.set_epoch(3)
    assert list(sampler) != shares[0]  # set_epoch reshuffles


def test_the_backend_is_gloo_on_cpu_and_nccl_only_with_a_gpu():
    assert backend_for("cpu") == "gloo"
    assert backend_for("auto") == ("nccl" if torch.cuda.is_available() else "gloo")


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA GPUs for a 2-process NCCL run")
def test_two_gpu_processes_train_over_nccl(tmp_path: Path):
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "vae_core", *TRAIN[:-2], "--device", "cuda", "--out", str(tmp_path / "gpu.pt"),
    ]  # fmt: skip
    run = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert load_checkpoint(tmp_path / "gpu.pt").info.epochs == EPOCHS
