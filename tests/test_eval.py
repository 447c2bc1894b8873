"""tailkd-eval: a run's kept student scores as the run reported; model folders, adapters, maj@k, errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from test_cli import _jsonl, train


def eval_proc(run_dir: Path, *overrides: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "tailkd.cli.eval", f"hydra.run.dir={run_dir}", *overrides]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def evaluate(run_dir: Path, *overrides: str) -> dict:
    proc = eval_proc(run_dir, *overrides)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((run_dir / "results.json").read_text())


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("run")
    proc = train(run, "experiment=smoke", "logger=csv", "trainer.pl.max_epochs=3", "trainer.lr=3e-3")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run


def test_a_run_folder_scores_as_the_run_reported(finetuned, tmp_path):
    results = json.loads((finetuned / "results.json").read_text())
    scored = evaluate(tmp_path, f"model={finetuned}")
    assert scored["test_accuracy"] == results["test_accuracy"] == scored["run_test_accuracy"]
    assert scored["task"] == "chain_sum" and scored["num_test_examples"] == 16  # the run's task settings
    assert [r["output"] for r in _jsonl(tmp_path / "predictions.jsonl")] == [
        r["output"] for r in _jsonl(finetuned / "predictions.jsonl")]
    for key in ("git_commit", "versions", "device", "precision", "num_threads", "started_at"):
        assert key in scored


def test_majority_vote_and_another_task(finetuned, tmp_path):
    scored = evaluate(tmp_path / "maj", f"model={finetuned / 'student'}", "eval.maj_at_k=3")
    rows = _jsonl(tmp_path / "maj" / "predictions.jsonl")
    assert all(len(r["maj_answers"]) == 3 for r in rows)
    assert scored["test_accuracy_maj_at_k"] == pytest.approx(sum(r["maj_correct"] for r in rows) / len(rows))
    other = evaluate(tmp_path / "other", f"model={finetuned}", "task=gsm_symbolic", "task.test_size=5",
                     "task.max_new_tokens=8")
    assert other["task"] == "gsm_symbolic" and other["num_test_examples"] == 5


def test_a_folder_that_is_not_a_model_is_one_clear_error(tmp_path):
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "notes.txt").write_text("hello")
    proc = eval_proc(tmp_path / "out", f"model={tmp_path / 'junk'}")
    assert proc.returncode == 2 and "is not a model" in proc.stdout + proc.stderr and "Traceback" not in proc.stderr
    proc = eval_proc(tmp_path / "out2", f"model={tmp_path / 'missing'}")
    assert proc.returncode == 2 and "no such folder" in proc.stdout + proc.stderr


def test_lora_student_is_kept_as_adapter_and_merged_copy(tmp_path):
    from transformers import AutoModelForCausalLM

    run = tmp_path / "run"
    proc = train(run, "experiment=smoke", "logger=csv", "student.lora.enabled=true", "student.merge_lora=true")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (run / "student" / "adapter_config.json").is_file()
    merged = AutoModelForCausalLM.from_pretrained(run / "student" / "merged")
    assert not any("lora" in name for name, _ in merged.named_parameters())
    scored = evaluate(tmp_path / "eval", f"model={run}")
    assert scored["test_accuracy"] == json.loads((run / "results.json").read_text())["test_accuracy"]
    assert [r["output"] for r in _jsonl(tmp_path / "eval" / "predictions.jsonl")] == [
        r["output"] for r in _jsonl(run / "predictions.jsonl")]


def test_save_student_false_keeps_nothing(tmp_path):
    proc = train(tmp_path / "run", "experiment=smoke", "logger=csv", "trainer.save_student=false")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not (tmp_path / "run" / "student").exists()
    proc = eval_proc(tmp_path / "out", f"model={tmp_path / 'run'}")
    assert proc.returncode == 2 and "kept no student" in proc.stdout + proc.stderr


def test_a_run_that_dropped_a_stop_rule_is_scored_with_its_own_rules(tmp_path):
    """A run taught blank lines (clean_rationale=false) stops generation only at "\\nQuestion:"; eval
    must too, or it cuts its student's answers at the first blank line."""
    from tailkd.tasks import load_task_data

    from helpers import task_cfg

    data = load_task_data(task_cfg(train_size=48, test_size=16, max_new_tokens=24))
    rows = [{"question": e.question, "text": f"Let me see.\n\n{e.rationale}\n\nThe answer is {e.answer}."}
            for e in data.train]
    path = tmp_path / "recorded.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    run = tmp_path / "run"
    proc = train(run, "experiment=smoke", "logger=csv", "teacher=recorded", f"teacher.path={path}",
                 "task.clean_rationale=false", "trainer.pl.max_epochs=3", "trainer.lr=3e-3")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((run / "results.json").read_text())["stop_strings"] == ["\nQuestion:"]
    assert evaluate(tmp_path / "eval", f"model={run}")["stop_strings"] == ["\nQuestion:"]
    assert [r["output"] for r in _jsonl(tmp_path / "eval" / "predictions.jsonl")] == [
        r["output"] for r in _jsonl(run / "predictions.jsonl")]


def test_the_config_of_an_evaluation_of_a_run_on_a_hub_task_is_written():
    """tailkd-eval model=RUN for a run on gsm8k (a hub source with a path): the run's task replaces the
    default chain_sum's, whose source has other keys (a merge into the struct config raised)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from tailkd.cli.eval import effective_config
    from tailkd.config import config_dir

    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose(config_name="eval", overrides=["model=somewhere"])
        run_task = compose(config_name="train", overrides=["task=gsm8k"]).task
    eff = OmegaConf.create({"task": OmegaConf.to_container(run_task, resolve=True), "trainer": {}, "paths": {}})
    written = effective_config(cfg, eff)
    assert written.task.name == "gsm8k" and written.task.source.path == "openai/gsm8k" and written.model == "somewhere"
