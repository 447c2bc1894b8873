"""The OpenAI-compatible teacher end to end against a fake server (tests/fake_openai.py): budgets,
the cache, concurrency, retries and faults, crash and resume, and where the API key may go.

Most tests drive :func:`tailkd.teachers.build_collector` in-process with conf/teacher/openai.yaml;
the acceptance, rerun and crash tests run the real ``tailkd-collect`` Hydra app in a subprocess.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from tailkd.errors import ConfigError
from tailkd.tasks import load_task_data
from tailkd.teachers import CACHE_FILE, CompletionCache, build_collector, get_selector

from conftest import KEY_ENV
from fake_openai import ALL_FAULTS, FakeOpenAI, answer

REPO = Path(__file__).resolve().parents[1]
GSM8K_SAMPLE = REPO.parent / "shared" / "data" / "gsm8k" / "test_sample.jsonl"
FAST = {"max_attempts": 5, "base_delay_s": 0.01, "max_delay_s": 0.05}
FAST_OVERRIDES = ["teacher.retry.base_delay_s=0.01", "teacher.retry.max_delay_s=0.05", "teacher.timeout_s=0.5"]
# for tests that count the requests the server saw: FAST_OVERRIDES' 0.5 s, on a machine busy enough to hold
# an answer of 0.15-0.3 s back that long, made a retry that the server counted as a second request
PATIENT_CLIENT = "teacher.timeout_s=30"


# -- fixtures and helpers --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def data():
    cfg = OmegaConf.to_container(OmegaConf.load(REPO / "conf" / "task" / "chain_sum.yaml"), resolve=True)
    return load_task_data({**cfg, "train_size": 100, "test_size": 5})


def teacher_cfg(server: FakeOpenAI, **changes) -> dict:
    cfg = OmegaConf.to_container(OmegaConf.load(REPO / "conf" / "teacher" / "openai.yaml"), resolve=True)
    cfg.update(base_url=server.base_url, timeout_s=0.5, retry=dict(FAST))
    cfg.update(changes)
    return cfg


def make_collector(server, tmp_path: Path, data, budget: dict, **teacher):
    return build_collector(teacher_cfg(server, **teacher), {"order": "random", **budget}, data.task,
                           cache_dir=tmp_path / "cache", ledger_path=tmp_path / "ledger.jsonl", progress=False)


def buying_order(data, seed: int = 0):
    return get_selector("random")(data.train, random.Random(seed))


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def collect_cli(run_dir: Path, cache_dir: Path, *overrides: str) -> subprocess.Popen:
    """The real Hydra app, as a subprocess: the installed ``tailkd-collect`` script beside this Python,
    else its module (an editable install made before the script was declared has no script)."""
    script = Path(sys.executable).with_name("tailkd-collect")
    cmd = [str(script)] if script.is_file() else [sys.executable, "-m", "tailkd.cli.collect"]
    cmd += [f"hydra.run.dir={run_dir}", *overrides]
    env = {**os.environ, "TAILKD_CACHE_DIR": str(cache_dir)}
    return subprocess.Popen(cmd, env=env, cwd=run_dir.parent, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def finish(proc: subprocess.Popen) -> str:
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, (out + err)[-3000:]
    return out + err


def openai_overrides(server: FakeOpenAI, *more: str) -> list[str]:
    return ["teacher=openai", f"teacher.base_url={server.base_url}", "teacher.model=gpt-4o-mini",
            *FAST_OVERRIDES, *more]


def assert_key_nowhere(key: str, roots, texts=()) -> None:
    """Neither the key nor its secret part in any file under ``roots`` (bytes, sqlite included)."""
    secret = key.removeprefix("sk-test-").encode()
    files = [p for root in roots for p in Path(root).rglob("*") if p.is_file()]
    assert any(p.name == CACHE_FILE for p in files) and any(p.name == "ledger.jsonl" for p in files)
    for path in files:
        assert secret not in path.read_bytes(), f"the API key leaked into {path}"
    for text in texts:
        assert secret.decode() not in text, "the API key leaked into the output"


def assert_key_was_sent(server: FakeOpenAI, key: str) -> None:
    assert {r["headers"].get("authorization") for r in server.requests} == {f"Bearer {key}"}


# -- in-process: the collector against the server ---------------------------------------------------
def test_fake_server_answers_chain_sums():
    assert answer("Question: What is 12 + 7 - 3?") == "12 + 7 = 19. 19 - 3 = 16. The answer is 16."
    assert answer("Question: What is 15 - 43 - 75?") == "15 - 43 = -28. -28 - 75 = -103. The answer is -103."
    assert answer("How many apples?").endswith("The answer is 42.")


def test_collects_exactly_the_budget_through_faults(fake, api_key, data, tmp_path):
    server = fake(fail_rate=0.4, latency_s=0.01, seed=1)
    collector = make_collector(server, tmp_path, data, {"max_queries": 30, "max_usd": 0.05},
                               retry={**FAST, "max_attempts": 3}, max_concurrency=8)
    annotations = collector.collect(buying_order(data))
    gold = {e.id: e.answer for e in data.train}
    assert len(annotations) == 30 and len({a.example_id for a in annotations}) == 30
    assert all(not a.parse_failed and a.answer == gold[a.example_id] for a in annotations)
    summary, ledger = collector.ledger.summary(), jsonl(tmp_path / "ledger.jsonl")
    assert ledger == collector.ledger.entries
    failed = [e for e in ledger if e["status"] == "failed"]
    assert summary["teacher_queries"] == 30 and summary["teacher_failures"] == len(failed)
    assert all(e["attempts"] == 3 and e["cost_usd"] == 0 for e in failed)
    # every request the server saw is accounted for, and the faults made retries
    assert summary["teacher_requests_sent"] == server.wait_quiet() > 30
    assert {r["fault"] for r in server.requests} >= set(ALL_FAULTS)
    assert 0 < summary["teacher_cost_usd"] <= 0.05
    assert summary["teacher_cost_usd"] == pytest.approx(sum(a.cost_usd for a in annotations), abs=1e-6)
    price = collector.price
    assert all(a.cost_usd == pytest.approx(price.cost(a.input_tokens, a.output_tokens)) for a in annotations)
    assert len(collector.cache) == len({a.prompt for a in annotations})  # a repeated question is one entry
    assert_key_was_sent(server, api_key)


@pytest.mark.parametrize("cap, faults", [
    ("max_usd", 0.0), ("max_tokens", 0.0), ("max_usd", 0.3), ("max_tokens", 0.3),
], ids=["usd", "tokens", "usd-faults", "tokens-faults"])
def test_cap_never_exceeded_with_16_in_flight(fake, api_key, data, tmp_path, cap, faults):
    server = fake(latency_s=0.05, fail_rate=faults, faults=("429", "500", "bad_json"))
    probe = make_collector(server, tmp_path / "probe", data, {}, max_tokens=64)
    order = buying_order(data)
    worst = probe._worst_case(probe.requests_for(order[0])[0])  # every question's is about the same
    limit = 6 * (worst.usd if cap == "max_usd" else worst.tokens)  # six in flight, then answers free room
    collector = make_collector(server, tmp_path, data, {"max_queries": None, cap: limit},
                               max_tokens=64, max_concurrency=16)
    annotations = collector.collect(order)
    ledger = collector.ledger.entries
    paid = [e for e in ledger if e["status"] == "paid"]
    spent = sum(e["cost_usd"] if cap == "max_usd" else e["input_tokens"] + e["output_tokens"] for e in paid)
    assert spent <= limit * (1 + 1e-9)
    assert 5 < len(annotations) == len(paid) < len(order)  # a handful, not the pool
    # the server saw no request that was not reserved and accounted for
    assert server.wait_quiet() == sum(e["attempts"] for e in ledger)
    if not faults:
        assert server.count == len(paid)
    # it stopped because the next question's worst case no longer fit, not earlier
    asked = {e["example_id"] for e in ledger}
    following = next(e for e in order if e.id not in asked)
    next_worst = collector._worst_case(collector.requests_for(following)[0])
    assert spent + (next_worst.usd if cap == "max_usd" else next_worst.tokens) > limit
    assert 1 < server.max_in_flight <= 16


@pytest.mark.parametrize("faults", [("429",), ("500", "503", "bad_json", "no_choices", "stall")],
                         ids=["rate-limited", "broken"])
def test_a_request_that_keeps_failing_is_given_up_uncharged(fake, api_key, data, tmp_path, faults):
    server = fake(fail_rate=1.0, faults=faults, retry_after_s=0.1, stall_s=0.7)
    collector = make_collector(server, tmp_path, data, {"max_queries": 2}, retry={**FAST, "max_attempts": 3})
    assert collector.collect(buying_order(data)[:2]) == []
    ledger = jsonl(tmp_path / "ledger.jsonl")
    assert [(e["status"], e["attempts"], e["cost_usd"]) for e in ledger] == [("failed", 3, 0.0)] * 2
    assert server.wait_quiet() == 6 and collector.ledger.summary()["teacher_requests_sent"] == 6
    assert len(CompletionCache(tmp_path / "cache" / CACHE_FILE)) == 0
    if faults == ("429",):  # Retry-After (0.1 s) honoured over the 0.01 s backoff
        for prompt in set(server.prompts()):
            times = [r["time"] for r in server.requests if r["body"]["messages"][-1]["content"] == prompt]
            assert min(b - a for a, b in zip(times, times[1:])) >= 0.09


@pytest.mark.parametrize("status", ["401", "400"])
def test_non_retryable_errors_are_not_retried(fake, api_key, data, tmp_path, status, caplog):
    server = fake(fail_rate=1.0, faults=(status,))
    collector = make_collector(server, tmp_path, data, {"max_queries": 3})
    if status == "401":  # a bad key fails every request: the run stops at the first answer
        with pytest.raises(ConfigError, match="no retry can fix"):
            collector.collect(buying_order(data)[:5])
        sent = server.wait_quiet()
        assert 1 <= sent <= 4 and len(collector.ledger.entries) == sent  # only what was already in flight
    else:  # a request the server rejects: that question fails, once, and the next one is tried
        assert collector.collect(buying_order(data)[:5]) == []
        assert server.wait_quiet() == 5 == len(collector.ledger.entries) and len(set(server.prompts())) == 5
    ledger = collector.ledger.entries
    assert all(e["status"] == "failed" and e["attempts"] == 1 and f"HTTP {status}" in e["error"] for e in ledger)
    # the 401 body echoes the key it was sent: it must not reach the ledger, the log or the error
    assert_key_nowhere(api_key, [tmp_path], [caplog.text])
    assert_key_was_sent(server, api_key)


def test_missing_key_is_one_clear_error_before_any_request(fake, monkeypatch, data, tmp_path):
    server = fake()
    monkeypatch.delenv(KEY_ENV, raising=False)
    monkeypatch.delenv("TAILKD_TEST_TEACHER_KEY", raising=False)
    for env_name in (KEY_ENV, "TAILKD_TEST_TEACHER_KEY"):
        collector = make_collector(server, tmp_path, data, {"max_queries": 3}, api_key_env=env_name)
        with pytest.raises(ConfigError, match=f"API key is not set: export {env_name}="):
            collector.collect(buying_order(data))
    assert server.count == 0 and not (tmp_path / "ledger.jsonl").exists()


def test_key_is_sent_but_never_written_in_process(fake, api_key, data, tmp_path, caplog, capsys):
    server = fake(fail_rate=0.5, faults=("400", "429", "bad_json", "no_choices"), seed=3)
    collector = make_collector(server, tmp_path, data, {"max_queries": 10}, retry={**FAST, "max_attempts": 2})
    annotations = collector.collect(buying_order(data))
    assert annotations and any(e["status"] == "failed" for e in collector.ledger.entries)
    (tmp_path / "annotations.jsonl").write_text("".join(json.dumps(a.to_dict()) + "\n" for a in annotations))
    captured = capsys.readouterr()
    assert_key_nowhere(api_key, [tmp_path], [caplog.text, captured.out, captured.err])
    assert_key_was_sent(server, api_key)


# -- the real app, in subprocesses ------------------------------------------------------------------
def test_acceptance_collect_then_rerun_from_the_cache(fake, api_key, tmp_path):
    server = fake(fail_rate=0.4, seed=2)
    cache, overrides = tmp_path / "cache", openai_overrides(server, "task=chain_sum", "budget.max_queries=30")
    out1 = finish(collect_cli(tmp_path / "run1", cache, *overrides))
    first = json.loads((tmp_path / "run1" / "results.json").read_text())
    assert first["num_annotations"] == first["teacher_queries"] == 30 <= first["max_queries"]
    assert first["teacher_parse_failures"] == 0 and first["teacher_cache_hits"] == 0
    assert 0 < first["teacher_paid_usd"] == first["teacher_cost_usd"]
    sent = server.wait_quiet()
    assert first["teacher_requests_sent"] == sent > 30  # faults were injected and retried

    out2 = finish(collect_cli(tmp_path / "run2", cache, *overrides))
    second = json.loads((tmp_path / "run2" / "results.json").read_text())
    assert server.wait_quiet() == sent, "the rerun sent requests; everything was in the cache"
    assert second["teacher_cache_hits"] == 30 == second["num_annotations"] and second["teacher_paid_usd"] == 0
    assert second["teacher_cost_usd"] == first["teacher_cost_usd"]  # counted at what it cost when bought
    texts = [[a["text"] for a in jsonl(tmp_path / run / "annotations.jsonl")] for run in ("run1", "run2")]
    assert texts[0] == texts[1]
    assert_key_nowhere(api_key, [tmp_path / "run1", tmp_path / "run2", cache], [out1, out2])
    assert_key_was_sent(server, api_key)


def test_acceptance_gsm8k_from_a_data_dir(fake, api_key, tmp_path):
    if not GSM8K_SAMPLE.is_file():
        pytest.skip(f"GSM8K sample rows not found at {GSM8K_SAMPLE} (../shared/data beside the checkout)")
    rows = GSM8K_SAMPLE.read_text().splitlines()
    assert len(rows) >= 40, "the GSM8K sample needs at least 40 rows (a pool of 30 and a test set)"
    data_dir = tmp_path / "gsm8k"
    data_dir.mkdir()
    (data_dir / "train.jsonl").write_text("\n".join(rows[:-10]) + "\n")
    (data_dir / "test.jsonl").write_text("\n".join(rows[-10:]) + "\n")
    server = fake(fail_rate=0.4, seed=4)
    out = finish(collect_cli(tmp_path / "run", tmp_path / "cache", *openai_overrides(
        server, "task=gsm8k", f"task.data_dir={data_dir}", "budget.max_queries=30")))
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["task"] == "gsm8k" and results["train_pool_size"] == len(rows) - 10
    assert results["num_annotations"] == 30 and 0 < results["teacher_paid_usd"]
    assert results["teacher_requests_sent"] == server.wait_quiet() > 30
    assert {a["answer"] for a in jsonl(tmp_path / "run" / "annotations.jsonl")} == {"42"}
    assert_key_nowhere(api_key, [tmp_path / "run", tmp_path / "cache"], [out])


def test_crash_and_resume_pays_nothing_twice(fake, api_key, tmp_path):
    server = fake(latency_s=0.3)
    cache = tmp_path / "cache"
    overrides = openai_overrides(server, "task=chain_sum", "budget.max_queries=30", "teacher.max_concurrency=4",
                                 PATIENT_CLIENT)
    ledger1 = tmp_path / "run1" / "ledger.jsonl"
    proc = collect_cli(tmp_path / "run1", cache, *overrides)
    try:
        deadline = time.monotonic() + 120
        while not (ledger1.exists() and ledger1.read_text().count('"paid"') >= 6):
            assert proc.poll() is None and time.monotonic() < deadline, "run 1 ended before it could be killed"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        out1 = "".join(proc.communicate(timeout=60))
    assert proc.returncode == -signal.SIGKILL and not (tmp_path / "run1" / "results.json").exists()
    paid1 = [e for e in jsonl(ledger1) if e["status"] == "paid"]
    assert 6 <= len(paid1) < 30
    sent1, prompts1 = server.wait_quiet(), server.prompts()

    out2 = finish(collect_cli(tmp_path / "run2", cache, *overrides))
    entries2 = jsonl(tmp_path / "run2" / "ledger.jsonl")
    paid2 = [e for e in entries2 if e["status"] == "paid"]
    hits2 = {e["example_id"] for e in entries2 if e["status"] == "cache_hit"}
    assert len(paid2) + len(hits2) == 30 == json.loads((tmp_path / "run2" / "results.json").read_text())[
        "num_annotations"]
    assert {e["example_id"] for e in paid1} <= hits2, "an answer received before the crash was bought again"
    # no prompt (cache key) paid twice, and none answered in run 1 asked for again
    prompt_of = {a["example_id"]: a["prompt"] for a in jsonl(tmp_path / "run2" / "annotations.jsonl")}
    paid = Counter(prompt_of[e["example_id"]] for e in paid1 + paid2)
    assert max(paid.values()) == 1, "a question was paid twice"
    assert server.wait_quiet() - sent1 == len(paid2)
    answered1 = {prompt_of[e["example_id"]] for e in paid1}
    assert answered1 <= set(prompts1) and not answered1 & set(server.prompts()[sent1:])
    assert sent1 - len(paid1) <= 4  # at most the requests in flight at the kill were lost
    assert len(CompletionCache(cache / CACHE_FILE)) == 30
    assert_key_nowhere(api_key, [tmp_path / "run1", tmp_path / "run2", cache], [out1, out2])


@pytest.mark.parametrize("fail_rate", [0.0, 0.4], ids=["clean", "faults"])
def test_identical_questions_in_flight_are_paid_once(fake, api_key, data, tmp_path, fail_rate):
    """A pool that repeats questions (chain_sum does): with 16 in flight, the repeat waits for the
    first answer and is served from the cache at its cost, instead of being bought twice."""
    from dataclasses import replace

    server = fake(latency_s=0.05, fail_rate=fail_rate, faults=("429", "500"))
    base = buying_order(data)[:10]
    order = [replace(e, id=f"{e.id}-copy{c}") for c in range(3) for e in base]  # each question 3 times, ids differ
    collector = make_collector(server, tmp_path, data, {"max_queries": None}, max_concurrency=16)
    annotations = collector.collect(order)
    assert [a.example_id for a in annotations] == [e.id for e in order]
    ledger = collector.ledger.entries
    assert len([e for e in ledger if e["status"] == "paid"]) == 10
    assert len([e for e in ledger if e["status"] == "cache_hit"]) == 20
    assert server.wait_quiet() == sum(e["attempts"] for e in ledger if e["status"] == "paid")
    by_question = {}
    for a in annotations:
        by_question.setdefault(a.prompt, set()).add((a.text, a.cost_usd))
    assert all(len(v) == 1 for v in by_question.values())  # the same answer at the same cost


def test_repeats_count_against_the_budget(fake, api_key, data, tmp_path):
    server = fake(latency_s=0.05)
    base = buying_order(data)[:4]
    order = [e for c in range(3) for e in base]  # repeated questions, same ids
    collector = make_collector(server, tmp_path, data, {"max_queries": 6}, max_concurrency=16)
    annotations = collector.collect(order)
    assert len(annotations) == 6 and server.wait_quiet() == 4


def test_parallel_jobs_pay_once_for_the_same_questions(fake, api_key, tmp_path):
    """Two jobs of a sweep (hydra/launcher=parallel) buying the same questions at the same time: each
    request is sent by one of them, the other is served its answer from the shared cache."""
    server = fake(latency_s=0.15)
    cache = tmp_path / "cache"
    overrides = openai_overrides(server, "task=chain_sum", "budget.max_queries=24", "teacher.max_concurrency=4",
                                 PATIENT_CLIENT)
    procs = [collect_cli(tmp_path / f"job{i}", cache, *overrides) for i in range(2)]
    outs = [finish(p) for p in procs]
    results = [json.loads((tmp_path / f"job{i}" / "results.json").read_text()) for i in range(2)]
    assert [r["num_annotations"] for r in results] == [24, 24]
    paid = sum(r["teacher_paid_usd"] > 0 for r in results)
    assert server.wait_quiet() == 24 == len(set(server.prompts())), "a question was paid for twice"
    assert sum(r["teacher_cache_hits"] for r in results) == 24 and paid >= 1
    texts = [sorted((a["example_id"], a["text"]) for a in jsonl(tmp_path / f"job{i}" / "annotations.jsonl"))
             for i in range(2)]
    assert texts[0] == texts[1]
    assert_key_nowhere(api_key, [tmp_path / "job0", tmp_path / "job1", cache], outs)


def test_a_claim_left_by_a_killed_process_is_taken_over(tmp_path):
    cache = CompletionCache(tmp_path / CACHE_FILE)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    cache._db.execute("INSERT INTO claims VALUES (?, ?, ?, ?)", ("k-dead", cache.host, pid, time.time() + 600))
    cache._db.execute("INSERT INTO claims VALUES (?, ?, ?, ?)", ("k-live", cache.host, os.getppid(), time.time() + 600))
    cache._db.execute("INSERT INTO claims VALUES (?, ?, ?, ?)", ("k-old", "elsewhere", 1, time.time() - 1))
    cache._db.execute("INSERT INTO claims VALUES (?, ?, ?, ?)", ("k-slow", cache.host, os.getppid(), time.time() - 5))
    cache._db.execute("INSERT INTO claims VALUES (?, ?, ?, ?)", ("k-away", "elsewhere", 1, time.time() + 600))
    assert cache.claim("k-dead", 60) and cache.claim("k-old", 60)
    assert not cache.claim("k-live", 60)
    assert not cache.claim("k-slow", 60)  # a live process on this machine keeps its claim past the lease
    assert not cache.claim("k-away", 60)  # another machine's claim holds until its lease ends
    assert cache.claim("k-new", 60) and cache.claim("k-new", 60)  # ours: re-entrant
    cache.renew(["k-new"], 3600)
    expires = cache._db.execute("SELECT expires FROM claims WHERE key = 'k-new'").fetchone()[0]
    assert expires > time.time() + 3000
