"""Where ``training.fit`` gets its batches: a tensor held on the device, or files streamed by workers.

Data that fits in memory is held as one uint8 tensor on the device and batched by a shuffled
index (``TensorBatches``). A folder larger than the memory budget is a ``Dataset`` of files
(``folders.FolderImages``) read by a ``DataLoader`` with worker processes (``LoaderBatches``).
Either way an epoch is a sequence of uint8 batches (B, C, H, W) on the device; in a data-parallel
run (``distributed.Parallel``) each process gets its own share of every epoch.

An epoch's order depends on the seed and the epoch's number only, so a resumed run sees the
orders the uninterrupted run would have seen.
"""

from __future__ import annotations

from collections.abc import Iterator, Sized
from typing import Protocol

import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler

from vae_core.distributed import Parallel


class Batches(Protocol):
    """An epoch's worth of uint8 image batches on the device."""

    steps_per_epoch: int
    images_per_epoch: int

    def epoch(self, number: int) -> Iterator[torch.Tensor]:
        """Yield the batches of epoch ``number`` (1-based), uint8 (B, C, H, W) on the device."""
        ...


def epoch_seed(seed: int, number: int) -> int:
    """Return the shuffling seed of epoch ``number`` of a run seeded with ``seed``."""
    return seed * 100_003 + number


class TensorBatches:
    """Batches of a uint8 tensor held on the device, taken by a shuffled index."""

    def __init__(
        self, images: torch.Tensor, *, batch_size: int, seed: int, parallel: Parallel | None = None
    ) -> None:
        self.images, self.seed = images, seed
        self.batch_size = parallel.local_batch(batch_size) if parallel else batch_size
        self.sampler = parallel.sampler(len(images), seed=seed) if parallel else None
        self.images_per_epoch = len(self.sampler) if self.sampler is not None else len(images)
        self.steps_per_epoch = -(-self.images_per_epoch // self.batch_size)

    def epoch(self, number: int) -> Iterator[torch.Tensor]:
        """Yield the batches of epoch ``number``."""
        if self.sampler is not None:
            self.sampler.set_epoch(number)
            order = torch.tensor(list(self.sampler), dtype=torch.int64)
        else:
            order = torch.randperm(
                len(self.images), generator=torch.Generator().manual_seed(epoch_seed(self.seed, number))
            )
        order = order.to(self.images.device)
        for start in range(0, len(order), self.batch_size):
            yield self.images[order[start : start + self.batch_size]]


class LoaderBatches:
    """Batches of a ``Dataset`` of uint8 images (C, H, W), read by ``workers`` processes."""

    def __init__(
        self,
        dataset: Dataset,
        *,
        batch_size: int,
        seed: int,
        device: torch.device,
        workers: int = 2,
        parallel: Parallel | None = None,
    ) -> None:
        if not isinstance(dataset, Sized) or len(dataset) == 0:
            raise ValueError("the streamed dataset is empty")
        self.seed, self.device = seed, device
        self.batch_size = parallel.local_batch(batch_size) if parallel else batch_size
        self.generator = torch.Generator()
        if parallel is not None:
            self.sampler = parallel.sampler(len(dataset), seed=seed)
        else:
            self.sampler = RandomSampler(dataset, generator=self.generator)
        self.loader = DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=self.sampler,
            num_workers=workers,
            pin_memory=device.type == "cuda",
            persistent_workers=workers > 0,
        )
        self.images_per_epoch = len(self.sampler)
        self.steps_per_epoch = len(self.loader)

    def epoch(self, number: int) -> Iterator[torch.Tensor]:
        """Yield the batches of epoch ``number``, moved to the device as they arrive."""
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(number)
        else:
            self.generator.manual_seed(epoch_seed(self.seed, number))
        for batch in self.loader:
            yield batch.to(self.device, non_blocking=True)
