"""Staying under a server's rate limits with many requests in flight.

:class:`RateLimiter` is shared by the worker threads of one backend. Before a request it waits until
the last minute's requests and tokens leave room (``teacher.max_requests_per_minute`` /
``max_tokens_per_minute``, a sliding window) and until any pause has passed. Pauses come from the
server: a 429 pauses *every* worker for its ``Retry-After`` (seconds, an HTTP date, or
``retry-after-ms``), not only the one that got it, and ``x-ratelimit-remaining-requests`` /
``-tokens`` at or below the requests in flight pause everyone until the matching
``x-ratelimit-reset-*`` ("1s", "6m0s", "20ms"). So a 16-way collection slows down before it meets 429s.
"""

from __future__ import annotations

import email.utils
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: str | None) -> float | None:
    """"1s", "6m0s", "20ms", "0.5" -> seconds; None if it says nothing readable."""
    if value is None:
        return None
    value = str(value).strip()
    try:
        return float(value)
    except ValueError:
        pass
    parts = _DURATION.findall(value)
    return sum(float(n) * _UNIT[u] for n, u in parts) if parts else None


def retry_after(headers: Mapping[str, Any] | None, now: Callable[[], float] = time.time) -> float | None:
    """Seconds a server asked us to wait: ``retry-after-ms``, ``Retry-After`` in seconds or as an HTTP date."""
    if not headers:
        return None
    get = {str(k).lower(): v for k, v in dict(headers).items()}.get
    if get("retry-after-ms") is not None:
        try:
            return float(get("retry-after-ms")) / 1000.0
        except ValueError:
            pass
    value = get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(str(value))
        except (TypeError, ValueError):
            return None
        return max(0.0, when.timestamp() - now())


class RateLimiter:
    def __init__(self, requests_per_minute: int | None = None, tokens_per_minute: int | None = None, *,
                 window_s: float = 60.0, in_flight: int = 1, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        self.rpm, self.tpm, self.window_s = requests_per_minute, tokens_per_minute, float(window_s)
        self.in_flight = max(1, int(in_flight))
        self.clock, self.sleep = clock, sleep
        self._sent: deque[tuple[float, int]] = deque()  # (time, tokens) of the window's requests
        self._paused_until = 0.0
        self.pauses = 0  # how often the server made everyone wait
        self._last_tokens = 0
        self._lock = threading.Lock()

    def acquire(self, tokens: int = 0) -> None:
        """Blocks until a request of ``tokens`` (its worst case) fits the limits and no pause holds."""
        while True:
            with self._lock:
                now = self.clock()
                while self._sent and now - self._sent[0][0] >= self.window_s:
                    self._sent.popleft()
                wait = self._paused_until - now
                if wait <= 0:
                    full_requests = self.rpm is not None and len(self._sent) >= self.rpm
                    used = sum(t for _, t in self._sent)
                    full_tokens = self.tpm is not None and self._sent and used + tokens > self.tpm
                    if not full_requests and not full_tokens:
                        self._sent.append((now, int(tokens)))
                        self._last_tokens = int(tokens)
                        return
                    wait = self._sent[0][0] + self.window_s - now
            self.sleep(max(wait, 0.001))

    def pause(self, seconds: float | None) -> None:
        """Every worker waits ``seconds`` from now (a 429, or limits the server says are spent)."""
        if not seconds or seconds <= 0:
            return
        with self._lock:
            until = self.clock() + seconds
            if until > self._paused_until:
                self._paused_until = until
                self.pauses += 1

    def observe(self, headers: Mapping[str, Any] | None) -> None:
        """Reads the server's ``x-ratelimit-*`` headers: nearly spent means wait for the reset."""
        if not headers:
            return
        get = {str(k).lower(): v for k, v in dict(headers).items()}.get
        for kind in ("requests", "tokens"):
            remaining = get(f"x-ratelimit-remaining-{kind}")
            try:
                left = float(remaining) if remaining is not None else None
            except ValueError:
                left = None
            # fewer left than the requests (or their tokens) that may be in flight: wait for the reset
            threshold = self.in_flight * (1 if kind == "requests" else max(self._last_tokens, 1))
            if left is not None and left <= threshold:
                self.pause(parse_duration(get(f"x-ratelimit-reset-{kind}")))
