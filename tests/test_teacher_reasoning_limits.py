"""Reasoning-model teachers (their own output limit, no sampling knobs, reasoning tokens priced,
reasoning kept and usable as the rationale) and rate limits (configured, read from the server's
headers, a 429 pausing every worker), against the fake server."""

from __future__ import annotations

import datetime as dt
import threading
import time

import pytest

from tailkd.teachers.ratelimit import RateLimiter, parse_duration, retry_after

from fake_openai import REASONING
from test_teacher_openai import buying_order, make_collector


@pytest.fixture
def chain_data():
    from omegaconf import OmegaConf

    from tailkd.tasks import load_task_data

    from test_teacher_openai import REPO

    cfg = OmegaConf.to_container(OmegaConf.load(REPO / "conf" / "task" / "chain_sum.yaml"), resolve=True)
    return load_task_data({**cfg, "train_size": 100, "test_size": 5})


@pytest.mark.parametrize("style", ["field", "think"])
def test_a_reasoning_teacher_is_asked_right_priced_and_its_reasoning_kept(fake, api_key, tmp_path, chain_data, style):
    server = fake(reasoning=style)
    collector = make_collector(server, tmp_path, chain_data, {"max_queries": 4}, model="o3-mini", max_tokens=300,
                               token_limit_param="max_completion_tokens", send_temperature=False,
                               reasoning_effort="low", rationale_from="reasoning")
    annotations = collector.collect(buying_order(chain_data))
    bodies = [r["body"] for r in server.requests]
    assert all(b["max_completion_tokens"] == 300 and "max_tokens" not in b and "temperature" not in b
               and b["reasoning_effort"] == "low" for b in bodies)
    for a in annotations:
        assert a.meta["reasoning"] == REASONING and a.rationale == REASONING  # learnt as the rationale
        assert "<think>" not in a.text and a.answer is not None  # the answer from the reply itself
        assert a.meta.get("reasoning_tokens", 0) > 0 or style == "think"
        # the reasoning tokens are output tokens: priced at o3-mini's output rate
        assert a.output_tokens > len(a.text) / 4
        assert a.cost_usd == pytest.approx((a.input_tokens * 1.10 + a.output_tokens * 4.40) / 1e6)


def test_a_plain_teacher_keeps_the_content_as_rationale(fake, api_key, tmp_path, chain_data):
    server = fake(reasoning="field")
    [a] = make_collector(server, tmp_path, chain_data, {"max_queries": 1}).collect(buying_order(chain_data))
    assert a.meta["reasoning"] == REASONING and a.rationale != REASONING
    assert "temperature" in server.requests[0]["body"] and "max_tokens" in server.requests[0]["body"]


def test_retry_after_forms_and_durations():
    assert retry_after({"Retry-After": "2"}) == 2.0
    assert retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=30)
    assert 28 <= retry_after({"Retry-After": later.strftime("%a, %d %b %Y %H:%M:%S GMT")}) <= 31
    assert retry_after({"Retry-After": "soon"}) is None and retry_after({}) is None
    assert parse_duration("6m0s") == 360 and parse_duration("20ms") == 0.02 and parse_duration("1.5s") == 1.5


def test_a_pause_holds_every_worker():
    limiter = RateLimiter(window_s=1.0)
    limiter.pause(0.3)
    started, waited = time.monotonic(), []

    def worker():
        limiter.acquire()
        waited.append(time.monotonic() - started)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(waited) == 4 and min(waited) >= 0.29


def test_configured_and_server_limits_keep_a_concurrent_collection_clear_of_429s(fake, api_key, tmp_path, chain_data):
    # every answer takes 50 ms (all three servers), so the blind run's 8 workers ask again together and
    # overrun the limit in every full window (15-16 429s), whatever the load; instant answers left it to
    # thread scheduling (2-13 429s beside two training jobs, once fewer than the headers-only run's)
    window = {"rpm_limit": 10, "window_s": 0.5, "latency_s": 0.05}
    blind = fake(**window)
    make_collector(blind, tmp_path / "blind", chain_data, {"max_queries": 30}, max_concurrency=8,
                   rate_limit_headers=False).collect(buying_order(chain_data))
    assert blind.rate_limited > 0  # 8 in flight against 10 per half second: it runs into the limit
    aware = fake(**window)
    # configured at half the server's 10: the client stamps a request when it sends it, the server when it
    # arrives, and on a loaded machine requests sent in two client windows can arrive in one server window
    # (at 8 an 11th got in, once in three runs beside a training job); at half, only a delay longer than
    # the window could
    collector = make_collector(aware, tmp_path / "aware", chain_data, {"max_queries": 30}, max_concurrency=8,
                               max_requests_per_minute=5, rate_limit_window_s=0.5)
    assert len(collector.collect(buying_order(chain_data))) == 30
    assert aware.rate_limited == 0
    headers_only = fake(**window)  # no configured limit: the server's remaining/reset headers slow it down
    collector = make_collector(headers_only, tmp_path / "headers", chain_data, {"max_queries": 30}, max_concurrency=8)
    assert len(collector.collect(buying_order(chain_data))) == 30
    assert headers_only.rate_limited < blind.rate_limited and collector.backend.limiter.pauses > 0


@pytest.mark.parametrize("supported", [True, False])
def test_several_samples_in_one_request_bill_the_prompt_once(fake, api_key, tmp_path, chain_data, supported):
    server = fake(n_supported=supported)
    collector = make_collector(server, tmp_path, chain_data, {"max_queries": 12}, n_samples=3,
                               samples_per_request=True, temperature=0.7, max_concurrency=2)
    annotations = collector.collect(buying_order(chain_data))
    assert len(annotations) == 12 and sorted({a.sample_index for a in annotations}) == [0, 1, 2]
    by_question = {}
    for a in annotations:
        by_question.setdefault(a.example_id, []).append(a)
    if supported:  # 4 questions, one request each, n=3; the prompt's tokens on sample 0 only
        assert server.count == 4 and {r["body"]["n"] for r in server.requests} == {3}
        for samples in by_question.values():
            inputs = sorted(a.input_tokens for a in samples)
            assert inputs[:2] == [0, 0] and inputs[2] > 0 and len({a.text for a in samples}) == 3
    else:  # the server ignored n: the other samples went out on their own
        assert server.count == 4 + 8
        assert all(a.input_tokens > 0 for a in annotations)
    # each sample is cached under its own index: asking again pays nothing
    again = make_collector(server, tmp_path, chain_data, {"max_queries": 12}, n_samples=3, samples_per_request=True,
                           temperature=0.7)
    sent = server.count
    assert len(again.collect(buying_order(chain_data))) == 12 and server.count == sent
