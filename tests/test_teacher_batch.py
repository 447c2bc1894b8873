"""teacher.mode=batch against the fake Batch API: half the price, caps, partial failure and expiry,
a kill while a batch is pending, cached prompt tokens, and a dry run that sends nothing."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from tailkd.teachers import CACHE_FILE, CompletionCache

from test_teacher_openai import buying_order, collect_cli, finish, jsonl, make_collector, openai_overrides

FAST_BATCH = {"poll_s": 0.05, "max_wait_s": 60, "max_requests_per_batch": 10, "max_in_flight": 2}


@pytest.fixture
def chain_data():
    from omegaconf import OmegaConf

    from tailkd.tasks import load_task_data

    from test_teacher_openai import REPO

    cfg = OmegaConf.to_container(OmegaConf.load(REPO / "conf" / "task" / "chain_sum.yaml"), resolve=True)
    return load_task_data({**cfg, "train_size": 100, "test_size": 5})


def _batch(server, tmp_path, data, budget, **teacher):
    return make_collector(server, tmp_path, data, budget, mode="batch", batch=dict(FAST_BATCH), **teacher)


def test_a_batch_collection_is_priced_at_half_and_cached(fake, api_key, tmp_path, chain_data):
    data = chain_data
    server = fake(batch_latency_s=0.2)
    collector = _batch(server, tmp_path, data, {"max_queries": 25})
    annotations = collector.collect(buying_order(data))
    assert len(annotations) == 25 and len(server.batches) == 3  # at most 10 requests a batch
    assert server.count == 0  # nothing went through the live endpoint
    # batch lines carry the task's stop sequences as live requests do: a few-shot continuation is not paid
    assert all(line["body"]["stop"] == list(data.task.teacher_stop) for b in server.batches.values() for line in b["input"])
    summary = collector.ledger.summary()
    assert summary["teacher_paid_usd"] == pytest.approx(summary["teacher_cost_usd"] / 2, abs=2e-6)  # 6-decimal sums
    assert all(a.meta.get("batch") for a in annotations)
    again = _batch(server, tmp_path, data, {"max_queries": 25})
    assert len(again.collect(buying_order(data))) == 25 and len(server.batches) == 3  # all from the cache
    assert again.ledger.summary()["teacher_paid_usd"] == 0


def test_failed_and_expired_items_go_into_a_new_batch_and_answered_ones_are_kept(fake, api_key, tmp_path, chain_data):
    server = fake(batch_fail_rate=0.3)
    collector = _batch(server, tmp_path / "fail", chain_data, {"max_queries": 10}, retry={
        "max_attempts": 5, "base_delay_s": 0.01, "max_delay_s": 0.02})
    assert len(collector.collect(buying_order(chain_data))) == 10
    sizes = [len(b["input"]) for b in server.batches.values()]
    assert sizes[0] == 10 and len(sizes) >= 2 and sum(sizes) - 10 == sum(sizes[1:])  # only the failures again
    expiring = fake(batch_expire_after=6)
    collector = _batch(expiring, tmp_path / "expire", chain_data, {"max_queries": 10},
                       retry={"max_attempts": 3, "base_delay_s": 0.01, "max_delay_s": 0.02})
    annotations = collector.collect(buying_order(chain_data))
    # every batch expires after its first 6: 10 -> 6 answered, then the other 4 in a new batch
    assert [len(b["input"]) for b in expiring.batches.values()] == [10, 4] and len(annotations) == 10


def test_a_dollar_cap_holds_under_batch_mode(fake, api_key, tmp_path, chain_data):
    server = fake()
    collector = _batch(server, tmp_path, chain_data, {"max_usd": 0.0002, "max_queries": None}, max_tokens=64,
                       model="gpt-4o-mini")
    annotations = collector.collect(buying_order(chain_data))
    summary = collector.ledger.summary()
    assert 0 < len(annotations) < 100 and summary["teacher_cost_usd"] <= 0.0002
    sent = sum(len(b["input"]) for b in server.batches.values())
    assert sent == len(annotations)  # every request submitted had its worst case reserved first


def test_cached_prompt_tokens_are_billed_at_their_rate(fake, api_key, tmp_path, chain_data):
    server = fake(cached_tokens=10)
    collector = make_collector(server, tmp_path, chain_data, {"max_queries": 5}, model="gpt-4o-mini")
    annotations = collector.collect(buying_order(chain_data))
    entries = {e["example_id"]: e for e in collector.ledger.entries}
    for a in annotations:
        e = entries[a.example_id]
        assert a.meta["cached_input_tokens"] == 10
        full = (a.input_tokens * 0.15 + a.output_tokens * 0.60) / 1e6
        assert e["cost_usd"] == pytest.approx(full)  # the list cost: what runs compare on
        assert e["charged_usd"] == pytest.approx(full - 10 * (0.15 - 0.075) / 1e6)


def test_a_kill_while_a_batch_is_pending_resumes_polling_and_never_submits_again(fake, api_key, tmp_path):
    server = fake(batch_latency_s=4.0)
    cache = tmp_path / "cache"
    overrides = openai_overrides(server, "task=chain_sum", "budget.max_queries=12", "teacher.mode=batch",
                                 "teacher.batch.poll_s=0.1", "teacher.batch.max_requests_per_batch=12")
    proc = collect_cli(tmp_path / "run1", cache, *overrides)
    try:
        deadline = time.monotonic() + 120
        while not server.batches:
            assert proc.poll() is None and time.monotonic() < deadline, "run 1 ended before it submitted"
            time.sleep(0.02)
        time.sleep(0.3)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL and len(server.batches) == 1
    finish(collect_cli(tmp_path / "run2", cache, *overrides))
    results = json.loads((tmp_path / "run2" / "results.json").read_text())
    assert len(server.batches) == 1, "the batch was submitted (paid for) twice"
    assert results["num_annotations"] == 12 and results["teacher_paid_usd"] > 0
    assert len(jsonl(tmp_path / "run2" / "annotations.jsonl")) == 12
    assert len(CompletionCache(cache / CACHE_FILE)) == 12


def test_dry_run_prints_the_estimate_and_sends_nothing(fake, api_key, tmp_path):
    server = fake()
    proc = collect_cli(tmp_path / "dry", tmp_path / "cache", *openai_overrides(
        server, "task=chain_sum", "budget.max_queries=40", "teacher.model=gpt-4o-mini", "collect.dry_run=true"))
    out = finish(proc)
    assert server.count == 0 and not server.batches and not (tmp_path / "dry" / "ledger.jsonl").exists()
    estimate = json.loads((tmp_path / "dry" / "estimate.json").read_text())
    assert estimate["requests"] == 40
    assert estimate["worst_case_usd"]["batch"] == pytest.approx(estimate["worst_case_usd"]["live"] / 2, abs=1e-6)
    assert estimate["expected_usd"]["live"] < estimate["worst_case_usd"]["live"]
    assert "worst case" in out and "batch" in out
