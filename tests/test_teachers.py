"""The simulated teacher, the collector's budget, cache, retries and ledger (in-process backends)."""

import logging
import random
import threading

import pytest

from tailkd.errors import ConfigError
from tailkd.tasks import Task, load_task_data
from tailkd.teachers import Budget, CompletionCache, build_collector
from tailkd.teachers.annotation import split_rationale
from tailkd.teachers.backends import Completion, TeacherCallError
from tailkd.teachers.backends.simulated import SimulatedBackend
from tailkd.teachers.budget import BudgetGuard, Spend
from tailkd.teachers.collect import Collector, RetryPolicy
from tailkd.teachers.pricing import Price

from helpers import task_cfg

TEACHER = {
    "backend": "simulated", "model": "sim", "seed": 0, "prompt": "Q: {{ question }}", "max_tokens": 64,
    "corruption": {"rate": 0.3, "kinds": {"wrong_answer": 0.5, "wrong_step": 0.5}},
    "price": {"input_per_1m": 2.0, "output_per_1m": 8.0},
}


@pytest.fixture(scope="module")
def data():
    return load_task_data(task_cfg(train_size=400, test_size=10))


def _simulated(data, **changes):
    backend = SimulatedBackend({**TEACHER, **changes})
    backend.prepare(data.task, data.train)
    return backend


def _answers(backend, examples, task):
    return [backend.answer(e, task) for e in examples]


# -- the simulated teacher ---------------------------------------------------------------------------
def test_corruption_share_kinds_and_effects(data):
    collector = build_collector(TEACHER, {"max_queries": None}, data.task, cache_dir=None, progress=False)
    annotations = collector.collect(data.train)
    gold = {e.id: e for e in data.train}
    kinds = [a.meta["corruption"] for a in annotations]
    assert len(annotations) == len(data.train)
    assert 0.23 < sum(k is not None for k in kinds) / len(kinds) < 0.37
    assert {"wrong_answer", "wrong_step"} <= set(kinds)
    for a in annotations:
        example = gold[a.example_id]
        assert data.task.extract_answer(a.text) == a.answer  # flawed or not, the text states its answer
        if a.meta["corruption"] is None:
            assert a.answer == example.answer and a.rationale == example.rationale
        elif a.meta["corruption"] == "wrong_answer":
            assert a.answer != example.answer
        else:  # wrong_step: a flawed rationale, the right final answer
            assert a.answer == example.answer and a.rationale != example.rationale


def test_wrong_answer_rewrites_the_last_step(data):
    backend = _simulated(data, corruption={"rate": 1.0, "kinds": {"wrong_answer": 1.0}})
    for text, _ in _answers(backend, data.train[:30], data.task):
        rationale, answer = split_rationale(text, data.task)
        assert rationale.rstrip(".").endswith(answer)  # "12 + 7 = 19. 19 - 3 = 15." with answer 15


def test_same_question_same_annotation_whatever_else_is_bought(data):
    backend = _simulated(data)
    assert backend.answer(data.train[7], data.task) == _answers(backend, data.train[:20], data.task)[7]
    other = _simulated(data, seed=1)
    assert _answers(other, data.train, data.task) != _answers(backend, data.train, data.task)


def test_yes_no_and_choice_answers_are_flipped_within_their_type():
    always_wrong = {**TEACHER, "corruption": {"rate": 1.0, "kinds": {"wrong_answer": 1}}}
    task = Task(task_cfg("strategyqa"))
    rows = [{"qid": f"q{i}", "question": f"Q{i}?", "answer": bool(i % 2), "facts": ["A fact."]} for i in range(20)]
    examples = [task.example_from_row(r, r["qid"], "test") for r in rows]
    for (text, _), e in zip(_answers(SimulatedBackend(always_wrong), examples, task), examples):
        assert {task.extract_answer(text), e.answer} == {"yes", "no"}
    task = Task(task_cfg("commonsense_qa"))
    row = {"id": "c1", "question": "Where?", "choices": {"label": list("ABCDE"), "text": list("vwxyz")}, "answerKey": "C"}
    example = task.example_from_row(row, "c1", "test")
    text, _ = SimulatedBackend(always_wrong).answer(example, task)
    assert task.extract_answer(text, example) in set("ABDE")


@pytest.mark.parametrize("changes,field", [
    ({"backend": "gpt-5"}, "teacher.backend"),
    ({"corruption": {"rate": -0.1}}, "teacher.corruption.rate"),
    ({"corruption": {"rate": 0.1, "kinds": {"typo": 1.0}}}, "teacher.corruption.kinds"),
    ({"price": {"input_per_1m": -1}}, "teacher.price"),
    ({"n_samples": 0}, "teacher.n_samples"),
    ({"retry": {"max_tries": 3}}, "teacher.retry"),
])
def test_bad_teacher_config(data, changes, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        build_collector({**TEACHER, **changes}, {}, data.task, cache_dir=None, progress=False)


# -- budget ------------------------------------------------------------------------------------------
def test_collect_respects_max_queries_and_the_ledger_adds_up(data, tmp_path):
    collector = build_collector(TEACHER, {"max_queries": 25}, data.task, cache_dir=None,
                                ledger_path=tmp_path / "ledger.jsonl", progress=False)
    order = random.Random(3).sample(data.train, len(data.train))
    annotations = collector.collect(order)
    assert [a.example_id for a in annotations] == [e.id for e in order[:25]]
    summary = collector.ledger.summary()
    assert summary["teacher_queries"] == 25 == len((tmp_path / "ledger.jsonl").read_text().splitlines())
    assert summary["teacher_cost_usd"] == pytest.approx(sum(a.cost_usd for a in annotations), abs=1e-6)
    for a in annotations:
        assert a.cost_usd == pytest.approx((a.input_tokens * 2.0 + a.output_tokens * 8.0) / 1e6)


@pytest.mark.parametrize("limits", [{"max_usd": 0.004}, {"max_tokens": 900}, {"max_usd": 0.01, "max_tokens": 1200}])
def test_token_and_dollar_caps_hold(data, limits):
    collector = build_collector(TEACHER, limits, data.task, cache_dir=None, progress=False)
    annotations = collector.collect(data.train)
    summary = collector.ledger.summary()
    assert 0 < len(annotations) < len(data.train)
    assert summary["teacher_cost_usd"] <= limits.get("max_usd", float("inf"))
    assert summary["teacher_tokens"] <= limits.get("max_tokens", float("inf"))


def test_budget_larger_than_pool_is_capped(caplog):
    with caplog.at_level(logging.WARNING):
        assert Budget(10_000).queries_for_pool(400) == 400
    assert "exceeds the training pool" in caplog.text


@pytest.mark.parametrize("field,bad", [("max_queries", 0), ("max_queries", -3), ("max_queries", 2.5),
                                       ("max_tokens", "ten"), ("max_usd", 0), ("max_usd", -1.0)])
def test_bad_budget(field, bad):
    with pytest.raises(ConfigError, match=f"budget.{field}"):
        Budget.from_cfg({field: bad})


def test_guard_never_overbooks_under_threads():
    guard = BudgetGuard(Budget(max_queries=50, max_usd=1.0))
    granted = []

    def worker():
        for _ in range(100):
            if guard.try_reserve(Spend(1, 10, 0.03)):
                granted.append(1)
                guard.settle(Spend(1, 10, 0.03), Spend(1, 5, 0.01))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(granted) == guard.spent.queries == 50
    assert guard.spent.usd <= 1.0 and guard.reserved == Spend()


# -- retries, failures and the cache, with an in-process flaky backend -------------------------------
class FlakyBackend:
    """Fails each request ``fails`` times with the given error, then answers."""

    name, model, max_concurrency, batch_size, cacheable = "flaky", "flaky-1", 4, 1, True

    def __init__(self, fails=0, retryable=True, retry_after=None):
        self.fails, self.retryable, self.retry_after = fails, retryable, retry_after
        self.calls: dict[str, int] = {}
        self.lock = threading.Lock()

    def prepare(self, task, examples):
        pass

    def complete(self, requests):
        out = []
        for r in requests:
            with self.lock:
                self.calls[r.example_id] = self.calls.get(r.example_id, 0) + 1
                n = self.calls[r.example_id]
            if n <= self.fails:
                out.append(TeacherCallError("HTTP 503", retryable=self.retryable, retry_after=self.retry_after))
            else:
                out.append(Completion("1 + 1 = 2. The answer is 2.", 20, 10, self.model))
        return out


def _collector(backend, task, cache=None, budget=Budget(), sleeps=None, **kw):
    return Collector(backend, task, prompt="Q: {{ question }}", params={"max_tokens": 32},
                     price=Price(1.0, 1.0), budget=budget, cache=cache, progress=False,
                     retry=RetryPolicy(max_attempts=3, base_delay_s=0.01, max_delay_s=0.02),
                     sleep=(sleeps.append if sleeps is not None else (lambda s: None)), **kw)


def test_transient_failures_are_retried_with_backoff_and_retry_after(data):
    sleeps = []
    backend = FlakyBackend(fails=2, retry_after=0.7)
    annotations = _collector(backend, data.task, sleeps=sleeps).collect(data.train[:5])
    assert len(annotations) == 5 and all(n == 3 for n in backend.calls.values())
    assert sleeps and min(sleeps) >= 0.7  # the server asked for 0.7 s: never sooner


def test_persistent_failure_is_recorded_not_charged_and_the_next_question_is_bought(data):
    backend = FlakyBackend(fails=99)
    collector = _collector(backend, data.task, budget=Budget(max_queries=3))
    assert collector.collect(data.train[:5]) == []
    summary = collector.ledger.summary()
    assert summary["teacher_failures"] == 5 and summary["teacher_cost_usd"] == 0
    assert all(n == 3 for n in backend.calls.values())  # max_attempts, not forever


def test_non_retryable_errors_are_not_retried(data):
    backend = FlakyBackend(fails=1, retryable=False)
    collector = _collector(backend, data.task)
    annotations = collector.collect(data.train[:4])
    assert annotations == [] and set(backend.calls.values()) == {1}


def test_cache_answers_a_rerun_for_free_and_survives_reopening(data, tmp_path):
    first = FlakyBackend()
    cache = CompletionCache(tmp_path / "c.sqlite")
    one = _collector(first, data.task, cache=cache)
    bought = one.collect(data.train[:6])
    cache.close()
    second = FlakyBackend()
    two = _collector(second, data.task, cache=CompletionCache(tmp_path / "c.sqlite"))
    again = two.collect(data.train[:6])
    assert second.calls == {}
    assert [a.text for a in again] == [a.text for a in bought]
    summary = two.ledger.summary()
    assert summary["teacher_cache_hits"] == 6 and summary["teacher_paid_usd"] == 0
    assert summary["teacher_cost_usd"] == pytest.approx(one.ledger.summary()["teacher_cost_usd"])


def test_cache_key_separates_samples_params_and_models(data):
    collector = _collector(FlakyBackend(), data.task, n_samples=2)
    r0, r1 = collector.requests_for(data.train[0])
    other = _collector(FlakyBackend(), data.task).requests_for(data.train[1])[0]
    keys = {r0.cache_key("b", "m"), r1.cache_key("b", "m"), r0.cache_key("b", "m2"), other.cache_key("b", "m")}
    assert len(keys) == 4
    assert r0.cache_key("b", "m") == collector.requests_for(data.train[0])[0].cache_key("b", "m")


def test_split_rationale_of_a_teacher_text(data):
    assert split_rationale("3 + 4 = 7. 7 - 2 = 5. The answer is 5.", data.task) == ("3 + 4 = 7. 7 - 2 = 5.", "5")
    assert split_rationale("I am not sure.", data.task) == ("I am not sure.", None)


def test_cache_identity_names_the_server_and_the_weights():
    from tailkd.teachers.backends.hf_local import HFLocalBackend
    from tailkd.teachers.backends.openai_chat import OpenAIBackend

    openai_ids = {OpenAIBackend({"model": "gpt-4o-mini", "base_url": url}).identity
                  for url in (None, "http://127.0.0.1:8000/v1", "http://127.0.0.1:9000/v1")}
    assert len(openai_ids) == 3
    local = [HFLocalBackend({"model": "teacher", "source": "hub", "pretrained": p}).identity for p in ("/a", "/b")]
    assert local[0] != local[1]


@pytest.mark.parametrize("change", [{"seed": 1}, {"dtype": "bfloat16"}, {"pretrained": "/b"}])
def test_hf_local_cache_identity_changes_with_everything_that_changes_an_answer(change):
    from tailkd.teachers.backends.hf_local import HFLocalBackend

    base = {"model": "teacher", "source": "hub", "pretrained": "/a", "seed": 0, "dtype": "float32"}
    assert HFLocalBackend({**base, **change}).identity != HFLocalBackend(base).identity
    assert HFLocalBackend(dict(base)).identity == HFLocalBackend(base).identity


# -- caps hold whatever a backend charges ----------------------------------------------------------
def _recorded(tmp_path, data, n, cost=None, model="gpt-4o-mini"):
    import json

    rows = [{"example_id": e.id, "text": f"{e.rationale} The answer is {e.answer}.", "model": model,
             "input_tokens": 40, "output_tokens": 30, **({"cost_usd": cost} if cost is not None else {})}
            for e in data.train[:n]]
    path = tmp_path / "recorded.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return {"backend": "recorded", "path": str(path), "prompt": "Q: {{ question }}", "max_tokens": None}


def test_a_dollar_cap_holds_for_recorded_costs_above_the_price_table(data, tmp_path):
    # 0.35 USD a row, far above what gpt-4o-mini's list price makes of 70 tokens
    teacher = _recorded(tmp_path, data, 20, cost=0.35)
    collector = build_collector(teacher, {"max_usd": 0.5}, data.task, cache_dir=tmp_path, progress=False)
    annotations = collector.collect(data.train[:20])
    summary = collector.ledger.summary()
    assert len(annotations) == 1 and summary["teacher_cost_usd"] == pytest.approx(0.35)
    collector = build_collector(teacher, {"max_usd": 1.5}, data.task, cache_dir=tmp_path, progress=False)
    assert len(collector.collect(data.train[:20])) == 4


def test_recorded_answers_count_as_spend_at_their_recorded_or_listed_cost(data, tmp_path):
    collector = build_collector(_recorded(tmp_path, data, 10, cost=0.01), {"max_queries": 6}, data.task,
                                cache_dir=tmp_path, ledger_path=tmp_path / "ledger.jsonl", progress=False)
    collector.collect(data.train[:10])
    summary = collector.ledger.summary()
    assert summary["teacher_queries"] == 6 == summary["teacher_replayed"]
    assert summary["teacher_cost_usd"] == pytest.approx(0.06) and summary["teacher_tokens"] == 6 * 70
    assert summary["teacher_output_tokens"] == 6 * 30  # the recorded rows' own counts, answers only
    assert summary["teacher_paid_usd"] == 0 and summary["teacher_requests_sent"] == 0
    listed = build_collector(_recorded(tmp_path, data, 10), {"max_queries": 6}, data.task, cache_dir=tmp_path,
                             progress=False)
    listed.collect(data.train[:10])
    # no cost in the rows: the price table's gpt-4o-mini (0.15 / 0.60 USD per 1M tokens)
    assert listed.ledger.summary()["teacher_cost_usd"] == pytest.approx(6 * (40 * 0.15 + 30 * 0.60) / 1e6)


def test_every_request_carries_the_output_limit_its_reservation_assumed(data):
    seen = []
    backend = FlakyBackend()
    backend.complete = lambda requests: seen.extend(requests) or FlakyBackend.complete(backend, requests)
    collector = Collector(backend, data.task, prompt="Q: {{ question }}", params={"temperature": 0.0,
                          "max_tokens": None}, price=Price(1.0, 1.0), progress=False)
    collector.collect(data.train[:2])
    assert len(seen) == 2 and {r.param("max_tokens") for r in seen} == {1024}
