"""What a run may spend on the teacher, enforced under concurrency.

Limits: ``max_queries`` (teacher answers used), ``max_tokens`` (input + output), ``max_usd``; any
combination, null for none. A request is sent only after its worst case is reserved (input at most
one token per byte plus chat overhead, output at most the ``max_tokens`` the request carries; or the
backend's own exact bound, such as a recorded row's cost), and the reservation is replaced by the
true figures when the answer arrives, so the caps hold with any number of requests in flight. A
failed request is not charged.

Answers served from the cache count against the budget at what they cost when bought: a run's data,
and so its results, must not depend on what earlier runs happened to buy. What was paid now is
reported separately.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tailkd.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Spend:
    queries: int = 0
    tokens: int = 0
    usd: float = 0.0

    def __add__(self, other: Spend) -> Spend:
        return Spend(self.queries + other.queries, self.tokens + other.tokens, self.usd + other.usd)

    def __sub__(self, other: Spend) -> Spend:
        return Spend(self.queries - other.queries, self.tokens - other.tokens, self.usd - other.usd)

    def covers(self, other: Spend) -> bool:
        return self.queries >= other.queries and self.tokens >= other.tokens and self.usd >= other.usd - 1e-12


@dataclass(frozen=True)
class Budget:
    max_queries: int | None = None
    max_tokens: int | None = None
    max_usd: float | None = None

    @classmethod
    def from_cfg(cls, cfg: Mapping[str, Any]) -> Budget:
        max_queries, max_tokens, max_usd = cfg.get("max_queries"), cfg.get("max_tokens"), cfg.get("max_usd")
        for name, value in (("max_queries", max_queries), ("max_tokens", max_tokens)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ConfigError(f"budget.{name} must be a positive integer or null (got {value!r})")
        if max_usd is not None and (isinstance(max_usd, bool) or not isinstance(max_usd, (int, float)) or max_usd <= 0):
            raise ConfigError(f"budget.max_usd must be a positive number or null (got {max_usd!r})")
        return cls(max_queries, max_tokens, None if max_usd is None else float(max_usd))

    def scaled(self, fraction: float) -> Budget:
        """A ``fraction`` of every limit (at least one query): TAiL's warm-up share."""
        return Budget(
            None if self.max_queries is None else max(1, round(self.max_queries * fraction)),
            None if self.max_tokens is None else max(1, round(self.max_tokens * fraction)),
            None if self.max_usd is None else self.max_usd * fraction,
        )

    def minus(self, spent: Spend) -> Budget:
        return Budget(
            None if self.max_queries is None else self.max_queries - spent.queries,
            None if self.max_tokens is None else self.max_tokens - spent.tokens,
            None if self.max_usd is None else self.max_usd - spent.usd,
        )

    def allows(self, spend: Spend) -> bool:
        return (
            (self.max_queries is None or spend.queries <= self.max_queries)
            and (self.max_tokens is None or spend.tokens <= self.max_tokens)
            and (self.max_usd is None or spend.usd <= self.max_usd + 1e-12)
        )

    def queries_for_pool(self, pool_size: int) -> int:
        """How many answers to aim for; a budget larger than the pool is capped, and said so."""
        if self.max_queries is None:
            return pool_size
        if self.max_queries > pool_size:
            log.warning(
                "budget.max_queries=%d exceeds the training pool of %d questions: buying all %d",
                self.max_queries, pool_size, pool_size,
            )
            return pool_size
        return self.max_queries


class BudgetGuard:
    """Thread-safe spent + reserved accounting against a :class:`Budget`."""

    def __init__(self, budget: Budget):
        self.budget = budget
        self.spent = Spend()
        self.reserved = Spend()
        self._lock = threading.Lock()

    def try_reserve(self, worst_case: Spend) -> bool:
        with self._lock:
            if not self.budget.allows(self.spent + self.reserved + worst_case):
                return False
            self.reserved = self.reserved + worst_case
            return True

    def try_charge(self, actual: Spend) -> bool:
        """Charge a known cost (a cached answer) if it fits."""
        with self._lock:
            if not self.budget.allows(self.spent + self.reserved + actual):
                return False
            self.spent = self.spent + actual
            return True

    def budget_left(self) -> str:
        b, used = self.budget, self.spent + self.reserved
        parts = [f"{b.max_queries - used.queries} queries" if b.max_queries else "",
                 f"{b.max_tokens - used.tokens} tokens" if b.max_tokens else "",
                 f"{b.max_usd - used.usd:.6f} USD" if b.max_usd else ""]
        return ", ".join(p for p in parts if p) or "no limit"

    def settle(self, reservation: Spend, actual: Spend | None) -> None:
        """Replace a reservation by what the request really cost (None: it failed, nothing charged)."""
        with self._lock:
            self.reserved = self.reserved - reservation
            if actual is not None:
                self.spent = self.spent + actual
