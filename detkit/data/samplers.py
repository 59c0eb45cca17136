"""Samplers: a deterministic, resumable distributed sampler and an aspect-ratio grouped batch sampler.

Resuming at the same data position: a sampler cannot see how far training has consumed (the
DataLoader's workers prefetch ahead of the training loop), so the trainer, which counts what it
has trained on, tells it. Both samplers here have

* ``state_dict(consumed) -> dict``: ``consumed`` is what the trainer took from this sampler in the
  current epoch (indices for :class:`DistributedShardSampler`, batches for
  :class:`GroupedBatchSampler`); the dict holds plain ints (checkpoint-safe);
* ``load_state_dict(state)``: the next ``__iter__`` regenerates the same epoch's order and skips
  the consumed part; later epochs start from their beginning;
* ``set_epoch(epoch)``: a new order each epoch, the same on every rank.

An epoch's order depends only on ``(seed, epoch)``, so skipping ``k`` yields exactly the rest of
the interrupted epoch.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import BatchSampler, Sampler

from detkit.utils.distributed import get_rank, get_world_size

__all__ = ["DistributedShardSampler", "GroupedBatchSampler", "aspect_ratio_group_ids"]


class DistributedShardSampler(Sampler[int]):
    """Shard a dataset's indices across ranks, with a seeded per-epoch shuffle and exact resume.

    Each epoch, the indices ``0 .. N-1`` are permuted with ``torch.Generator`` seeded by
    ``seed + epoch`` (or kept in order), padded by repeating from the start to a multiple of
    ``num_replicas`` (or cut, ``drop_last``), and rank ``r`` takes positions ``r, r + R, ...``
    (as ``torch.utils.data.DistributedSampler``). Shards are disjoint and together cover every
    index (padding repeats a few so all ranks take the same number of steps).

    Args:
        dataset_size: ``len(dataset)``.
        num_replicas: ranks; default the process group's world size (1 without one).
        rank: this rank; default the process group's rank.
        shuffle: permute each epoch.
        seed: the shuffle seed, the same on every rank.
        drop_last: cut the tail instead of padding.
    """

    def __init__(
        self,
        dataset_size: int,
        num_replicas: int | None = None,
        rank: int | None = None,
        *,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
    ) -> None:
        world, world_rank = get_world_size(), get_rank()
        self.num_replicas = world if num_replicas is None else num_replicas
        self.rank = world_rank if rank is None else rank
        if not 0 <= self.rank < self.num_replicas:
            raise ValueError(f"rank {self.rank} is not in [0, {self.num_replicas})")
        self.dataset_size = dataset_size
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self.epoch = 0
        self.start_index = 0  # position in this rank's shard where the next __iter__ starts
        if drop_last:
            self.num_samples = dataset_size // self.num_replicas
        else:
            self.num_samples = math.ceil(dataset_size / self.num_replicas)

    def epoch_indices(self, epoch: int | None = None) -> list[int]:
        """This rank's full shard for ``epoch`` (default the current one), before any skipping."""
        epoch = self.epoch if epoch is None else epoch
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + epoch)
            order = torch.randperm(self.dataset_size, generator=generator).tolist()
        else:
            order = list(range(self.dataset_size))
        total = self.num_samples * self.num_replicas
        if total > len(order):  # pad by repeating from the start (enough times for tiny datasets)
            order = (order * math.ceil(total / max(len(order), 1)))[:total]
        else:
            order = order[:total]
        return order[self.rank : total : self.num_replicas]

    def __iter__(self) -> Iterator[int]:
        indices = self.epoch_indices()[self.start_index :]
        self.start_index = 0  # a resume skips once; the next epoch starts at its beginning
        return iter(indices)

    def __len__(self) -> int:
        return self.num_samples - self.start_index

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order the next ``__iter__`` yields."""
        self.epoch = epoch

    def state_dict(self, consumed: int = 0) -> dict[str, int]:
        """The position to resume from: ``consumed`` indices of this epoch have been trained on."""
        return {"epoch": self.epoch, "start_index": int(consumed), "seed": self.seed, "num_replicas": self.num_replicas}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Resume: the next ``__iter__`` yields epoch ``state["epoch"]`` from ``state["start_index"]``."""
        if state.get("num_replicas", self.num_replicas) != self.num_replicas:
            raise ValueError(
                f"cannot resume a {state['num_replicas']}-rank position exactly with {self.num_replicas} ranks"
            )
        self.epoch, self.seed, self.start_index = int(state["epoch"]), int(state["seed"]), int(state["start_index"])


def aspect_ratio_group_ids(aspect_ratios: Sequence[float]) -> list[int]:
    """Group 0 for landscape images (``width / height > 1``), group 1 for the others
    (detectron2's ``AspectRatioGroupedDataset`` split)."""
    return [0 if ratio > 1.0 else 1 for ratio in aspect_ratios]


class GroupedBatchSampler(BatchSampler):
    """Batches whose images all share a group (e.g. landscape vs portrait), so padding wastes less.

    Indices come from ``sampler`` in its order; each goes to its group's buffer, and a buffer that
    reaches ``batch_size`` is yielded (as detectron2's ``AspectRatioGroupedDataset``). At the end
    of the epoch, partial buffers are yielded (each still one group) unless ``drop_last``.

    Build with ``GroupedBatchSampler(sampler, aspect_ratio_group_ids(dataset.aspect_ratios()), 4)``.

    Args:
        sampler: yields dataset indices (e.g. a :class:`DistributedShardSampler`).
        group_ids: group of each dataset index.
        batch_size: images per batch.
        drop_last: drop the incomplete batches at the end of an epoch.
    """

    def __init__(
        self, sampler: Sampler[int], group_ids: Sequence[int], batch_size: int, drop_last: bool = False
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.sampler = sampler
        self.group_ids = list(group_ids)
        self.batch_size = batch_size
        self.drop_last = drop_last
        self.start_batch = 0

    def _batches(self) -> list[list[int]]:
        buffers: dict[int, list[int]] = {}
        batches = []
        for index in self.sampler:
            buffer = buffers.setdefault(self.group_ids[index], [])
            buffer.append(index)
            if len(buffer) == self.batch_size:
                batches.append(buffer[:])
                buffer.clear()
        if not self.drop_last:
            batches.extend(buffer for buffer in buffers.values() if buffer)
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        batches = self._batches()[self.start_batch :]
        self.start_batch = 0
        return iter(batches)

    def __len__(self) -> int:
        return len(self._batches()) - self.start_batch

    def set_epoch(self, epoch: int) -> None:
        """Forward to the inner sampler (when it has ``set_epoch``)."""
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)

    def state_dict(self, consumed: int = 0) -> dict[str, Any]:
        """The position to resume from: ``consumed`` batches of this epoch have been trained on."""
        inner = self.sampler.state_dict(0) if hasattr(self.sampler, "state_dict") else {}
        return {"start_batch": int(consumed), "sampler": inner}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume: the next ``__iter__`` regenerates the epoch and skips ``start_batch`` batches."""
        if state.get("sampler") and hasattr(self.sampler, "load_state_dict"):
            self.sampler.load_state_dict(state["sampler"])
        self.start_batch = int(state["start_batch"])
