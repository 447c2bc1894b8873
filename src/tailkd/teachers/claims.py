"""The rule both teacher caches (SQLite, PostgreSQL) hold claims by: whether another process's claim on
a request still holds, so that this process waits for its answer instead of paying for it too."""

from __future__ import annotations

import os


def claim_held(host: str, pid: int, expires: float, now: float, my_host: str) -> bool:
    """Whether another process's claim still holds: a live process on this machine keeps its claim
    however long it takes; another machine's holds until its lease (renewed before every attempt) ends."""
    return _alive(pid) if host == my_host else expires > now


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True
