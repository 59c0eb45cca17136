"""Training and test data loaders whose order and augmentation are functions of (seed, epoch).

Reproducibility rules (what makes an interrupted run resume bit-exactly):

- The order of an epoch is ``randperm(len(dataset))`` drawn from a generator seeded with
  ``(seed, epoch)``; nothing else. A resumed run rebuilds the order of its epoch and skips the
  batches already consumed without drawing any randomness.
- Every sample carries its own seed, drawn from the same generator as the order. Before a sample
  is loaded, Python's ``random``, NumPy's global generator and torch's CPU generator are seeded
  with it (and restored afterwards in the main process), so the augmentation of a sample depends
  on (seed, epoch, position in the epoch) only: not on ``num_workers``, on which worker loads it,
  or on where a run was resumed. Workers need no ``worker_init_fn`` of their own.
- The loader gets a private ``torch.Generator`` so that creating an iterator never draws from the
  global generator.
- Distributed: every rank walks the same global order; global batch ``b`` is
  ``order[b * B * W : (b + 1) * B * W]`` (``B`` images per process, ``W`` processes) and rank
  ``r`` takes its ``r``-th slice of ``B``. One process with batch ``B * W`` sees the same images
  in each step as ``W`` processes with batch ``B``. Incomplete global batches are dropped.

A batch that cannot be read during training (a dataset or transform raising, in the main
process or in a loader worker) stops the run with :class:`DataLoadingError`, whose one-line message
starts with the iteration: ``iteration 7 (epoch 0): <the original message>``, chained to the
original error (``raise ... from error``); a KeyboardInterrupt passes through untouched.

Config usage::

    dataloader = dict(train=L(build_train_loader)(dataset=L(MyDataset)(...), batch_size=2))
"""

from __future__ import annotations

import inspect
import random
import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from detkit.data.collate import collate_detection
from detkit.utils.distributed import get_rank, get_world_size

__all__ = [
    "DataLoadingError", "EpochBatchSampler", "SeededSamples", "batch_to_device",
    "build_test_loader", "build_train_loader", "epoch_order", "is_resumable_sampler", "next_batch",
]

_WORKER_TRACEBACK = "Original Traceback (most recent call last):"


class DataLoadingError(ValueError):
    """A training batch could not be read; the message names the iteration and the epoch, then
    the original error's message (``__cause__`` is the original error)."""


def describe_error(error: BaseException) -> str:
    """The message of ``error`` on one line, led by its type unless it is a ValueError.

    An error re-raised by a DataLoader worker carries the worker's traceback in its message;
    only the original message is kept, with the worker named.
    """
    text = str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)
    where = ""
    if _WORKER_TRACEBACK in text:
        head, _, trace = text.partition(_WORKER_TRACEBACK)
        found = re.search(r"in (DataLoader worker process \d+)", head)
        where = f" (in {found.group(1)})" if found else ""
        lines = trace.splitlines()
        pattern = re.compile(rf"^(?:[\w.]+\.)?{re.escape(type(error).__name__)}: ?")
        starts = [i for i, line in enumerate(lines) if pattern.match(line)]
        if starts:
            lines = lines[starts[-1]:]
            lines[0] = pattern.sub("", lines[0], count=1)
            text = "\n".join(lines)
    message = "; ".join(line.strip() for line in text.splitlines() if line.strip())
    message = message or "(no message)"
    if not isinstance(error, ValueError):
        message = f"{type(error).__name__}: {message}"
    return message + where


def next_batch(stream: Iterator[Any], iteration: int, epoch: int) -> Any:
    """The next batch of ``stream``; an error while reading it becomes a DataLoadingError.

    Args:
        stream: The batch iterator.
        iteration: The 1-based number of the optimiser step that reads the batch.
        epoch: The epoch of the batch.

    Raises:
        DataLoadingError: ``iteration 7 (epoch 0): <one-line original message>``, raised from
            the original error (a KeyboardInterrupt or SystemExit is not caught).
    """
    try:
        return next(stream)
    except Exception as error:
        raise DataLoadingError(f"iteration {iteration} (epoch {epoch}): "
                               f"{describe_error(error)}") from error


def batch_to_device(images: Sequence[Tensor], targets: Sequence[dict[str, Any]],
                    device: torch.device) -> tuple[list[Tensor], list[dict[str, Any]]]:
    """The images and the tensors of the targets on ``device`` (non-blocking to CUDA)."""
    non_blocking = device.type == "cuda"
    images = [image.to(device, non_blocking=non_blocking) for image in images]
    targets = [{k: v.to(device, non_blocking=non_blocking) if isinstance(v, Tensor) else v
                for k, v in target.items()} for target in targets]
    return images, targets


def is_resumable_sampler(batch_sampler: Any) -> bool:
    """Whether a batch sampler offers ``set_epoch(epoch, start_batch)`` and ``len()``."""
    set_epoch = getattr(batch_sampler, "set_epoch", None)
    if not callable(set_epoch) or not hasattr(batch_sampler, "__len__"):
        return False
    try:
        inspect.signature(set_epoch).bind(0, 0)
    except (TypeError, ValueError):
        return False
    return True


def epoch_order(seed: int, epoch: int, size: int, shuffle: bool = True) -> tuple[Tensor, Tensor]:
    """The sample order of an epoch and one seed per position, both functions of (seed, epoch).

    Returns:
        ``(order [size] int64, sample_seeds [size] int64)``.
    """
    generator = torch.Generator()
    generator.manual_seed((seed * 1_000_003 + epoch) % (2**63 - 1))
    order = torch.randperm(size, generator=generator) if shuffle else torch.arange(size)
    sample_seeds = torch.randint(0, 2**62, (size,), generator=generator, dtype=torch.int64)
    return order, sample_seeds


class EpochBatchSampler(Sampler[list[tuple[int, int]]]):
    """Yields this rank's batches of ``(dataset index, sample seed)`` for one epoch at a time.

    Call :meth:`set_epoch` before iterating; ``start_batch`` skips batches already consumed.

    Args:
        dataset_size: Number of samples.
        batch_size: Samples per process per batch.
        seed: Base seed of the order and of the per-sample seeds.
        shuffle: Random order (else dataset order).
        rank: This process's rank (default: from torch.distributed).
        world_size: Number of processes (default: from torch.distributed).
    """

    def __init__(self, dataset_size: int, batch_size: int, seed: int = 0, shuffle: bool = True,
                 rank: int | None = None, world_size: int | None = None) -> None:
        self.rank = get_rank() if rank is None else rank
        self.world_size = get_world_size() if world_size is None else world_size
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        global_batch = batch_size * self.world_size
        if dataset_size < global_batch:
            raise ValueError(f"the dataset has {dataset_size} samples, fewer than one global batch "
                             f"of {global_batch} ({batch_size} x {self.world_size} processes)")
        self.dataset_size = dataset_size
        self.batch_size = batch_size
        self.seed = seed
        self.shuffle = shuffle
        self.epoch = 0
        self.start_batch = 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Select the epoch the next iteration walks, starting at batch ``start_batch``."""
        if not 0 <= start_batch <= len(self):
            raise ValueError(f"start_batch must be in [0, {len(self)}], got {start_batch}")
        self.epoch = epoch
        self.start_batch = start_batch

    def __len__(self) -> int:
        """Batches per epoch (the same on every rank)."""
        return self.dataset_size // (self.batch_size * self.world_size)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        order, seeds = epoch_order(self.seed, self.epoch, self.dataset_size, self.shuffle)
        global_batch = self.batch_size * self.world_size
        for batch in range(self.start_batch, len(self)):
            begin = batch * global_batch + self.rank * self.batch_size
            positions = range(begin, begin + self.batch_size)
            yield [(int(order[p]), int(seeds[p])) for p in positions]


class SeededSamples(Dataset):
    """A dataset indexed by ``(index, sample_seed)``: seeds the global generators, then loads.

    In the main process the generators are restored afterwards, so loading data does not change
    the randomness the model sees. In worker processes they are left seeded (nothing else uses
    them there).
    """

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> Any:
        index, sample_seed = key
        in_worker = torch.utils.data.get_worker_info() is not None
        saved = None if in_worker else (random.getstate(), np.random.get_state(),
                                        torch.get_rng_state())
        random.seed(sample_seed)
        np.random.seed(sample_seed % 2**32)
        torch.manual_seed(sample_seed)
        try:
            return self.dataset[index]
        finally:
            if saved is not None:
                random.setstate(saved[0])
                np.random.set_state(saved[1])
                torch.set_rng_state(saved[2])


def build_train_loader(
    dataset: Dataset,
    batch_size: int,
    num_workers: int = 0,
    shuffle: bool = True,
    seed: int = 0,
    collate_fn: Callable[[list[Any]], Any] = collate_detection,
    pin_memory: bool = False,
    persistent_workers: bool = False,
) -> DataLoader:
    """A training loader walking epochs in a (seed, epoch)-determined order (see module doc).

    Args:
        dataset: Map-style dataset, ``dataset[i] -> (image, target)``.
        batch_size: Images per process per step (per GPU).
        num_workers: Loader processes.
        shuffle: Random order per epoch.
        seed: Base seed; the engine passes ``train.seed`` when the config leaves it out.
        collate_fn: Batch maker, ``(list[Tensor], list[dict])`` for detection.
        pin_memory: Page-locked batches (for CUDA).
        persistent_workers: Keep workers between epochs.

    Returns:
        A DataLoader whose ``batch_sampler`` is an :class:`EpochBatchSampler`.
    """
    size = len(dataset)  # type: ignore[arg-type]
    sampler = EpochBatchSampler(size, batch_size, seed=seed, shuffle=shuffle)
    return DataLoader(
        SeededSamples(dataset), batch_sampler=sampler, num_workers=num_workers,
        collate_fn=collate_fn, pin_memory=pin_memory,
        persistent_workers=persistent_workers and num_workers > 0,
        generator=torch.Generator().manual_seed(seed),
    )


def build_test_loader(
    dataset: Dataset,
    batch_size: int = 1,
    num_workers: int = 0,
    collate_fn: Callable[[list[Any]], Any] = collate_detection,
    shard: bool = True,
) -> DataLoader:
    """A sequential loader for evaluation; under torch.distributed each rank gets a contiguous
    shard of the dataset when ``shard`` is true (the evaluator gathers the results)."""
    size = len(dataset)  # type: ignore[arg-type]
    if shard and get_world_size() > 1:
        per_rank = -(-size // get_world_size())
        begin = get_rank() * per_rank
        dataset = torch.utils.data.Subset(dataset, range(begin, min(begin + per_rank, size)))
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                      collate_fn=collate_fn)
