"""What a run may spend on the teacher, and the ledger of what it spent."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tailkd.errors import ConfigError
from tailkd.teachers.base import Annotation

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Budget:
    """``max_queries``: how many training questions may get a teacher annotation (None: all)."""

    max_queries: int | None = None

    @classmethod
    def from_cfg(cls, cfg: Mapping[str, Any]) -> Budget:
        max_queries = cfg.get("max_queries")
        if max_queries is not None and (not isinstance(max_queries, int) or max_queries < 1):
            raise ConfigError(f"budget.max_queries must be a positive integer or null (got {max_queries!r})")
        return cls(max_queries)

    def queries_for_pool(self, pool_size: int) -> int:
        """The number of questions to buy; a budget larger than the pool is capped, and said so."""
        if self.max_queries is None:
            return pool_size
        if self.max_queries > pool_size:
            log.warning(
                "budget.max_queries=%d exceeds the training pool of %d questions: buying all %d",
                self.max_queries, pool_size, pool_size,
            )
            return pool_size
        return self.max_queries


@dataclass
class Ledger:
    """Every teacher call a run paid for."""

    entries: list[Annotation] = field(default_factory=list)

    def record(self, annotations: list[Annotation]) -> None:
        self.entries.extend(annotations)

    def summary(self) -> dict[str, Any]:
        return {
            "teacher_queries": len(self.entries),
            "teacher_tokens": sum(a.input_tokens + a.output_tokens for a in self.entries),
            "teacher_cost_usd": round(sum(a.cost_usd for a in self.entries), 6),
            "teacher_parse_failures": sum(a.parse_failed for a in self.entries),
        }
