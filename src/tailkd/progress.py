"""Progress of tailkd's long steps (sampling, scoring, DPO, conversions): a tqdm bar on a terminal, like
the teacher's; elsewhere (a log file, a SLURM job, a pipe) one log line every tenth of the way with the
count, rate and ETA, since a bar's carriage returns are unreadable there and silence looks like a hang.

    with Progress(len(prompts), "self-consistency: sampling", unit="q") as progress:
        ...
        progress.update(len(batch))

    for batch in batches(prompts, 16, "TA: scoring", unit="output"):   # advanced by each batch's size
        ...
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")

log = logging.getLogger("tailkd.progress")

# a step shorter than this says nothing (tqdm's ``delay``): a tiny run's console is not a wall of bars
DELAY_S = 3.0
EVERY = 0.1  # off a terminal, a line each time this share of the total is passed


def _clock() -> float:
    return time.monotonic()


def on_terminal() -> bool:
    """Whether stderr, where bars are drawn, is a terminal."""
    isatty = getattr(sys.stderr, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


def format_rate(done: float, elapsed: float, unit: str) -> str:
    """``2.50 q/s``, or ``4.00 s/q`` below one a second (as tqdm writes it)."""
    if done <= 0 or elapsed <= 0:
        return f"? {unit}/s"
    rate = done / elapsed
    return f"{rate:.2f} {unit}/s" if rate >= 1 else f"{1 / rate:.2f} s/{unit}"


class Progress:
    """``total`` items done one :meth:`update` at a time. ``bar=False``: on a terminal another bar
    already shows this step (Lightning's), so only the log lines off a terminal are wanted."""

    def __init__(self, total: int, desc: str, unit: str = "it", *, bar: bool = True, initial: int = 0,
                 logger: logging.Logger | None = None):
        self.total, self.desc, self.unit = int(total), desc, unit
        self.done = self.initial = int(initial)
        self.logger = logger or log
        self.started = _clock()
        self.terminal = on_terminal()
        self.bar = (tqdm(total=self.total, initial=self.initial, desc=desc, unit=unit, delay=DELAY_S)
                    if self.terminal and bar else None)
        self._next_percent = self._percent() // self._step() * self._step() + self._step()

    def _step(self) -> int:
        return max(1, round(100 * EVERY))

    def _percent(self) -> int:
        return 100 * self.done // self.total if self.total > 0 else 0

    def update(self, n: int = 1) -> None:
        self.done += int(n)
        if self.bar is not None:
            self.bar.update(n)
        elif not self.terminal and self._percent() >= self._next_percent:
            self._next_percent = self._percent() // self._step() * self._step() + self._step()
            self._log()

    def reach(self, done: int) -> None:
        """Advance to ``done`` items in all (a trainer's step counter)."""
        self.update(done - self.done)

    def _log(self) -> None:
        elapsed = _clock() - self.started
        if elapsed < DELAY_S:
            return
        done = self.done - self.initial
        left = self.total - self.done
        eta = tqdm.format_interval(left * elapsed / done) if done > 0 else "?"
        self.logger.info("%s: %d/%d %s (%d%%), %s, %s elapsed, ETA %s", self.desc, self.done, self.total,
                         self.unit, self._percent(), format_rate(done, elapsed, self.unit),
                         tqdm.format_interval(elapsed), eta)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def batches(items: Sequence[T], size: int, desc: str, unit: str = "it",
            group: int | None = None) -> Iterator[Sequence[T]]:
    """``items`` in slices of ``size``, none across a multiple of ``group`` (items in runs of ``group``
    that share a prompt prefix stay in batches that share it); the progress advances by a slice's
    length once the loop body that received it is done."""
    size, group = max(1, int(size)), max(1, int(group or len(items) or 1))
    with Progress(len(items), desc, unit) as progress:
        for block in range(0, len(items), group):
            for start in range(block, min(block + group, len(items)), size):
                chunk = items[start:min(start + size, block + group)]
                yield chunk
                progress.update(len(chunk))


def track(items: Iterable[T], desc: str, unit: str = "it", total: int | None = None) -> Iterator[T]:
    """``items`` one by one, each counted once the loop body that received it is done."""
    total = len(items) if total is None else total  # type: ignore[arg-type]
    with Progress(total, desc, unit) as progress:
        for item in items:
            yield item
            progress.update(1)
