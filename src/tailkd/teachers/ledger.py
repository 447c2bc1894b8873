"""Every teacher call a run made, appended to ``ledger.jsonl`` the moment it completes."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

from tailkd.teachers.budget import Spend

# statuses whose answers the run uses: each counts against the budget at what the answer cost
USED = ("paid", "cache_hit", "replayed")


class Ledger:
    """Entries: ``status`` is ``paid`` (a request answered and charged now), ``cache_hit`` (served from
    the cache: bought earlier, by this or another run), ``replayed`` (read from a recorded teacher's
    file: bought when it was recorded) or ``failed`` (given up after retries, not charged).

    ``teacher_cost_usd`` and ``teacher_queries`` count every answer used, whenever it was paid for, at
    the list price, so that runs compare at equal budget; ``teacher_paid_usd`` is what this run was
    billed (``charged_usd``: cached prompt tokens and the Batch API at their discounted rates)."""

    def __init__(self, path: Path | None = None):
        self.path = Path(path) if path else None
        self.entries: list[dict[str, Any]] = []
        self.phase: str | None = None  # set by Collector.phase(): what part of a method the calls serve
        self._lock = threading.Lock()

    def record(self, **entry: Any) -> None:
        entry = {"time": round(time.time(), 3), **({"phase": self.phase} if self.phase else {}), **entry}
        with self._lock:
            self.entries.append(entry)
            if self.path is not None:
                with self.path.open("a", encoding="utf-8") as handle:
                    handle.write(json.dumps(entry, ensure_ascii=False) + "\n")

    def spent(self) -> Spend:
        """What the answers used so far count against the budget."""
        with self._lock:
            used = [e for e in self.entries if e["status"] in USED]
        return Spend(len(used), sum(e["input_tokens"] + e["output_tokens"] for e in used),
                     sum(e["cost_usd"] for e in used))

    def summary_by_phase(self) -> dict[str, dict[str, Any]]:
        """Queries, tokens (and of them generated) and USD (accounted and paid now) per ``phase`` the
        entries were recorded in."""
        phases: dict[str, dict[str, Any]] = {}
        for e in self.entries:
            if e["status"] not in USED:
                continue
            row = phases.setdefault(e.get("phase") or "default",
                                    {"queries": 0, "tokens": 0, "output_tokens": 0, "cost_usd": 0.0, "paid_usd": 0.0})
            row["queries"] += 1
            row["tokens"] += e["input_tokens"] + e["output_tokens"]
            row["output_tokens"] += e["output_tokens"]
            row["cost_usd"] += e["cost_usd"]
            row["paid_usd"] += e.get("charged_usd", e["cost_usd"]) if e["status"] == "paid" else 0.0
        return {k: {**v, "cost_usd": round(v["cost_usd"], 6), "paid_usd": round(v["paid_usd"], 6)}
                for k, v in phases.items()}

    def summary(self) -> dict[str, Any]:
        used = [e for e in self.entries if e["status"] in USED]
        return {
            "teacher_queries": len(used),
            "teacher_tokens": sum(e["input_tokens"] + e["output_tokens"] for e in used),
            # what a local teacher's compute goes with: its prompts are mostly shared, its answers not
            "teacher_output_tokens": sum(e["output_tokens"] for e in used),
            "teacher_cost_usd": round(sum(e["cost_usd"] for e in used), 6),
            "teacher_paid_usd": round(sum(e.get("charged_usd", e["cost_usd"]) for e in used if e["status"] == "paid"), 6),
            "teacher_cache_hits": sum(e["status"] == "cache_hit" for e in used),
            "teacher_replayed": sum(e["status"] == "replayed" for e in used),
            "teacher_failures": sum(e["status"] == "failed" for e in self.entries),
            "teacher_requests_sent": sum(e.get("attempts", 0) for e in self.entries if e["status"] != "replayed"),
        }
