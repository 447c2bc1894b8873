"""The simulated teacher, the budget and the ledger."""

import logging

import pytest

from tailkd.errors import ConfigError
from tailkd.tasks import Task, load_task_data
from tailkd.teachers import Budget, Ledger, build_teacher, collect_annotations
from tailkd.teachers.base import split_rationale

from helpers import task_cfg

TEACHER = {
    "backend": "simulated", "model": "sim", "seed": 0, "prompt": "Q: {{ question }}",
    "corruption": {"rate": 0.3, "kinds": {"wrong_answer": 0.5, "wrong_step": 0.5}},
    "price": {"input_per_1m": 2.0, "output_per_1m": 8.0},
}


@pytest.fixture(scope="module")
def data():
    return load_task_data(task_cfg(train_size=400, test_size=10))


def _teacher(**changes):
    cfg = {**TEACHER, **changes}
    return build_teacher(cfg)


def test_corruption_share_kinds_and_effects(data):
    annotations = _teacher().annotate(data.train, data.task)
    gold = {e.id: e for e in data.train}
    kinds = [a.meta["corruption"] for a in annotations]
    assert 0.23 < sum(k is not None for k in kinds) / len(kinds) < 0.37
    for a in annotations:
        example = gold[a.example_id]
        # every annotation, flawed or not, parses back to the answer it states
        assert data.task.extract_answer(a.text) == a.answer
        if a.meta["corruption"] is None:
            assert a.answer == example.answer and a.rationale == example.rationale
        elif a.meta["corruption"] == "wrong_answer":
            assert a.answer != example.answer
        else:  # wrong_step: a flawed rationale, the right final answer
            assert a.answer == example.answer and a.rationale != example.rationale


def test_wrong_answer_rewrites_the_last_step(data):
    annotations = _teacher(corruption={"rate": 1.0, "kinds": {"wrong_answer": 1.0}}).annotate(data.train[:30], data.task)
    for a in annotations:
        assert a.rationale.rstrip(".").endswith(a.answer)  # "12 + 7 = 19. 19 - 3 = 15." with answer 15


def test_same_question_same_annotation_whatever_else_is_bought(data):
    teacher = _teacher()
    alone = teacher.annotate([data.train[7]], data.task)[0]
    among = teacher.annotate(data.train[:20], data.task)[7]
    assert alone == among
    other_seed = _teacher(seed=1).annotate(data.train, data.task)
    assert [a.meta for a in other_seed] != [a.meta for a in teacher.annotate(data.train, data.task)]


def test_yes_no_and_choice_answers_are_flipped_within_their_type():
    rows = [{"qid": f"q{i}", "question": f"Q{i}?", "answer": bool(i % 2), "facts": ["A fact."]} for i in range(20)]
    task = Task(task_cfg("strategyqa"))
    examples = [task.example_from_row(r, r["qid"], "test") for r in rows]
    for a, e in zip(_teacher(corruption={"rate": 1.0, "kinds": {"wrong_answer": 1}}).annotate(examples, task), examples):
        assert {a.answer, e.answer} == {"yes", "no"}
    task = Task(task_cfg("commonsense_qa"))
    row = {"id": "c1", "question": "Where?", "choices": {"label": list("ABCDE"), "text": list("vwxyz")}, "answerKey": "C"}
    example = task.example_from_row(row, "c1", "test")
    wrong = _teacher(corruption={"rate": 1.0, "kinds": {"wrong_answer": 1}}).annotate([example], task)[0]
    assert wrong.answer in set("ABDE")


def test_cost_is_tokens_times_price(data):
    a = _teacher().annotate(data.train[:1], data.task)[0]
    assert a.cost_usd == pytest.approx((a.input_tokens * 2.0 + a.output_tokens * 8.0) / 1e6)
    assert a.input_tokens >= len(a.prompt) // 4 and a.output_tokens >= len(a.text) // 4


def test_collect_respects_the_budget_and_the_ledger_adds_up(data):
    ledger = Ledger()
    annotations = collect_annotations(data.train, data.task, _teacher(), Budget(25), ledger, seed=3)
    assert len(annotations) == 25 == len({a.example_id for a in annotations})
    summary = ledger.summary()
    assert summary["teacher_queries"] == 25
    assert summary["teacher_cost_usd"] == pytest.approx(sum(a.cost_usd for a in annotations), abs=1e-6)
    again = collect_annotations(data.train, data.task, _teacher(), Budget(25), Ledger(), seed=3)
    assert [a.example_id for a in again] == [a.example_id for a in annotations]


def test_budget_larger_than_pool_is_capped(data, caplog):
    with caplog.at_level(logging.WARNING):
        assert Budget(10_000).queries_for_pool(len(data.train)) == len(data.train)
    assert "exceeds the training pool" in caplog.text


@pytest.mark.parametrize("bad", [0, -3, 2.5, "ten"])
def test_bad_budget(bad):
    with pytest.raises(ConfigError, match="budget.max_queries"):
        Budget.from_cfg({"max_queries": bad})


@pytest.mark.parametrize("changes,field", [
    ({"backend": "gpt-5"}, "teacher.backend"),
    ({"corruption": {"rate": -0.1}}, "teacher.corruption.rate"),
    ({"corruption": {"rate": 0.1, "kinds": {"typo": 1.0}}}, "teacher.corruption.kinds"),
    ({"price": {"input_per_1m": -1}}, "teacher.price"),
])
def test_bad_teacher_config(changes, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        _teacher(**changes)


def test_split_rationale_of_a_teacher_text(data):
    rationale, answer = split_rationale("3 + 4 = 7. 7 - 2 = 5. The answer is 5.", data.task)
    assert (rationale, answer) == ("3 + 4 = 7. 7 - 2 = 5.", "5")
    assert split_rationale("I am not sure.", data.task) == ("I am not sure.", None)
