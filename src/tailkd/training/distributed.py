"""What a recipe needs under a multi-process Lightning strategy (``trainer=ddp`` / ``fsdp``).

Lightning's DDP launcher starts ranks 1..N-1 at the first ``fit``/``test`` call by re-running the
command line, so every rank runs the whole recipe. Work outside Lightning must then agree across
ranks and must not be paid for twice: purchases happen on rank 0 first (the others read the teacher
cache), signals computed on every rank are replaced by rank 0's, predictions are gathered, and only
rank 0 writes the run's files (the cli gives other ranks a hidden scratch folder).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any, TypeVar

import torch.distributed as dist

T = TypeVar("T")


def world() -> tuple[int, int]:
    """(rank, world size) of the initialised process group, else (0, 1)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def launched_rank() -> int:
    """This process's global rank as the launcher set it, usable before the process group exists."""
    for name in ("RANK", "SLURM_PROCID", "LOCAL_RANK"):
        if os.environ.get(name, "").isdigit():
            return int(os.environ[name])
    return 0


@contextlib.contextmanager
def main_process_first() -> Iterator[None]:
    """Rank 0 runs the block first, the others after it finished (they then hit its caches)."""
    rank, size = world()
    if size > 1 and rank != 0:
        dist.barrier()
    try:
        yield
    finally:
        if size > 1 and rank == 0:
            dist.barrier()


def from_rank_zero(value: T) -> T:
    """Rank 0's ``value`` on every rank (a no-op in a single process)."""
    rank, size = world()
    if size == 1:
        return value
    box = [value if rank == 0 else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_lists(items: list[Any]) -> list[Any]:
    """Every rank's items, rank by rank, on every rank."""
    _, size = world()
    if size == 1:
        return list(items)
    parts: list[list[Any] | None] = [None] * size
    dist.all_gather_object(parts, list(items))
    return [item for part in parts for item in (part or [])]
