"""Wall time per phase of a run (buy, warm-up, sample, TA, train, evaluate), for results.json.

One clock per process: a phase is timed where it happens (a recipe's purchase, the signals' sampling
deep in ``tailkd.signals``) without threading a clock object through every call. A recipe calls
:func:`reset` when it starts and writes :func:`summary` into its results. Phases do not nest: time
spent in a phase inside another would count twice.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

_lock = threading.Lock()
_seconds: dict[str, float] = {}


def reset() -> None:
    with _lock:
        _seconds.clear()


@contextlib.contextmanager
def phase(name: str) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        elapsed = time.perf_counter() - started
        with _lock:
            _seconds[name] = _seconds.get(name, 0.0) + elapsed


def summary() -> dict[str, float]:
    """Seconds per phase, in the order the phases first ran."""
    with _lock:
        return {name: round(seconds, 1) for name, seconds in _seconds.items()}
