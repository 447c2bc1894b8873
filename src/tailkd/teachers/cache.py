"""A persistent, content-hashed cache of teacher completions, shared by every run on the machine.

SQLite in WAL mode: many processes (the jobs of a sweep) read and write it at once, and each
completion is committed the moment it arrives, so a crash loses nothing already paid for. WAL needs
the processes on one host and a local disk, so a cache folder on a network file system is refused:
sweeps across hosts name a PostgreSQL server in ``paths.cache_url`` instead
(:mod:`tailkd.teachers.cache_postgres`, the same interface and claim rules). :func:`open_cache`
chooses.

Claims keep parallel jobs from paying twice: before a process sends a request it claims the request's
key in the same database (one transaction: no other live claim, then ours), and the others wait for
the answer to land in the cache instead of sending it too. A claim is released when its answer is
stored or its request given up. A claim of a live process on this machine holds however long its
retries take; one left by a process that is gone is taken over at once. A claim from another machine
holds until its lease runs out, and its owner renews the lease before every attempt.
"""

from __future__ import annotations

import json
import os
import re
import socket
import sqlite3
import threading
import time
from pathlib import Path

from tailkd.errors import ConfigError
from tailkd.teachers.backends.protocol import Completion
from tailkd.teachers.claims import claim_held

CACHE_FILE = "teacher_cache.sqlite"  # in the cache folder

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
_CLAIMS = """
CREATE TABLE IF NOT EXISTS claims (
    key TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    expires REAL NOT NULL
)
"""


_BATCHES = """
CREATE TABLE IF NOT EXISTS batch_jobs (
    digest TEXT PRIMARY KEY,
    batch_id TEXT,
    keys TEXT NOT NULL,
    status TEXT NOT NULL,
    created REAL NOT NULL
)
"""


# SQLite's WAL needs shared memory on one host, and these file systems' locks do not hold across hosts
NETWORK_FS = ("nfs", "nfs4", "cifs", "smb3", "smbfs", "fuse.sshfs", "sshfs", "lustre", "gpfs", "beegfs",
              "ceph", "fuse.ceph", "glusterfs", "fuse.glusterfs", "afs", "ocfs2", "gfs2", "fuse.juicefs")


def mount_of(path: Path, mounts: str) -> tuple[str, str]:
    """(mount point, file system type) that ``path`` lies on, from /proc/mounts text."""
    target = str(Path(path).resolve())
    best = ("/", "")
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        # the kernel writes space, tab, newline and backslash in a mount point as octal escapes
        point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[1])
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best[0]):  # a later mount over the same point hides earlier ones
            best = (point, fields[2])
    return best


def refuse_network_fs(folder: Path, mounts: str | None = None) -> None:
    """One clear error when ``folder`` is on a network file system (``mounts``: /proc/mounts text)."""
    if mounts is None:
        try:
            mounts = Path("/proc/mounts").read_text()
        except OSError:  # not Linux: nothing to read, nothing refused
            return
    point, fstype = mount_of(folder, mounts)
    if fstype in NETWORK_FS:
        raise ConfigError(
            f"the teacher cache folder {folder} is on a network file system ({fstype} at {point}), where "
            f"SQLite's WAL mode and file locks do not hold: set paths.cache_dir to a local disk for jobs on "
            f"one host, or paths.cache_url=postgresql://... for a sweep across hosts")


def open_cache(cache_dir: Path | None, url: str | None = None, *, host: str | None = None,
               mounts: str | None = None):
    """The teacher cache: PostgreSQL at ``url`` (``paths.cache_url``), else SQLite in ``cache_dir``."""
    if url:
        from tailkd.teachers.cache_postgres import PostgresCompletionCache

        return PostgresCompletionCache(url, host=host)
    return CompletionCache(Path(cache_dir) / CACHE_FILE, mounts=mounts)


class CompletionCache:
    def __init__(self, path: Path, *, mounts: str | None = None):
        """``mounts``: /proc/mounts text, read from the machine when None."""
        self.path = Path(path)
        refuse_network_fs(self.path.parent, mounts)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, timeout=60, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(_SCHEMA)
        self._db.execute(_CLAIMS)
        self._db.execute(_BATCHES)
        self.host, self.pid = socket.gethostname(), os.getpid()

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

    def claim(self, key: str, lease_s: float) -> bool:
        """Claim ``key`` for this process for ``lease_s`` seconds: False while another live process holds
        it (its answer will land in the cache) or its answer is already there, True when it is ours to
        send (again, if ours already)."""
        now = time.time()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                if self._db.execute("SELECT 1 FROM completions WHERE key = ?", (key,)).fetchone():
                    self._db.execute("COMMIT")  # stored since the caller looked: read it, do not buy it
                    return False
                row = self._db.execute("SELECT host, pid, expires FROM claims WHERE key = ?", (key,)).fetchone()
                if row is not None and (row[0], row[1]) != (self.host, self.pid) and claim_held(*row, now, self.host):
                    self._db.execute("COMMIT")
                    return False
                self._db.execute("INSERT OR REPLACE INTO claims VALUES (?, ?, ?, ?)",
                                 (key, self.host, self.pid, now + lease_s))
                self._db.execute("COMMIT")
                return True
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def renew(self, keys, lease_s: float) -> None:
        """Extend this process's claims on ``keys``: it is still working on them (a retry)."""
        with self._lock:
            self._db.executemany("UPDATE claims SET expires = ? WHERE key = ? AND host = ? AND pid = ?",
                                 [(time.time() + lease_s, k, self.host, self.pid) for k in keys])

    def release(self, key: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM claims WHERE key = ? AND host = ? AND pid = ?", (key, self.host, self.pid))

    # -- Batch API jobs: recorded before they are submitted, so a restart polls instead of paying again --
    def batch_jobs(self, keys) -> list[tuple[str, str | None, list[str]]]:
        """(digest, batch id or None, keys) of every unfinished job holding one of ``keys``."""
        wanted = set(keys)
        with self._lock:
            rows = self._db.execute("SELECT digest, batch_id, keys FROM batch_jobs WHERE status = 'pending'").fetchall()
        return [(d, b, k) for d, b, raw in rows if wanted & set(k := json.loads(raw))]

    def record_batch_job(self, digest: str, keys, batch_id: str | None = None) -> None:
        with self._lock:
            self._db.execute("INSERT INTO batch_jobs VALUES (?, ?, ?, 'pending', ?) ON CONFLICT(digest) DO UPDATE "
                             "SET batch_id = COALESCE(excluded.batch_id, batch_id), status = 'pending'",
                             (digest, batch_id, json.dumps(sorted(keys)), time.time()))

    def finish_batch_job(self, digest: str, status: str = "done") -> None:
        with self._lock:
            self._db.execute("UPDATE batch_jobs SET status = ? WHERE digest = ?", (status, digest))

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM completions").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()
