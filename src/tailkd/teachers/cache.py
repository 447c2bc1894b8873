"""A persistent, content-hashed cache of teacher completions, shared by every run on the machine.

SQLite in WAL mode: many processes (the jobs of a sweep) read and write it at once, and each
completion is committed the moment it arrives, so a crash loses nothing already paid for.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path

from tailkd.teachers.backends.base import Completion

_SCHEMA = """
CREATE TABLE IF NOT EXISTS completions (
    key TEXT PRIMARY KEY,
    backend TEXT NOT NULL,
    model TEXT NOT NULL,
    created REAL NOT NULL,
    completion TEXT NOT NULL,
    cost_usd REAL NOT NULL
)
"""


class CompletionCache:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, timeout=60, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(_SCHEMA)

    def get(self, key: str) -> tuple[Completion, float] | None:
        """The cached completion and what it cost when it was bought."""
        with self._lock:
            row = self._db.execute("SELECT completion, cost_usd FROM completions WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        return Completion(**json.loads(row[0])), row[1]

    def put(self, key: str, backend: str, completion: Completion, cost_usd: float) -> None:
        payload = json.dumps(completion.to_dict(), ensure_ascii=False)
        with self._lock:
            self._db.execute(
                "INSERT OR IGNORE INTO completions VALUES (?, ?, ?, ?, ?, ?)",
                (key, backend, completion.model, time.time(), payload, cost_usd),
            )

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM completions").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()
