"""Training data loader whose sample order is a pure function of (seed, iteration): resumable exactly."""

from __future__ import annotations

import itertools
import operator
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from detectron2.data.build import trivial_batch_collator, worker_init_reset_seed
from detectron2.data.common import (
    AspectRatioGroupedDataset,
    DatasetFromList,
    MapDataset,
    ToIterableDataset,
)
from detectron2.utils import comm
from torch.utils.data import DataLoader, Sampler

__all__ = ["ResumableTrainingSampler", "ResumableTrainLoader", "build_batched_test_loader"]


def build_batched_test_loader(
    dataset: Sequence[dict],
    *,
    mapper: Callable[[dict], Any],
    batch_size: int = 1,
    num_workers: int = 0,
) -> DataLoader:
    """Inference loader over every dict of ``dataset`` in order, ``batch_size`` images per batch.

    Detectron2 0.6's test loader is fixed at one image per batch, which on CPU runs many convolutions
    through a slow unbatched path; batching speeds inference up ~2-3x there. In distributed runs each
    process gets a contiguous shard (Detectron2's ``InferenceSampler``).
    """
    from detectron2.data.samplers import InferenceSampler

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    data = MapDataset(DatasetFromList(list(dataset), copy=False), mapper)
    return DataLoader(
        data,
        batch_size=batch_size,
        sampler=InferenceSampler(len(data)),
        num_workers=num_workers,
        collate_fn=trivial_batch_collator,
    )


class ResumableTrainingSampler(Sampler):
    """Infinite stream of shuffled dataset indices that can start at any position.

    Epoch ``e`` is a permutation drawn from a generator seeded with ``seed + e``, so the stream does
    not depend on how often it was restarted. Position ``p`` of the global stream goes to rank
    ``p % world_size``; ``start`` skips the first ``start`` global positions (``start_iter *
    total_batch_size`` when resuming).
    """

    def __init__(
        self,
        size: int,
        *,
        seed: int,
        shuffle: bool = True,
        start: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
    ) -> None:
        if size <= 0:
            raise ValueError(f"ResumableTrainingSampler needs a non-empty dataset, got size {size}")
        self._size = int(size)
        self._seed = int(seed)
        self._shuffle = shuffle
        self._start = int(start)
        self._rank = comm.get_rank() if rank is None else rank
        self._world_size = comm.get_world_size() if world_size is None else world_size

    def _epoch(self, epoch: int) -> list[int]:
        if not self._shuffle:
            return list(range(self._size))
        generator = torch.Generator().manual_seed(self._seed + epoch)
        return torch.randperm(self._size, generator=generator).tolist()

    def _global_stream(self) -> Iterator[int]:
        epoch, offset = divmod(self._start, self._size)
        for e in itertools.count(epoch):
            order = self._epoch(e)
            yield from order[offset:]
            offset = 0

    def __iter__(self) -> Iterator[int]:
        # the global position of the first element is self._start; keep those with p % world == rank
        first = (self._rank - self._start) % self._world_size
        yield from itertools.islice(self._global_stream(), first, None, self._world_size)


class ResumableTrainLoader:
    """An iterable that builds the real loader on first use, starting at ``start_iter``.

    Detectron2's trainers create the iterator before the checkpoint is loaded; the generator body
    below only runs at the first ``next()``, after ``start_iter`` has been set from the checkpoint.
    With ``num_workers=0`` and per-iteration reseeding, the batches of iteration ``i`` (order and
    augmentation) are the same whether or not the run was interrupted.
    """

    def __init__(
        self,
        dataset: Sequence[dict],
        *,
        mapper: Callable[[dict], Any],
        total_batch_size: int,
        seed: int,
        num_workers: int = 0,
        aspect_ratio_grouping: bool = False,
    ) -> None:
        self.dataset = dataset
        self.mapper = mapper
        self.total_batch_size = int(total_batch_size)
        self.seed = int(seed)
        self.num_workers = int(num_workers)
        self.aspect_ratio_grouping = aspect_ratio_grouping
        self.start_iter = 0

    def __iter__(self) -> Iterator[list[dict]]:
        world_size = comm.get_world_size()
        if self.total_batch_size % world_size:
            raise ValueError(
                f"SOLVER.IMS_PER_BATCH ({self.total_batch_size}) must be divisible by the number of "
                f"processes ({world_size})"
            )
        batch_size = self.total_batch_size // world_size
        sampler = ResumableTrainingSampler(
            len(self.dataset), seed=self.seed, start=self.start_iter * self.total_batch_size
        )
        dataset = ToIterableDataset(
            MapDataset(DatasetFromList(list(self.dataset), copy=False), self.mapper), sampler
        )
        # A private generator: creating the DataLoader iterator must not consume the global torch RNG,
        # or a resumed run (iterator created at iteration k) would diverge from an uninterrupted one.
        generator = torch.Generator().manual_seed(self.seed)
        common = {
            "num_workers": self.num_workers,
            "worker_init_fn": worker_init_reset_seed,
            "generator": generator,
        }
        if self.aspect_ratio_grouping:
            loader = DataLoader(dataset, collate_fn=operator.itemgetter(0), **common)
            yield from AspectRatioGroupedDataset(loader, batch_size)
        else:
            yield from DataLoader(
                dataset,
                batch_size=batch_size,
                drop_last=True,
                collate_fn=trivial_batch_collator,
                **common,
            )
