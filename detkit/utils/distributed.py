"""torch.distributed helpers for training launched by ``torchrun``.

``torchrun --nproc_per_node N [--nnodes M --node_rank R --master_addr A --master_port P]
tools/train.py ...`` starts one process per device and sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``; :func:`init_distributed` reads them and joins
the process group (NCCL when the process drives a GPU, gloo on CPU). Without those variables every
helper answers as a single process (rank 0 of 1), so the same code runs unlaunched.

Rule of the engine: every rank computes, only rank 0 (:func:`is_main_process`) writes logs,
metrics and checkpoints.
"""

from __future__ import annotations

import datetime
import logging
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

logger = logging.getLogger(__name__)

__all__ = [
    "DistInfo", "all_gather_object", "all_reduce_mean", "any_true", "barrier",
    "convert_sync_batchnorm", "destroy_distributed", "get_local_rank", "get_rank",
    "get_world_size", "init_distributed", "is_distributed", "is_main_process",
]


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: global rank, world size, rank on its node, and its device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device


def is_distributed() -> bool:
    """True when a process group with more than one process is initialised."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def get_rank() -> int:
    """Global rank of this process (0 when not distributed)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def get_world_size() -> int:
    """Number of processes (1 when not distributed)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def get_local_rank() -> int:
    """Rank of this process on its node, from ``LOCAL_RANK`` (0 when unset)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main_process() -> bool:
    """True on rank 0, the only rank that logs and writes files."""
    return get_rank() == 0


def init_distributed(device: str = "auto", backend: str | None = None,
                     timeout_s: float = 1800.0) -> DistInfo:
    """Join the process group described by torchrun's environment variables, if any.

    Args:
        device: ``"auto"`` (the GPU ``LOCAL_RANK`` when CUDA is available, else the CPU),
            ``"cpu"``, ``"cuda"`` (GPU ``LOCAL_RANK``) or an explicit ``"cuda:K"``.
        backend: ``"nccl"`` or ``"gloo"``; by default NCCL for CUDA devices, gloo for the CPU.
        timeout_s: Collective timeout in seconds.

    Returns:
        The :class:`DistInfo` of this process. Without ``WORLD_SIZE`` (or with ``WORLD_SIZE=1``)
        no process group is created.

    Raises:
        ValueError: ``device`` names CUDA when no GPU is available.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = get_local_rank()
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"train.device={device!r} but CUDA is not available")
        torch_device = torch.device(device if ":" in device else f"cuda:{local_rank}")
        torch.cuda.set_device(torch_device)
    else:
        torch_device = torch.device(device)
    if world_size > 1 and not dist.is_initialized():
        backend = backend or ("nccl" if torch_device.type == "cuda" else "gloo")
        kwargs: dict[str, Any] = {}
        if torch_device.type == "cuda":
            kwargs["device_id"] = torch_device
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size,
                                timeout=datetime.timedelta(seconds=timeout_s), **kwargs)
        logger.info("joined process group: rank %d of %d (local rank %d), backend %s, device %s",
                    rank, world_size, local_rank, backend, torch_device)
    return DistInfo(rank=get_rank(), world_size=get_world_size(), local_rank=local_rank,
                    device=torch_device)


def destroy_distributed() -> None:
    """Leave the process group, if one was joined."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    """Wait for every rank (no-op for a single process)."""
    if is_distributed():
        dist.barrier()


def all_reduce_mean(values: dict[str, float]) -> dict[str, float]:
    """Average scalar values over the ranks (returned as they are for a single process).

    Every rank must pass the same keys in the same order.
    """
    if not is_distributed() or not values:
        return dict(values)
    backend_device = torch.device("cuda", torch.cuda.current_device()) \
        if dist.get_backend() == "nccl" else torch.device("cpu")
    packed = torch.tensor(list(values.values()), dtype=torch.float64, device=backend_device)
    dist.all_reduce(packed)
    packed /= get_world_size()
    return dict(zip(values, packed.tolist()))


def any_true(flag: bool) -> bool:
    """True on every rank when ``flag`` is true on at least one rank."""
    if not is_distributed():
        return flag
    backend_device = torch.device("cuda", torch.cuda.current_device()) \
        if dist.get_backend() == "nccl" else torch.device("cpu")
    value = torch.tensor([1.0 if flag else 0.0], device=backend_device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item() > 0)


def all_gather_object(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order (``[obj]`` for a single process)."""
    if not is_distributed():
        return [obj]
    gathered: list[Any] = [None] * get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def convert_sync_batchnorm(model: nn.Module, device: torch.device | str = "cuda") -> nn.Module:
    """Replace every ``BatchNorm*d`` by ``SyncBatchNorm`` so statistics span all ranks.

    ``FrozenBatchNorm2d`` (no statistics to sync) is left alone. The model is returned unchanged,
    with a log line, on a single process (SyncBatchNorm needs a process group) and on the CPU
    (DistributedDataParallel accepts SyncBatchNorm on GPU modules only).
    """
    if not is_distributed():
        logger.info("train.sync_bn on a single process: BatchNorm layers left as they are")
        return model
    if torch.device(device).type != "cuda":
        logger.warning("train.sync_bn needs CUDA devices (SyncBatchNorm runs on GPU modules "
                       "only); BatchNorm layers left per-process on %s", device)
        return model
    return nn.SyncBatchNorm.convert_sync_batchnorm(model)
