"""End to end with the real SmolLM2-135M-Instruct student (embedded, converted once and cached)."""

import json

import pytest

from test_cli import _jsonl, train

pytestmark = pytest.mark.slow


def test_smollm2_learns_the_target_format(tmp_path):
    proc = train(
        tmp_path,
        "task.train_size=64", "task.test_size=12", "task.max_new_tokens=32", "budget.max_queries=48",
        "trainer.pl.max_epochs=1", "trainer.lr=3e-4", "trainer.eval_batch_size=12", "logger=csv",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["student"] == "smollm2-135m-embedded" and results["train_steps"] == 6

    def format_rate(name):
        rows = _jsonl(tmp_path / name)
        assert len(rows) == 12
        return sum("the answer is" in r["output"].lower() for r in rows) / len(rows)

    # the instruct model never ends with "The answer is N." on its own; six steps on teacher
    # rationales teach it to
    assert format_rate("predictions_before.jsonl") < 0.25
    assert format_rate("predictions.jsonl") > 0.75

    # the distilled student is kept: a plain transformers folder, and tailkd-eval scores it as the run did
    from test_eval import evaluate
    from transformers import AutoModelForCausalLM

    assert type(AutoModelForCausalLM.from_pretrained(tmp_path / "student")).__name__ == "LlamaForCausalLM"
    assert "smollm2-135m-embedded" in (tmp_path / "student" / "README.md").read_text()
    scored = evaluate(tmp_path / "eval", f"model={tmp_path}")
    assert scored["test_accuracy"] == results["test_accuracy"] == scored["run_test_accuracy"]
    assert [r["output"] for r in _jsonl(tmp_path / "eval" / "predictions.jsonl")] == [
        r["output"] for r in _jsonl(tmp_path / "predictions.jsonl")]
