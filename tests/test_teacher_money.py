"""Nothing paid for is lost, and budgets hold whatever the server says (issue: reliability, items 1-4):
a damaged or full cache, answers bought with a warm or a cold cache, a server that bills above the
limit sent, the dry run's estimate; and one fault-injection run that kills, corrupts and overbills."""

from __future__ import annotations

import json
import logging
import os
import signal
import sqlite3
import time
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from tailkd.errors import ConfigError
from tailkd.tasks import load_task_data
from tailkd.teachers.cache import CACHE_FILE

from test_teacher_openai import (
    REPO,
    buying_order,
    collect_cli,
    finish,
    jsonl,
    make_collector,
    openai_overrides,
)


@pytest.fixture(scope="module")
def data():
    cfg = OmegaConf.to_container(OmegaConf.load(REPO / "conf" / "task" / "chain_sum.yaml"), resolve=True)
    return load_task_data({**cfg, "train_size": 100, "test_size": 5})


def _paid(ledger: Path) -> list[dict]:
    return [e for e in jsonl(ledger) if e["status"] == "paid"] if ledger.is_file() else []


# -- 1. a cache that cannot be written never costs an answer --------------------------------------------

def test_a_full_cache_loses_no_answer_the_run_goes_on_without_it(fake, api_key, data, tmp_path, caplog):
    server = fake()
    # a generous timeout: on a loaded machine 0.5 s timed a request out, and its retry was a second send
    collector = make_collector(server, tmp_path, data, {"max_queries": 20}, max_concurrency=4, timeout_s=30)
    pages = collector.cache._db.execute("PRAGMA page_count").fetchone()[0]
    collector.cache._db.execute(f"PRAGMA max_page_count = {pages}")  # "database or disk is full" on a write
    with caplog.at_level(logging.ERROR):
        annotations = collector.collect(buying_order(data))
    assert len(annotations) == 20 == server.count  # every answer paid for is used, none paid twice
    paid = _paid(tmp_path / "ledger.jsonl")
    assert sorted(e["example_id"] for e in paid) == sorted(a.example_id for a in annotations)
    assert {e["example_id"]: e["text"] for e in paid} == {a.example_id: a.text for a in annotations}
    assert "goes on without it" in caplog.text and collector.cache is None and "full" in collector.cache_error


def test_an_answer_is_in_the_cache_before_the_ledger_says_it_was_paid(fake, api_key, data, tmp_path):
    """A run killed just after its ledger records a paid answer must not pay for it again when the next
    run (another folder, the same cache) asks: at every paid line, the answer is already cached. (The
    crash-and-resume test in test_teacher_openai.py kills at such a line, and failed on a loaded machine.)"""
    server = fake()
    collector = make_collector(server, tmp_path, data, {"max_queries": 12}, max_concurrency=3)
    log, uncached = collector._log, []

    def checked(request, completion, cost, status, attempts, charged=0.0):
        key = request.cache_key(collector.backend.name, collector._identity)
        if status == "paid" and collector.cache.get(key) is None:
            uncached.append(request.example_id)
        log(request, completion, cost, status, attempts, charged)

    collector._log = checked
    assert len(collector.collect(buying_order(data))) == 12
    assert uncached == []
    assert len(_paid(tmp_path / "ledger.jsonl")) == 12


def _damage(path: Path) -> None:
    with path.open("r+b") as handle:  # a few bytes inside the first table pages, as a bad sector would
        for offset in (4096, 8200):
            handle.seek(offset)
            handle.write(b"\xde\xad\xbe\xef" * 4)


def test_a_damaged_cache_is_one_clear_error_before_the_first_request_or_costs_nothing(fake, api_key, data, tmp_path):
    server = fake()
    make_collector(server, tmp_path, data, {"max_queries": 10}).collect(buying_order(data))
    cache = tmp_path / "cache" / CACHE_FILE
    with sqlite3.connect(cache) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    _damage(cache)
    before = server.count
    try:
        collector = make_collector(server, tmp_path, data, {"max_queries": 20}, max_concurrency=8)
        annotations = collector.collect(buying_order(data, seed=1))
    except ConfigError as err:  # refused before anything was sent
        assert "cannot be used" in str(err) and "nothing was sent" in str(err) and server.count == before
        return
    # or the damage shows later: every answer that arrived is in the ledger with its text, and used (the
    # run folder's ledger also holds the first collector's 10)
    paid = _paid(tmp_path / "ledger.jsonl")[before:]
    assert len(annotations) == 20 and len(paid) == server.count - before
    assert all(e["text"] for e in paid)


# -- 2. the same budget buys the same annotations whatever the cache holds ------------------------------

def test_a_warm_cache_buys_exactly_what_a_cold_one_bought(fake, api_key, data, tmp_path):
    server = fake()
    budget = {"max_queries": None, "max_usd": 0.0005}
    order = buying_order(data)[:40]
    cold = make_collector(server, tmp_path, data, budget, max_concurrency=1).collect(order)
    # the pool is now cached (and more: a larger budget)
    make_collector(server, tmp_path / "more", data, {"max_queries": 40}).collect(order)
    warm = make_collector(server, tmp_path, data, budget, max_concurrency=4).collect(order)
    assert [a.example_id for a in warm] == [a.example_id for a in cold]
    assert 0 < len(cold) < 40  # the cap, not the pool, decided


# -- 3. a server that bills above the limit sent ------------------------------------------------------

@pytest.mark.parametrize("budget, concurrency", [({"max_usd": 0.001, "max_queries": None}, 8),
                                                 ({"max_tokens": 3000, "max_queries": None}, 1),
                                                 ({"max_tokens": 3000, "max_queries": None}, 8)])
def test_a_server_billing_above_max_tokens_overruns_a_cap_by_one_request_at_most(fake, api_key, data, tmp_path,
                                                                                budget, concurrency, caplog):
    server = fake(bill_output_tokens=1000, latency_s=0.02)
    collector = make_collector(server, tmp_path, data, budget, max_tokens=100, max_concurrency=concurrency)
    with caplog.at_level(logging.ERROR):
        annotations = collector.collect(buying_order(data))
    summary = collector.ledger.summary()
    assert len(annotations) == server.count >= 1
    one_request = max(e["input_tokens"] + e["output_tokens"] for e in _paid(tmp_path / "ledger.jsonl"))
    if "max_tokens" in budget:  # every answer bills the same: raised reservations stop the run in time
        assert summary["teacher_tokens"] <= budget["max_tokens"] and collector.overrun.tokens == 0
    else:  # the first answer shows the overbilling; it alone may pass the cap
        assert summary["teacher_cost_usd"] <= budget["max_usd"] + collector.price.cost(0, one_request)
        assert collector.overrun.usd == pytest.approx(max(0.0, summary["teacher_cost_usd"] - budget["max_usd"]), abs=1e-9)
    assert "more than the" in caplog.text and server.max_in_flight == 1


def test_an_honest_server_is_sent_many_requests_once_its_first_answer_was_billed_within_the_limit(fake, api_key, data,
                                                                                               tmp_path):
    server = fake(latency_s=0.05)
    collector = make_collector(server, tmp_path, data, {"max_queries": 24}, max_concurrency=8)
    assert len(collector.collect(buying_order(data))) == 24
    assert server.max_in_flight > 1 and collector.overrun.tokens == 0


# -- 4. the dry run estimates what the collector would buy --------------------------------------------

def test_the_dry_run_counts_the_requests_the_collector_then_sends(fake, api_key, data, tmp_path):
    server = fake()
    budget = {"max_queries": None, "max_usd": 0.0005}
    order = buying_order(data)[:40]
    collector = make_collector(server, tmp_path, data, budget, max_concurrency=1)
    sizes = [len(collector.requests_for(e)[0].prompt) / 4 for e in order[:5]]
    from fake_openai import answer

    typical = round(sum(len(answer(r.prompt)) / 4 for e in order[:5] for r in collector.requests_for(e)) / 5)
    estimate = collector.estimate(order, expected_output_tokens=typical)
    assert sizes and server.count == 0
    sent = len(collector.collect(order))
    assert abs(estimate["requests"] - sent) <= 2 and estimate["requests"] > 1


# -- all at once: kill, corrupt, overbill; the ledger against what the server answered ------------------

def test_fault_injection_the_ledger_holds_every_answer_the_server_gave_once(fake, api_key, tmp_path):
    server = fake(latency_s=0.15, fail_rate=0.2, faults=("429", "500", "bad_json"))
    cache_dir, base = tmp_path / "cache", openai_overrides(server, "teacher.max_concurrency=4", "budget.max_queries=30")
    # 1. killed mid-collection
    first = collect_cli(tmp_path / "run1", cache_dir, *base)
    deadline = time.monotonic() + 120
    while len(_paid(tmp_path / "run1" / "ledger.jsonl")) < 6 and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(first.pid, signal.SIGKILL)
    first.communicate()
    time.sleep(0.5)  # the requests in flight at the kill reach the server's end
    # 2. the same command again: what was paid comes from the cache, the rest is bought
    finish(collect_cli(tmp_path / "run2", cache_dir, *base))
    keys = [(e["example_id"], e["sample_index"]) for i in (1, 2) for e in _paid(tmp_path / f"run{i}" / "ledger.jsonl")]
    assert len(keys) == len(set(keys))  # nothing in the ledgers paid twice
    # every answer the server gave is in a ledger, but those sent into the killed process (at most
    # what was in flight), which the second run bought again
    assert 0 <= len(server.answered) - len(keys) <= 4
    assert len(jsonl(tmp_path / "run2" / "annotations.jsonl")) == 30
    # 3. the cache damaged: one clear error before anything is sent, or a run that loses nothing
    with sqlite3.connect(cache_dir / CACHE_FILE) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    _damage(cache_dir / CACHE_FILE)
    before = len(server.answered)
    third = collect_cli(tmp_path / "run3", cache_dir, *base, "budget.max_queries=40", "seed=1")
    out, err = third.communicate(timeout=180)
    if third.returncode != 0:
        assert third.returncode == 2 and "cannot be used" in out + err and len(server.answered) == before
    else:
        assert len(_paid(tmp_path / "run3" / "ledger.jsonl")) == len(server.answered) - before
    # 4. a server billing ten times max_tokens: the token cap holds
    greedy = fake(bill_output_tokens=1000)
    finish(collect_cli(tmp_path / "run4", tmp_path / "cache4", *openai_overrides(
        greedy, "teacher.max_concurrency=8", "teacher.max_tokens=100", "budget.max_queries=null",
        "budget.max_tokens=3000")))
    results = json.loads((tmp_path / "run4" / "results.json").read_text())
    assert results["teacher_tokens"] <= 3000 and len(greedy.answered) == results["teacher_queries"] >= 1
    assert results["teacher_budget_overrun"]["tokens"] == 0
