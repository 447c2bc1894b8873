"""Real teacher text as it comes: blank lines, markdown, LaTeX and answers in prose become targets a
student can learn, stop rules never fire inside them, and nothing of the answer is cut away."""

from __future__ import annotations

import json

import pytest

from tailkd.tasks import Task
from tailkd.tasks.rationale import clean_rationale
from tailkd.teachers.annotation import split_rationale

from helpers import chain_task, task_cfg
from test_cli import _jsonl, train

# the shapes GPT-3.5/4 chains of thought take
BLANK_LINES = "First, 12 + 7 = 19.\n\nThen 19 - 3 = 16.\n\n\nThe answer is 16."
MARKDOWN = ("**Step 1:** Add the first two numbers.\n\n1. 12 + 7 = 19\n2. 19 - 3 = 16\n\n"
            "### Result\n* The total is **16**.\n\nThe answer is 16.")
LATEX = "We compute \\[ 12 + 7 = 19 \\] and then \\( 19 - 3 = 16 \\).\n\nSo the answer is \\boxed{16}."
PROSE = "Twelve plus seven makes 19, and taking away 3 leaves 16.\n\nTherefore, Sam has 16 apples left."
SHAPES = {"blank_lines": BLANK_LINES, "markdown": MARKDOWN, "latex": LATEX, "prose": PROSE}


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_every_shape_becomes_a_target_without_blank_lines_that_keeps_its_steps(name):
    task = chain_task()
    rationale, answer = split_rationale(SHAPES[name], task)
    assert answer == "16"
    target = task.target(rationale, answer)
    assert "\n\n" not in target and "**" not in target and "\\[" not in target and "\\boxed" not in target
    assert target.endswith("The answer is 16.") and task.extract_answer(target) == "16"
    assert "19" in target  # the intermediate step survives
    assert task.safe_stops([target]) == task.until  # every stop rule stays usable


def test_clean_rationale_on_lists_maths_and_emphasis():
    assert clean_rationale(MARKDOWN) == ("Step 1: Add the first two numbers.\n1. 12 + 7 = 19\n2. 19 - 3 = 16\n"
                                         "Result\n- The total is 16.\nThe answer is 16.")
    assert clean_rationale("\\[ \\frac{3}{4} \\times 8 = 6 \\]") == "3/4 × 8 = 6"
    assert clean_rationale("Cost: \\$5 \\cdot 3 = \\$15") == "Cost: $5 · 3 = $15"
    assert clean_rationale("3 * 4 = 12 and 2 * 5 = 10") == "3 * 4 = 12 and 2 * 5 = 10"  # arithmetic is not emphasis
    assert clean_rationale("  a  \r\n\r\n b ") == "a\nb"


def test_without_cleaning_a_stop_rule_found_in_a_target_is_dropped():
    task = Task(task_cfg(clean_rationale=False))
    target = task.target(split_rationale(BLANK_LINES, task)[0], "16")
    assert "\n\n" in target
    assert task.safe_stops([target]) == ["\nQuestion:"]


def test_a_run_on_real_shaped_teacher_text(tmp_path):
    """teacher=recorded with texts of every shape, and one far too long: the student is taught no blank
    line, generation keeps its stop rules, and the over-long rationale keeps its answer."""
    from tailkd.tasks import load_task_data

    data = load_task_data(task_cfg(train_size=48, test_size=16, max_new_tokens=24))
    shapes = list(SHAPES.values())
    rows = [{"question": e.question, "text": shapes[i % 4].replace("16", e.answer)} for i, e in enumerate(data.train)]
    rows[0]["text"] = "Let me go slowly.\n\n" + "We keep counting carefully. " * 120 + f"The answer is {data.train[0].answer}."
    path = tmp_path / "recorded.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    common = ["experiment=smoke", "logger=csv", "teacher=recorded", f"teacher.path={path}", "budget.max_queries=null",
              "student.max_length_cap=256"]
    proc = train(tmp_path / "run", *common)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["stop_strings"] == ["\nQuestion:", "\n\n"]
    assert results["max_length"] == 256 and results["truncated_examples"] == 1
    assert results["truncated_share"] == round(1 / 48, 4) and results["num_train_examples"] == 48
    proc = train(tmp_path / "raw", *common, "task.clean_rationale=false", "student.truncation=drop")
    assert proc.returncode == 0, proc.stderr[-3000:]
    raw = json.loads((tmp_path / "raw" / "results.json").read_text())
    assert raw["stop_strings"] == ["\nQuestion:"] and raw["dropped_too_long"] == 1 and raw["num_train_examples"] == 47
    assert len(_jsonl(tmp_path / "raw" / "predictions.jsonl")) == 16
