"""The teacher cache and its claims on a PostgreSQL server, for sweeps whose jobs run on several hosts.

The same interface and rules as the SQLite cache (:class:`tailkd.teachers.cache.CompletionCache`), so
the collector works with either: every answer is committed the moment it arrives, and a request is
claimed before it is sent, in one transaction per claim (serialised per key by an advisory lock). A
claim of a live process on the same host holds however long its retries take; a dead one's is taken
over at once; another host's holds until its lease runs out. Leases are timed by the server's clock,
so hosts whose clocks disagree still agree on when a lease ends.

psycopg (v3) is an optional dependency (``pip install 'tailkd[postgres]'``), imported only here. The
URL may not carry a password (it would be written to config_resolved.yaml and W&B): libpq reads one
from ``~/.pgpass`` or ``PGPASSWORD``.
"""

from __future__ import annotations

import json
import os
import socket
import threading
from urllib.parse import urlsplit

from tailkd.errors import ConfigError
from tailkd.teachers.backends.protocol import Completion
from tailkd.teachers.claims import claim_held

_DDL = (
    """CREATE TABLE IF NOT EXISTS tailkd_completions (
        key TEXT PRIMARY KEY, backend TEXT NOT NULL, model TEXT NOT NULL, created DOUBLE PRECISION NOT NULL,
        completion TEXT NOT NULL, cost_usd DOUBLE PRECISION NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS tailkd_claims (
        key TEXT PRIMARY KEY, host TEXT NOT NULL, pid INTEGER NOT NULL, expires DOUBLE PRECISION NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS tailkd_batch_jobs (
        digest TEXT PRIMARY KEY, batch_id TEXT, keys TEXT NOT NULL, status TEXT NOT NULL,
        created DOUBLE PRECISION NOT NULL)""",
)
_SCHEMA_LOCK = 0x7461696C6B64  # "tailkd": jobs starting together create the tables one at a time
_NOW = "EXTRACT(EPOCH FROM clock_timestamp())::float8"  # the server's clock, the same for every host


def check_url(url: str) -> None:
    """One clear error for a URL this cache cannot or should not use."""
    parts = urlsplit(url)
    if parts.password:
        raise ConfigError("paths.cache_url carries a password, which would be written to config_resolved.yaml "
                          "and W&B: put it in ~/.pgpass or PGPASSWORD instead")
    if parts.scheme not in ("postgresql", "postgres"):
        raise ConfigError(f"paths.cache_url={url!r} is not a postgresql:// URL "
                          f"(null: the SQLite cache in paths.cache_dir, for jobs on one host)")


def _psycopg():
    try:
        import psycopg
    except ImportError as err:
        raise ConfigError("paths.cache_url names a PostgreSQL server, which needs psycopg: "
                          "pip install 'tailkd[postgres]'") from err
    return psycopg


class PostgresCompletionCache:
    def __init__(self, url: str, *, host: str | None = None):
        """``host``: the name claims are taken under (this machine's by default)."""
        check_url(url)
        self.url = url
        self._psycopg = _psycopg()
        self._lock = threading.Lock()
        self._db = self._connect()
        self.host, self.pid = host or socket.gethostname(), os.getpid()

    def __repr__(self) -> str:  # how logs name it
        return f"PostgreSQL teacher cache at {self.url}"

    def _connect(self):
        extra = {} if "connect_timeout" in self.url else {"connect_timeout": 30}
        try:
            db = self._psycopg.connect(self.url, autocommit=True, **extra)
            with db.transaction():
                db.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
                for ddl in _DDL:
                    db.execute(ddl)
        except self._psycopg.OperationalError as err:
            detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ConfigError(f"cannot reach the teacher cache at paths.cache_url={self.url}: {detail}") from err
        return db

    def _run(self, work):
        """``work(connection)`` under the lock; once more on a new connection if the old one broke
        (a server restart): every operation here is safe to repeat."""
        with self._lock:
            try:
                return work(self._db)
            except self._psycopg.OperationalError:
                if not self._db.closed:
                    raise
                self._db = self._connect()
                return work(self._db)

    def get(self, key: str) -> tuple[Completion, float] | None:
        """The cached completion and what it cost when it was bought."""
        row = self._run(lambda db: db.execute(
            "SELECT completion, cost_usd FROM tailkd_completions WHERE key = %s", (key,)).fetchone())
        return None if row is None else (Completion(**json.loads(row[0])), row[1])

    def put(self, key: str, backend: str, completion: Completion, cost_usd: float) -> None:
        payload = json.dumps(completion.to_dict(), ensure_ascii=False)
        self._run(lambda db: db.execute(
            f"INSERT INTO tailkd_completions VALUES (%s, %s, %s, {_NOW}, %s, %s) ON CONFLICT (key) DO NOTHING",
            (key, backend, completion.model, payload, cost_usd)))

    def claim(self, key: str, lease_s: float) -> bool:
        """As :meth:`CompletionCache.claim`: True when ``key`` is ours to send."""
        return self._run(lambda db: self._claim(db, key, lease_s))

    def _claim(self, db, key: str, lease_s: float) -> bool:
        with db.transaction():
            db.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (key,))
            if db.execute("SELECT 1 FROM tailkd_completions WHERE key = %s", (key,)).fetchone():
                return False  # stored since the caller looked: read it, do not buy it
            row = db.execute(f"SELECT host, pid, expires, {_NOW} FROM tailkd_claims WHERE key = %s",
                             (key,)).fetchone()
            if row is not None and (row[0], row[1]) != (self.host, self.pid) and claim_held(*row, self.host):
                return False
            db.execute(f"INSERT INTO tailkd_claims VALUES (%s, %s, %s, {_NOW} + %s) ON CONFLICT (key) DO UPDATE "
                       "SET host = excluded.host, pid = excluded.pid, expires = excluded.expires",
                       (key, self.host, self.pid, lease_s))
            return True

    def renew(self, keys, lease_s: float) -> None:
        """Extend this process's claims on ``keys``: it is still working on them (a retry)."""
        rows = [(lease_s, k, self.host, self.pid) for k in keys]
        if rows:
            self._run(lambda db: db.cursor().executemany(
                f"UPDATE tailkd_claims SET expires = {_NOW} + %s WHERE key = %s AND host = %s AND pid = %s", rows))

    def release(self, key: str) -> None:
        self._run(lambda db: db.execute("DELETE FROM tailkd_claims WHERE key = %s AND host = %s AND pid = %s",
                                        (key, self.host, self.pid)))

    # -- Batch API jobs, as in CompletionCache --
    def batch_jobs(self, keys) -> list[tuple[str, str | None, list[str]]]:
        """(digest, batch id or None, keys) of every unfinished job holding one of ``keys``."""
        wanted = set(keys)
        rows = self._run(lambda db: db.execute(
            "SELECT digest, batch_id, keys FROM tailkd_batch_jobs WHERE status = 'pending'").fetchall())
        return [(d, b, k) for d, b, raw in rows if wanted & set(k := json.loads(raw))]

    def record_batch_job(self, digest: str, keys, batch_id: str | None = None) -> None:
        self._run(lambda db: db.execute(
            f"INSERT INTO tailkd_batch_jobs VALUES (%s, %s, %s, 'pending', {_NOW}) ON CONFLICT (digest) DO UPDATE "
            "SET batch_id = COALESCE(excluded.batch_id, tailkd_batch_jobs.batch_id), status = 'pending'",
            (digest, batch_id, json.dumps(sorted(keys)))))

    def finish_batch_job(self, digest: str, status: str = "done") -> None:
        self._run(lambda db: db.execute("UPDATE tailkd_batch_jobs SET status = %s WHERE digest = %s",
                                        (status, digest)))

    def __len__(self) -> int:
        return self._run(lambda db: db.execute("SELECT COUNT(*) FROM tailkd_completions").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()
