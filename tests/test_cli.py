"""tailkd-train end to end with the tiny student, and the errors a user can make."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

RESULT_KEYS = {
    "task", "method", "student", "test_accuracy", "test_accuracy_before", "teacher_queries",
    "teacher_cost_usd", "num_train_examples", "seed",
}


def train(tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "tailkd.cli.train", f"hydra.run.dir={tmp_path}", *overrides]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_smoke_run_writes_its_outputs(tmp_path):
    proc = train(tmp_path, "experiment=smoke")
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert RESULT_KEYS <= set(results)
    assert results["task"] == "chain_sum" and results["method"] == "finetune" and results["student"] == "tiny"
    assert results["teacher_queries"] == 32 == results["num_train_examples"]
    assert results["teacher_cost_usd"] > 0
    assert 0.0 <= results["test_accuracy"] <= 1.0 and 0.0 <= results["test_accuracy_before"] <= 1.0
    annotations = _jsonl(tmp_path / "annotations.jsonl")
    assert len(annotations) == 32
    assert sum(a["cost_usd"] for a in annotations) == pytest.approx(results["teacher_cost_usd"], abs=1e-5)
    predictions = _jsonl(tmp_path / "predictions.jsonl")
    assert len(predictions) == results["num_test_examples"] == 16
    assert results["test_accuracy"] == pytest.approx(sum(p["correct"] for p in predictions) / 16)
    assert (tmp_path / "config_resolved.yaml").read_text().count("${") == 0
    metrics = (tmp_path / "csv" / "metrics.csv").read_text()
    assert "train/loss" in metrics and "test/accuracy" in metrics
    assert (tmp_path / "wandb").is_dir()  # offline W&B run


def test_seq2seq_student_with_distilling_step_by_step(tmp_path):
    proc = train(tmp_path, "experiment=smoke", "student=tiny-t5", "method=distill_step_by_step", "logger=csv")
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["method"] == "distill_step_by_step" and results["student"] == "tiny-t5"
    assert not (tmp_path / "wandb").exists()


def test_budget_larger_than_the_pool_is_capped_and_said(tmp_path):
    proc = train(tmp_path, "experiment=smoke", "budget.max_queries=1000", "logger=csv", "task.test_size=4")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "exceeds the training pool of 48" in proc.stdout + proc.stderr
    assert json.loads((tmp_path / "results.json").read_text())["teacher_queries"] == 48


def _fails_with(proc: subprocess.CompletedProcess, *needles: str) -> None:
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    for needle in needles:
        assert needle in out, out[-2000:]


def test_unknown_task_and_student_names(tmp_path):
    _fails_with(train(tmp_path, "task=nope"), "task/nope", "chain_sum")
    _fails_with(train(tmp_path, "student=gpt-17"), "student/gpt-17", "smollm2-135m")


def test_missing_data_file(tmp_path):
    proc = train(tmp_path / "run", "experiment=smoke", "task=strategyqa", f"task.data_dir={tmp_path}")
    _fails_with(proc, f"{tmp_path}/train.jsonl", "task.data_dir")
    assert "Traceback" not in proc.stderr


def test_row_without_needed_fields(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    good = {"qid": "q1", "question": "Is water wet?", "answer": True, "facts": ["Water is wet."]}
    (data / "train.jsonl").write_text(json.dumps(good) + "\n" + json.dumps({"qid": "q2", "question": "Why?"}) + "\n")
    (data / "test.jsonl").write_text(json.dumps(good) + "\n")
    proc = train(tmp_path / "run", "experiment=smoke", "task=strategyqa", f"task.data_dir={data}")
    _fails_with(proc, "train.jsonl line 2", "answer")
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("override,needle", [
    ("trainer.batch_size=0", "trainer.batch_size"),
    ("budget.max_queries=-5", "budget.max_queries"),
    ("teacher.corruption.rate=1.5", "teacher.corruption.rate"),
    ("student.arch=rnn", "student.arch"),
])
def test_impossible_settings(tmp_path, override, needle):
    proc = train(tmp_path, "experiment=smoke", "logger=csv", override)
    _fails_with(proc, needle)
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "annotations.jsonl").exists()  # refused before anything was bought


def test_tail_smoke_writes_signals_and_records_the_warmup(tmp_path):
    proc = train(tmp_path, "experiment=smoke", "method=tail", "signals=all", "logger=csv", "teacher.corruption.rate=0.5")
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["method"] == "tail" and results["signals"] == ["self_consistency", "ta_student", "ta_teacher"]
    assert results["warmup_examples"] == 6 and results["warmup_steps"] == 1  # 0.2 x 32, one batch
    assert results["teacher_queries"] == 32 and results["num_train_examples"] == 32
    for name in ("self_consistency", "ta_student", "ta_teacher", "weight"):
        assert results[f"auroc_{name}"] is None or 0.0 <= results[f"auroc_{name}"] <= 1.0
    rows = _jsonl(tmp_path / "signals.jsonl")
    assert len(rows) == 32 and len({r["id"] for r in rows}) == 32
    assert all({"self_consistency", "ta_student", "ta_teacher"} <= set(r) for r in rows)
    assert len({round(r["weight"], 6) for r in rows}) > 5  # the weight varies
    assert any(r["teacher_correct"] is False for r in rows)
    assert "warmup/train/loss" in (tmp_path / "csv" / "metrics.csv").read_text()


def test_tail_filter_and_select_modes(tmp_path):
    proc = train(tmp_path / "f", "experiment=smoke", "method=tail", "signals=ta_teacher", "signals.use=filter", "logger=csv")
    assert proc.returncode == 0, proc.stderr[-3000:]
    kept = json.loads((tmp_path / "f" / "results.json").read_text())["num_train_examples"]
    weights = [r["weight"] for r in _jsonl(tmp_path / "f" / "signals.jsonl")]
    assert set(weights) <= {0.0, 1.0} and kept == sum(weights) < 32
    proc = train(tmp_path / "s", "experiment=smoke", "method=tail_no_warmup", "signals=select", "logger=csv")
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((tmp_path / "s" / "results.json").read_text())
    assert results["warmup_examples"] == 0 and results["signals_use"] == "select"
    assert all(r["weight"] == 1.0 for r in _jsonl(tmp_path / "s" / "signals.jsonl"))
