"""Hand memory a training step freed back to the operating system (CPU runs on glibc).

PyTorch on a CPU allocates through malloc. Batches of varying length leave glibc's heap fragmented,
and what a step freed stays in the process: a 135M student trained on ~350-token rationales grew from
7 GB to 10.5 GB, and two such jobs beside a local teacher were OOM-killed on a 24 GB machine. One
``malloc_trim(0)`` gave back 5 GB of a finished stage's heap (9.2 -> 4.1 GB before its test
generation). It costs milliseconds, so it runs at every epoch's end and when a stage ends.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from collections.abc import Callable

import pytorch_lightning as pl


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None where the C library has none (macOS, musl)."""
    try:
        trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


def release_freed_memory() -> bool:
    """Whether any memory went back (False without glibc)."""
    trim = _malloc_trim()
    return bool(trim(0)) if trim is not None else False


class ReleaseFreedMemory(pl.Callback):
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        release_freed_memory()
