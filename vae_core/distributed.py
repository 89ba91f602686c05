"""Data-parallel training across processes and machines with PyTorch's DistributedDataParallel.

``torchrun --nproc_per_node N -m vae_core train ...`` starts N copies of the command line; each
finds its place from the environment torchrun sets (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR``/``MASTER_PORT``). ``process_group`` joins them (NCCL when the processes train on
CUDA GPUs, one GPU each, else gloo) and hands ``training.fit`` a ``Parallel``: it wraps the model in
``DistributedDataParallel`` (gradients averaged across processes after every backward pass), gives
each process its share of every epoch through ``DistributedSampler`` (reshuffled by ``set_epoch``),
and sums the epoch's losses across processes for the log. Only rank 0 prints and saves.

``--batch-size`` stays the global batch: each of N processes takes ``ceil(batch_size / N)`` images
per step, so a run takes the same number of steps of the same size, and reaches the same loss
within noise, however many processes share it (Goyal et al. 2017 for scaling the batch further).
"""

from __future__ import annotations

import datetime
import gc
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler

# A process that waits longer than this for the others in training (one crashed, a node lost) gives up.
TIMEOUT = datetime.timedelta(minutes=10)
# How long the other processes wait at the end for rank 0 to evaluate (the NLL can take a while on a
# CPU) and save; they leave together, so the run is over when its checkpoint exists.
FINAL_WAIT = datetime.timedelta(hours=12)


@dataclass(frozen=True)
class Parallel:
    """This process's place in a data-parallel run: its rank among ``world_size`` processes."""

    rank: int
    world_size: int
    local_rank: int

    @property
    def is_main(self) -> bool:
        """Return whether this is rank 0, the process that logs and saves."""
        return self.rank == 0

    def local_batch(self, batch_size: int) -> int:
        """Return this process's share of a global batch of ``batch_size`` images (at least 1)."""
        return max(1, math.ceil(batch_size / self.world_size))

    def wrap(self, model: nn.Module) -> nn.Module:
        """Return ``model`` wrapped in DDP; rank 0's weights are broadcast to every process now."""
        on_gpu = next(model.parameters()).device.type == "cuda"
        return DistributedDataParallel(model, device_ids=[self.local_rank] if on_gpu else None)

    def sampler(self, n: int, *, seed: int) -> DistributedSampler:
        """Return the sampler of this process's share of ``range(n)``; call ``set_epoch`` before each epoch.

        Every process draws the same permutation of ``seed + epoch`` and keeps every
        ``world_size``-th index from its rank on, the last few repeated so the shares are equal.
        """
        return DistributedSampler(
            range(n), num_replicas=self.world_size, rank=self.rank, shuffle=True, seed=seed, drop_last=False
        )

    def sum(self, values: torch.Tensor) -> torch.Tensor:
        """Return ``values`` summed over every process (in place)."""
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
        return values


def torchrun_world_size() -> int:
    """Return how many processes torchrun started for this run (1 when not started by torchrun)."""
    raw = os.environ.get("WORLD_SIZE", "1")
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"WORLD_SIZE must be a whole number, got {raw!r}") from None


def backend_for(device: str) -> str:
    """Return the collective backend for a run on ``device``: NCCL for CUDA GPUs, gloo otherwise."""
    on_gpu = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    return "nccl" if on_gpu and dist.is_nccl_available() else "gloo"


@contextmanager
def process_group(device: str = "auto") -> Iterator[Parallel | None]:
    """Join the process group torchrun set up, for the duration of a ``with`` block.

    Args:
        device: the run's device setting (``TrainConfig.device``); on CUDA each process takes
            GPU ``LOCAL_RANK`` and the group talks over NCCL, otherwise over gloo.

    Yields:
        This process's ``Parallel``, or None when the command runs as one plain process. When
        the block ends, every process waits (up to ``FINAL_WAIT``) until all have ended it.

    Raises:
        ValueError: more processes on one machine than GPUs to give them.
    """
    world_size = torchrun_world_size()
    if world_size <= 1 or not dist.is_available():
        yield None
        return
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    backend = backend_for(device)
    if backend == "nccl":
        if local_rank >= torch.cuda.device_count():
            raise ValueError(
                f"process {rank} needs GPU {local_rank}, but this machine has {torch.cuda.device_count()}; "
                "start at most one process per GPU (--nproc_per_node)"
            )
        torch.cuda.set_device(local_rank)  # "cuda" now means this process's GPU
    dist.init_process_group(backend, timeout=TIMEOUT)
    # A gloo group of its own for the final wait, which may outlast TIMEOUT by far.
    ending = dist.new_group(backend="gloo", timeout=FINAL_WAIT)
    try:
        yield Parallel(rank=rank, world_size=world_size, local_rank=local_rank)
        dist.barrier(group=ending)
    finally:
        gc.collect()  # DDP wrappers left in reference cycles hold the group: release them first
        dist.destroy_process_group()
