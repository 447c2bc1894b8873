"""The teacher cache and its claims on a PostgreSQL server (``paths.cache_url``), for sweeps across
hosts: against a real server these tests start themselves, on a unix socket in a temporary folder.

The server's binaries come from $TAILKD_TEST_PG_BINDIR, else a system PostgreSQL (Debian's
``postgresql``), else the ``pgserver`` wheel (in the ``dev`` extra); without any, these tests skip.
"""

from __future__ import annotations

import glob
import importlib.util
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tailkd.teachers.backends.protocol import Completion
from tailkd.teachers.cache import open_cache

from test_teacher_openai import PATIENT_CLIENT, collect_cli, finish, jsonl, openai_overrides

psycopg = pytest.importorskip("psycopg", reason="psycopg is not installed (pip install -e '.[dev]')")


# -- a throwaway server ------------------------------------------------------------------------------
def _bindir() -> Path | None:
    """A folder holding initdb, pg_ctl and postgres."""
    candidates = [os.environ.get("TAILKD_TEST_PG_BINDIR")]
    if shutil.which("pg_config"):
        found = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True)
        candidates.append(found.stdout.strip())
    candidates += [str(Path(p).parent) for p in filter(None, [shutil.which("initdb")])]
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    spec = importlib.util.find_spec("pgserver")  # found, not imported: only its bundled binaries
    if spec is not None and spec.origin:
        candidates.append(str(Path(spec.origin).parent / "pginstall" / "bin"))
    for candidate in filter(None, candidates):
        if all((Path(candidate) / tool).is_file() for tool in ("initdb", "pg_ctl", "postgres")):
            return Path(candidate)
    return None


def _as_server_user() -> dict:
    """PostgreSQL refuses to run as root: under root, the server runs as nobody."""
    if os.geteuid() != 0:
        return {}
    import pwd

    nobody = pwd.getpwnam("nobody")
    return {"user": nobody.pw_uid, "group": nobody.pw_gid, "extra_groups": []}


@pytest.fixture(scope="session")
def pg_server():
    """(socket folder, admin URL) of a server that lives for the test session."""
    bindir = _bindir()
    if bindir is None:
        pytest.skip("no PostgreSQL binaries (install the dev extra's pgserver, or Debian's postgresql, "
                    "or set TAILKD_TEST_PG_BINDIR)")
    root = Path(tempfile.mkdtemp(prefix="tailkd-pg-"))  # short: a unix socket path has ~100 bytes
    as_user = _as_server_user()
    if as_user:
        os.chown(root, as_user["user"], as_user["group"])
    run = {"check": True, "capture_output": True, "text": True, **as_user}
    try:
        subprocess.run([str(bindir / "initdb"), "-D", str(root / "data"), "-U", "postgres", "--auth=trust",
                        "-E", "UTF8", "--no-sync"], **run)
        options = f"-k {root} -c listen_addresses='' -c fsync=off -c synchronous_commit=off -c max_connections=40"
        subprocess.run([str(bindir / "pg_ctl"), "-D", str(root / "data"), "-l", str(root / "log"), "-w",
                        "-t", "60", "-o", options, "start"], **run)
    except (subprocess.CalledProcessError, PermissionError) as err:
        log = (root / "log").read_text() if (root / "log").exists() else ""
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip(f"cannot start PostgreSQL from {bindir}: {getattr(err, 'stderr', err)} {log[-500:]}")
    try:
        yield root, f"postgresql://postgres@/postgres?host={root}"
    finally:
        subprocess.run([str(bindir / "pg_ctl"), "-D", str(root / "data"), "-m", "immediate", "stop"],
                       capture_output=True, **as_user)
        shutil.rmtree(root, ignore_errors=True)


_databases = itertools.count()


@pytest.fixture
def pg_url(pg_server):
    """A URL of a fresh, empty database on the session's server."""
    root, admin = pg_server
    name = f"t{os.getpid()}_{next(_databases)}"
    with psycopg.connect(admin, autocommit=True) as db:
        db.execute(f"CREATE DATABASE {name}")
    return f"postgresql://postgres@/{name}?host={root}"


def _completion(text: str = "Two plus two is 4. The answer is 4.") -> Completion:
    return Completion(text=text, input_tokens=12, output_tokens=9, model="gpt-4o-mini")


# -- the cache: the same interface as SQLite's -------------------------------------------------------
def test_answers_outlive_the_connection_and_are_shared(pg_url):
    one, two = open_cache(Path("/nonexistent"), pg_url), open_cache(Path("/nonexistent"), pg_url)
    one.put("k1", "openai", _completion(), 0.002)
    one.put("k1", "openai", _completion("another"), 9.0)  # the first answer stays
    one.close()
    completion, cost = two.get("k1")
    assert completion == _completion() and cost == 0.002 and two.get("k2") is None and len(two) == 1


def test_batch_jobs_are_recorded_across_processes(pg_url):
    one, two = open_cache(None, pg_url), open_cache(None, pg_url)
    one.record_batch_job("d1", ["a", "b"])
    one.record_batch_job("d1", ["a", "b"], "batch_123")
    assert two.batch_jobs(["b", "z"]) == [("d1", "batch_123", ["a", "b"])] and two.batch_jobs(["z"]) == []
    two.finish_batch_job("d1")
    assert one.batch_jobs(["a"]) == []


def test_a_connection_the_server_dropped_is_opened_again(pg_url):
    """A server restart or an idle-connection reaper must not cost a paid answer."""
    cache = open_cache(None, pg_url)
    backend_pid = cache._db.execute("SELECT pg_backend_pid()").fetchone()[0]
    with psycopg.connect(pg_url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (backend_pid,))
    cache.put("k1", "openai", _completion(), 0.002)
    assert cache.get("k1")[1] == 0.002 and cache.claim("k2", 60)


def test_claims_follow_the_rules_of_the_sqlite_cache(pg_url):
    cache = open_cache(None, pg_url)
    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True).stdout)
    rows = [("k-dead", cache.host, dead, 600), ("k-live", cache.host, os.getppid(), 600),
            ("k-old", "elsewhere", 1, -1), ("k-slow", cache.host, os.getppid(), -5),
            ("k-away", "elsewhere", 1, 600)]
    with psycopg.connect(pg_url, autocommit=True) as db:
        for key, host, pid, left in rows:
            db.execute("INSERT INTO tailkd_claims VALUES (%s, %s, %s, %s)", (key, host, pid, time.time() + left))
    assert cache.claim("k-dead", 60) and cache.claim("k-old", 60)
    assert not cache.claim("k-live", 60)
    assert not cache.claim("k-slow", 60)  # a live process on this machine keeps its claim past the lease
    assert not cache.claim("k-away", 60)  # another machine's claim holds until its lease ends
    assert cache.claim("k-new", 60) and cache.claim("k-new", 60)  # ours: re-entrant
    cache.renew(["k-new"], 3600)
    with psycopg.connect(pg_url) as db:
        expires = db.execute("SELECT expires FROM tailkd_claims WHERE key = 'k-new'").fetchone()[0]
    assert expires > time.time() + 3000
    cache.put("k-new", "openai", _completion(), 0.001)
    cache.release("k-new")
    assert not cache.claim("k-new", 60)  # answered: read it, do not buy it


_CLAIMER = """
import sys, time
from tailkd.teachers.cache import open_cache
cache = open_cache(None, sys.argv[1], host=sys.argv[2])
assert cache.claim("k-killed", float(sys.argv[3]))
print("claimed", flush=True)
time.sleep(600)
"""


def _claim_and_die(url: str, host: str, lease_s: float) -> float:
    """A client that claims ``k-killed`` and is killed (kill -9) while it holds it; returns the
    monotonic time by which it had claimed."""
    proc = subprocess.Popen([sys.executable, "-c", _CLAIMER, url, host, str(lease_s)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        claimed_at = time.monotonic()
        assert line.strip() == "claimed", proc.stderr.read() if proc.poll() is not None else line
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
    return claimed_at


def test_a_killed_clients_claim_on_another_host_is_taken_over_after_its_lease(pg_url):
    mine = open_cache(None, pg_url)
    claimed_at = _claim_and_die(pg_url, "node-b", lease_s=2.0)
    assert not mine.claim("k-killed", 60)  # its lease runs: another host's client may still be sending
    while not mine.claim("k-killed", 60):
        assert time.monotonic() - claimed_at < 20, "the dead client's claim was never taken over"
        time.sleep(0.05)
    assert time.monotonic() - claimed_at >= 1.5  # not before its lease ran out


def test_a_killed_clients_claim_on_this_host_is_taken_over_at_once(pg_url):
    mine = open_cache(None, pg_url)
    _claim_and_die(pg_url, mine.host, lease_s=600)
    assert mine.claim("k-killed", 60)


def test_two_jobs_pay_once_for_the_same_questions(fake, api_key, tmp_path, pg_url):
    """Two jobs of a sweep (on two hosts, as far as the cache can tell) buying the same questions at the
    same time through one PostgreSQL cache: each request is sent by one of them."""
    server = fake(latency_s=0.15)
    cache_dir = tmp_path / "cache"
    overrides = openai_overrides(server, "task=chain_sum", "budget.max_queries=24", "teacher.max_concurrency=4",
                                 f"paths.cache_url='{pg_url}'", PATIENT_CLIENT)
    procs = [collect_cli(tmp_path / f"job{i}", cache_dir, *overrides) for i in range(2)]
    [finish(p) for p in procs]
    results = [json.loads((tmp_path / f"job{i}" / "results.json").read_text()) for i in range(2)]
    assert [r["num_annotations"] for r in results] == [24, 24]
    retried = [e for i in range(2) for e in jsonl(tmp_path / f"job{i}" / "ledger.jsonl") if e.get("attempts", 1) > 1]
    assert not retried, f"a request was retried, so the server saw it twice: {retried}"
    assert server.wait_quiet() == 24 == len(set(server.prompts())), "a question was paid for twice"
    assert sum(r["teacher_cache_hits"] for r in results) == 24
    texts = [sorted((a["example_id"], a["text"]) for a in jsonl(tmp_path / f"job{i}" / "annotations.jsonl"))
             for i in range(2)]
    assert texts[0] == texts[1]
    assert len(open_cache(None, pg_url)) == 24 and not list(cache_dir.rglob("*.sqlite"))
