"""teacher=recorded on a real imperfect teacher: ChatGPT chains of thought on GSM8K (../shared/data/
gsm8k_chatgpt, 59% right). Skipped where the folder is absent: the project runs without it."""

from __future__ import annotations

import json

import pytest

from test_cli import _jsonl, train


def test_tail_on_recorded_chatgpt_rationales_counts_spend_and_measures_signals_against_gold(shared_data, tmp_path):
    folder = shared_data / "gsm8k_chatgpt"
    if not folder.is_dir():
        pytest.skip(f"{folder} is not there")
    proc = train(tmp_path, "experiment=smoke", "method=tail", "signals=ta_teacher", "ta=verifier", "logger=csv",
                 "task=gsm8k", f"task.data_dir={folder}", "task.train_size=null", "task.test_size=8",
                 "task.max_new_tokens=16", "teacher=recorded", f"teacher.path={folder / 'teacher.jsonl'}",
                 "budget.max_queries=60")
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["teacher_model"] == "gpt-3.5-turbo" and results["teacher_replayed"] == 60 == results["teacher_queries"]
    # priced by the table for the rows' model (they carry no cost): 0.50 / 1.50 USD per 1M tokens
    assert 0 < results["teacher_cost_usd"] < 60 * 2000 * 1.5e-6 and results["teacher_paid_usd"] == 0
    assert 0.35 < results["teacher_annotation_accuracy"] < 0.85  # a real, imperfect teacher
    rows = _jsonl(tmp_path / "signals.jsonl")
    annotations = {a["example_id"]: a for a in _jsonl(tmp_path / "annotations.jsonl")}
    assert len(rows) == 60 and all(r["teacher_answer"] == annotations[r["id"]]["answer"] for r in rows)
    assert sum(r["teacher_correct"] for r in rows) == round(results["teacher_annotation_accuracy"] * 60)
    assert results["auroc_ta_teacher"] is not None  # right and wrong real answers, told apart or not
