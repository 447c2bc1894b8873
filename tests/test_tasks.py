"""Loading a task's train and test examples (tailkd.tasks.load_task_data): real files, errors, generators."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from tailkd.errors import ConfigError, DataError
from tailkd.tasks import load_task_data

CONF_TASK = Path(__file__).resolve().parents[1] / "conf" / "task"
# the real data sits in shared/ beside the repository (/work/shared/data for /work/main)


def task_cfg(name: str, **overrides) -> dict:
    cfg = OmegaConf.to_container(OmegaConf.load(CONF_TASK / f"{name}.yaml"), resolve=True)
    cfg.update(overrides)
    return cfg


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def write_jsonl(path: Path, rows: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path



def strategyqa_cfg(shared_data: Path, **overrides) -> dict:
    cfg = task_cfg("strategyqa", data_dir=str(shared_data / "strategyqa"), **overrides)
    cfg["source"]["splits"]["test"] = "validation"
    return cfg


# -- real data -------------------------------------------------------------------------------------

def test_strategyqa_sizes_ids_and_dedup(shared_data):
    train_rows = read_jsonl(shared_data / "strategyqa" / "train.jsonl")
    test_rows = read_jsonl(shared_data / "strategyqa" / "validation.jsonl")
    data = load_task_data(strategyqa_cfg(shared_data, train_size=200, test_size=50, data_seed=3))

    assert len(data.train) == 200
    assert len(data.test) == 50
    # ids come from task.id_field (qid), and each example is the row with that qid
    train_by_qid = {r["qid"]: r for r in train_rows}
    for example in data.train:
        row = train_by_qid[example.id]
        assert example.question == row["question"].strip()
        assert example.answer == ("yes" if row["answer"] else "no")
    assert len({e.id for e in data.train}) == 200

    # the test set: the first validation rows, in file order, skipping questions in the train pool
    pool = {e.question for e in data.train}
    expected = [r["qid"] for r in test_rows if r["question"].strip() not in pool][:50]
    assert [e.id for e in data.test] == expected
    assert not pool & {e.question for e in data.test}


def test_strategyqa_full_pool_drops_the_shared_question(shared_data):
    train_rows = read_jsonl(shared_data / "strategyqa" / "train.jsonl")
    test_rows = read_jsonl(shared_data / "strategyqa" / "validation.jsonl")
    data = load_task_data(strategyqa_cfg(shared_data, train_size=None, test_size=1000))
    assert len(data.train) == len(train_rows)
    train_questions = {r["question"].strip() for r in train_rows}
    in_both = [r["qid"] for r in test_rows if r["question"].strip() in train_questions]
    assert in_both, "the real files share a question; this test relies on it"
    assert len(data.test) == len(test_rows) - len(in_both)
    assert not set(in_both) & {e.id for e in data.test}


def test_train_subsample_is_deterministic_by_data_seed(shared_data):
    def train_ids(seed):
        return [e.id for e in load_task_data(strategyqa_cfg(shared_data, train_size=100, data_seed=seed)).train]

    first, again, other = train_ids(7), train_ids(7), train_ids(8)
    assert first == again
    assert set(first) != set(other)
    # a random draw, not the first rows of the file
    file_order = [r["qid"] for r in read_jsonl(shared_data / "strategyqa" / "train.jsonl")]
    assert set(first) != set(file_order[:100])


def test_commonsense_qa(shared_data):
    folder = shared_data / "commonsense_qa"
    train_rows, test_rows = read_jsonl(folder / "train.jsonl"), read_jsonl(folder / "validation.jsonl")
    data = load_task_data(task_cfg("commonsense_qa", data_dir=str(folder), test_size=40))
    assert [e.id for e in data.train] == [r["id"] for r in train_rows]  # train_size null: every row
    pool = {e.question for e in data.train}
    assert len(data.test) == 40
    test_by_id = {r["id"]: r for r in test_rows}
    for example in data.test:
        row = test_by_id[example.id]
        assert example.answer == row["answerKey"]
        assert example.choices == dict(zip(row["choices"]["label"], row["choices"]["text"]))
        assert example.rationale is None
        assert example.question not in pool


def test_test_questions_in_train_are_dropped(tmp_path):
    def row(q, a):
        return {"question": f"How many {q}?", "answer": f"Work it out.\n#### {a}"}

    write_jsonl(tmp_path / "train.jsonl", [row("apples", 1), row("pears", 2), row("plums", 3)])
    write_jsonl(tmp_path / "test.jsonl", [row("pears", 2), row("figs", 4), row("apples", 1), row("kiwis", 5)])
    data = load_task_data(task_cfg("gsm8k", data_dir=str(tmp_path), train_size=None, test_size=None))
    assert [e.question for e in data.test] == ["How many figs?", "How many kiwis?"]
    assert [e.answer for e in data.test] == ["4", "5"]
    assert [e.id for e in data.test] == ["gsm8k-test-1", "gsm8k-test-3"]  # no id_field: split and row
    # test_size counts what is left after the drop, first rows first
    data = load_task_data(task_cfg("gsm8k", data_dir=str(tmp_path), train_size=None, test_size=1))
    assert [e.question for e in data.test] == ["How many figs?"]


def test_no_test_question_left(tmp_path):
    rows = [{"question": "Same?", "answer": "#### 1"}]
    write_jsonl(tmp_path / "train.jsonl", rows)
    write_jsonl(tmp_path / "test.jsonl", rows)
    with pytest.raises(ConfigError, match="no test question left"):
        load_task_data(task_cfg("gsm8k", data_dir=str(tmp_path)))


# -- errors ----------------------------------------------------------------------------------------

def test_missing_data_file_names_the_path(shared_data):
    # the shared strategyqa folder has train and validation, not test
    folder = shared_data / "strategyqa"
    with pytest.raises(DataError) as info:
        load_task_data(task_cfg("strategyqa", data_dir=str(folder)))
    message = str(info.value)
    assert str(folder / "test.jsonl") in message
    assert "{split}.jsonl" in message
    assert "validation.jsonl" in message  # what is there instead
    assert "task.source.splits" in message  # how to fix it


def test_missing_data_dir(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError) as info:
        load_task_data(task_cfg("gsm8k", data_dir=str(missing)))
    assert str(missing / "train.jsonl") in str(info.value)


GOOD = {"question": "What is 2 + 2?", "answer": "2 + 2 = 4\n#### 4"}


def test_row_lacking_a_required_field(tmp_path):
    path = write_jsonl(tmp_path / "train.jsonl", [GOOD, "", {"question": "No answer here?"}])
    write_jsonl(tmp_path / "test.jsonl", [GOOD])
    with pytest.raises(DataError) as info:
        load_task_data(task_cfg("gsm8k", data_dir=str(tmp_path)))
    message = str(info.value)
    assert f"{path} line 3" in message  # blank lines still count as lines
    assert "'answer'" in message


def test_row_lacking_the_id_field(tmp_path):
    choices = {"label": list("ABCDE"), "text": ["a", "b", "c", "d", "e"]}
    good = {"id": "q1", "question": "Which?", "choices": choices, "answerKey": "B"}
    no_id = {"question": "Which other?", "choices": choices, "answerKey": "C"}
    path = write_jsonl(tmp_path / "train.jsonl", [good, no_id])
    write_jsonl(tmp_path / "validation.jsonl", [{**good, "id": "q9", "question": "Else?"}])
    with pytest.raises(DataError) as info:
        load_task_data(task_cfg("commonsense_qa", data_dir=str(tmp_path)))
    assert f"{path} line 2" in str(info.value)
    assert "'id'" in str(info.value)


def test_malformed_json_line(tmp_path):
    path = write_jsonl(tmp_path / "train.jsonl", [GOOD, '{"question": "Broken?", "answer": '])
    write_jsonl(tmp_path / "test.jsonl", [GOOD])
    with pytest.raises(DataError, match="JSON") as info:
        load_task_data(task_cfg("gsm8k", data_dir=str(tmp_path)))
    assert f"{path} line 2" in str(info.value)


def test_json_line_that_is_not_an_object(tmp_path):
    path = write_jsonl(tmp_path / "train.jsonl", [GOOD, ["a", "list"]])
    write_jsonl(tmp_path / "test.jsonl", [GOOD])
    with pytest.raises(DataError) as info:
        load_task_data(task_cfg("gsm8k", data_dir=str(tmp_path)))
    assert f"{path} line 2" in str(info.value)


def test_gold_answer_that_is_no_number(tmp_path):
    path = write_jsonl(tmp_path / "train.jsonl", [GOOD, {"question": "How many?", "answer": "Lots.\n#### many"}])
    write_jsonl(tmp_path / "test.jsonl", [GOOD])
    with pytest.raises(DataError, match="gold answer") as info:
        load_task_data(task_cfg("gsm8k", data_dir=str(tmp_path)))
    assert f"{path} line 2" in str(info.value)
    assert "number" in str(info.value)


def test_gold_answer_that_is_no_choice(tmp_path):
    choices = {"label": list("ABCDE"), "text": ["a", "b", "c", "d", "e"]}
    write_jsonl(tmp_path / "train.jsonl", [{"id": "q1", "question": "Which?", "choices": choices, "answerKey": "A"}])
    path = write_jsonl(
        tmp_path / "validation.jsonl", [{"id": "q2", "question": "Else?", "choices": choices, "answerKey": "Z"}]
    )
    with pytest.raises(DataError, match="gold answer") as info:
        load_task_data(task_cfg("commonsense_qa", data_dir=str(tmp_path)))
    assert f"{path} line 1" in str(info.value)


def test_data_dir_on_a_generated_task(tmp_path):
    with pytest.raises(ConfigError, match=r"task\.data_dir"):
        load_task_data(task_cfg("chain_sum", data_dir=str(tmp_path), train_size=5, test_size=5))


def test_generated_task_needs_sizes():
    with pytest.raises(ConfigError, match=r"task\.test_size"):
        load_task_data(task_cfg("chain_sum", train_size=5, test_size=None))


# -- embedded reasoning-gym tasks ------------------------------------------------------------------

GENERATED = ("chain_sum", "gsm_symbolic")
_LOADED: dict = {}


def generated(name: str, data_seed: int):
    key = (name, data_seed)
    if key not in _LOADED:
        _LOADED[key] = load_task_data(task_cfg(name, train_size=30, test_size=10, data_seed=data_seed))
    return _LOADED[key]


def contents(examples):
    return [(e.id, e.question, e.answer, e.rationale) for e in examples]


@pytest.mark.parametrize("name", GENERATED)
def test_generated_sizes_and_disjoint_splits(name):
    data = generated(name, 0)
    assert len(data.train) == 30
    assert len(data.test) == 10
    assert not {e.question for e in data.train} & {e.question for e in data.test}
    assert len({e.id for e in data.train + data.test}) == 40


@pytest.mark.parametrize("name", GENERATED)
def test_generated_is_deterministic_by_data_seed(name):
    data = generated(name, 0)
    again = load_task_data(task_cfg(name, train_size=30, test_size=10, data_seed=0))
    assert contents(again.train) == contents(data.train)
    assert contents(again.test) == contents(data.test)
    other = generated(name, 1)
    # another data_seed draws other questions, not the same ones shifted by one
    shared = {e.question for e in data.train} & {e.question for e in other.train}
    assert len(shared) < 10, f"data_seed 0 and 1 share {len(shared)} of 30 train questions"
    assert {e.question for e in data.test} != {e.question for e in other.test}


@pytest.mark.parametrize("name", GENERATED)
def test_generated_gold_rationales_and_answers(name):
    data = generated(name, 0)
    for example in data.train + data.test:
        assert example.rationale and example.rationale.strip(), example
        assert re.fullmatch(r"-?\d+(\.\d+)?", example.answer), example
        target = data.task.target(example.rationale, example.answer)
        assert data.task.extract_answer(target, example) == example.answer
        assert "####" not in example.rationale


def _evaluate_chain(expression: str) -> int:
    tokens = expression.split()
    total = int(tokens[0])
    for op, operand in zip(tokens[1::2], tokens[2::2]):
        total = total + int(operand) if op == "+" else total - int(operand)
    return total


def test_chain_sum_rationale_works_the_chain():
    data = generated("chain_sum", 0)
    for example in data.train + data.test:
        expression = re.fullmatch(r"What is (.+)\?", example.question).group(1)
        assert str(_evaluate_chain(expression)) == example.answer, example
        steps = re.findall(r"(-?\d+) ([+-]) (\d+) = (-?\d+)\.", example.rationale)
        assert len(steps) == len(expression.split()) // 2, example
        previous = int(expression.split()[0])
        for left, op, right, value in steps:
            left, right, value = int(left), int(right), int(value)
            assert left == previous, example  # each step starts from the last result
            assert value == (left + right if op == "+" else left - right), example
            previous = value
        assert steps[-1][3] == example.answer, example  # the rationale ends in the answer
