"""Every teacher call a run made, appended to ``ledger.jsonl`` the moment it completes."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

# statuses whose answers the run uses: each counts against the budget at what the answer cost
USED = ("paid", "cache_hit", "replayed")


class Ledger:
    """Entries: ``status`` is ``paid`` (a request answered and charged now), ``cache_hit`` (served from
    the cache: bought earlier, by this or another run), ``replayed`` (read from a recorded teacher's
    file: bought when it was recorded) or ``failed`` (given up after retries, not charged).

    ``teacher_cost_usd`` and ``teacher_queries`` count every answer used, whenever it was paid for, so
    that runs compare at equal budget; ``teacher_paid_usd`` is what this run sent money for."""

    def __init__(self, path: Path | None = None):
        self.path = Path(path) if path else None
        self.entries: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def record(self, **entry: Any) -> None:
        entry = {"time": round(time.time(), 3), **entry}
        with self._lock:
            self.entries.append(entry)
            if self.path is not None:
                with self.path.open("a", encoding="utf-8") as handle:
                    handle.write(json.dumps(entry, ensure_ascii=False) + "\n")

    def summary(self) -> dict[str, Any]:
        used = [e for e in self.entries if e["status"] in USED]
        return {
            "teacher_queries": len(used),
            "teacher_tokens": sum(e["input_tokens"] + e["output_tokens"] for e in used),
            "teacher_cost_usd": round(sum(e["cost_usd"] for e in used), 6),
            "teacher_paid_usd": round(sum(e["cost_usd"] for e in used if e["status"] == "paid"), 6),
            "teacher_cache_hits": sum(e["status"] == "cache_hit" for e in used),
            "teacher_replayed": sum(e["status"] == "replayed" for e in used),
            "teacher_failures": sum(e["status"] == "failed" for e in self.entries),
            "teacher_requests_sent": sum(e.get("attempts", 0) for e in self.entries if e["status"] != "replayed"),
        }
