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
    phases = results["time_s"]  # where the run's time went
    assert list(phases) == ["buy", "evaluate", "train"] and sum(phases.values()) <= results["runtime_s"]
    assert phases["train"] > 0 and phases["evaluate"] > 0
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


THIRD_PARTY_NOISE = (
    "litlogger",  # Lightning's advertisement at every Trainer start
    "LeafSpec",  # a torch deprecation inside Lightning's _pytree
    "anonymous setting has no effect",  # W&B, about an argument Lightning passes
    "building the font cache",  # matplotlib, imported by torchmetrics
    "Writing model shards",  # transformers' bar, carriage returns in a log
)


def test_a_smoke_run_prints_tailkds_lines_and_no_third_party_noise(tmp_path):
    proc = train(tmp_path, "experiment=smoke")  # default loggers: CSV and W&B offline
    assert proc.returncode == 0, proc.stderr[-3000:]
    console = proc.stdout + proc.stderr
    assert [noise for noise in THIRD_PARTY_NOISE if noise in console] == []
    assert "GPU available" in console and "test accuracy" in console  # Lightning's useful lines and tailkd's stay


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


def test_eval_before_false_scores_only_the_trained_student(tmp_path):
    proc = train(tmp_path, "experiment=smoke", "method=tail", "signals=none", "logger=csv", "trainer.eval_before=false")
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["test_accuracy_before"] is None and results["test_accuracy_warmup"] is None
    assert results["warmup_steps"] == 1 and 0.0 <= results["test_accuracy"] <= 1.0
    assert not (tmp_path / "predictions_before.jsonl").exists() and len(_jsonl(tmp_path / "predictions.jsonl")) > 0
    assert "before training not measured" in "".join(p.read_text() for p in tmp_path.glob("*.log"))


def test_tail_smoke_writes_signals_and_records_the_warmup(tmp_path):
    proc = train(tmp_path, "experiment=smoke", "method=tail", "signals=all", "logger=csv", "teacher.corruption.rate=0.5")
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["method"] == "tail" and results["signals"] == ["self_consistency", "ta_student", "ta_teacher"]
    assert results["warmup_examples"] == 6 and results["warmup_steps"] == 1  # 0.2 x 32, one batch
    # where a TAiL job's time goes, phase by phase (the signals' sampling and the TA apart from training);
    # the greedy outputs the TA judges are decoded in the sampling pass, not in one of their own
    assert {"buy", "warmup", "sample", "ta", "train", "evaluate"} <= set(results["time_s"])
    assert "student_outputs" not in results["time_s"]
    assert results["teacher_queries"] == 32 and results["num_train_examples"] == 32
    rows = _jsonl(tmp_path / "signals.jsonl")
    correct = [r["teacher_correct"] for r in rows]
    assert 0 < sum(correct) < len(rows)  # right and wrong answers: every AUROC is defined
    for name in ("self_consistency", "ta_student", "ta_teacher"):
        assert results[f"auroc_{name}"] == pytest.approx(_pairwise_auroc([r[name]["value"] for r in rows], correct))
    assert results["auroc_weight"] == pytest.approx(_pairwise_auroc([r["score"] for r in rows], correct))
    assert len(rows) == 32 and len({r["id"] for r in rows}) == 32
    assert all({"self_consistency", "ta_student", "ta_teacher"} <= set(r) for r in rows)
    assert len({round(r["weight"], 6) for r in rows}) > 5  # the weight varies
    assert any(r["teacher_correct"] is False for r in rows)
    assert "warmup/train/loss" in (tmp_path / "csv" / "metrics.csv").read_text()


def test_unparsed_teacher_answers_are_left_out_before_signals_weigh_and_filter(tmp_path):
    """A parse failure can never train: it must not be measured, take a place in the filter's quota or
    shift the others' weights. signals.jsonl states the weight each annotation trains with."""
    from hydra import compose, initialize_config_dir

    from tailkd.config import config_dir
    from tailkd.methods.annotate import load_data

    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        data = load_data(compose("train", overrides=["experiment=smoke"]))
    rows = [{"example_id": e.id, "text": "I cannot tell." if i % 4 == 0 else f"{e.rationale} The answer is {e.answer}."}
            for i, e in enumerate(data.train)]
    (tmp_path / "teacher.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    proc = train(tmp_path / "run", "experiment=smoke", "method=tail", "signals=ta_teacher", "signals.use=filter",
                 "logger=csv", "teacher=recorded", f"teacher.path={tmp_path / 'teacher.jsonl'}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    parsed = [a for a in _jsonl(tmp_path / "run" / "annotations.jsonl") if not a["parse_failed"]]
    n = len(parsed)
    assert results["teacher_queries"] == 32 and 16 <= n < 32  # about every fourth question unanswered
    signals = _jsonl(tmp_path / "run" / "signals.jsonl")
    assert [(r["id"], r["sample_index"]) for r in signals] == [(a["example_id"], a["sample_index"]) for a in parsed]
    dropped = round(0.2 * n)
    assert results["signals_dropped"] == dropped and results["num_train_examples"] == n - dropped
    weights = [r["weight"] for r in signals]  # mean 1 over what trains, 0 for what the filter dropped
    assert weights.count(0.0) == dropped and sum(weights) == pytest.approx(n - dropped)
    assert set(round(w, 9) for w in weights) == {0.0, 1.0}


def _pairwise_auroc(scores, positives):
    """P(a right answer scores above a wrong one), ties half: counted pair by pair."""
    pos = [s for s, p in zip(scores, positives) if p]
    neg = [s for s, p in zip(scores, positives) if not p]
    return sum((p > n) + 0.5 * (p == n) for p in pos for n in neg) / (len(pos) * len(neg))


def test_tail_filter_and_select_modes(tmp_path):
    proc = train(tmp_path / "f", "experiment=smoke", "method=tail", "signals=ta_teacher", "signals.use=filter", "logger=csv")
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((tmp_path / "f" / "results.json").read_text())
    weights = [r["weight"] for r in _jsonl(tmp_path / "f" / "signals.jsonl")]
    assert set(weights) <= {0.0, 1.0} and results["num_train_examples"] == sum(weights) == 32 - round(0.2 * 32)
    assert results["signals_dropped"] == round(0.2 * 32)
    proc = train(tmp_path / "s", "experiment=smoke", "method=tail_no_warmup", "signals=select", "logger=csv")
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((tmp_path / "s" / "results.json").read_text())
    assert results["warmup_examples"] == 0 and results["signals_use"] == "select"
    assert all(r["weight"] == 1.0 for r in _jsonl(tmp_path / "s" / "signals.jsonl"))
    # the least self-consistent questions are bought first, in that order
    selection = _jsonl(tmp_path / "s" / "selection.jsonl")
    shares = [r["majority_share"] for r in selection]
    assert len(selection) == 48 and shares == sorted(shares) and len(set(shares)) > 1
    bought = [a["example_id"] for a in _jsonl(tmp_path / "s" / "annotations.jsonl")]
    assert bought == [r["id"] for r in selection[:32]]
    assert max(shares[:32]) <= min(shares[32:])


def test_select_samples_only_its_candidates_then_buys_in_the_seeds_order(tmp_path):
    """signals.select_candidates=20 of 48: the next 20 questions in the buying order are sampled and
    bought least consistent first; the other 12 purchases follow the buying order (as finetune buys)."""
    proc = train(tmp_path / "s", "experiment=smoke", "method=tail_no_warmup", "signals=select",
                 "signals.select_candidates=20", "logger=csv")
    assert proc.returncode == 0, proc.stderr[-3000:]
    proc = train(tmp_path / "f", "experiment=smoke", "method=finetune", "logger=csv")
    assert proc.returncode == 0, proc.stderr[-3000:]
    in_order = [a["example_id"] for a in _jsonl(tmp_path / "f" / "annotations.jsonl")]
    selection = _jsonl(tmp_path / "s" / "selection.jsonl")
    shares = [r["majority_share"] for r in selection]
    assert len(selection) == 20 and shares == sorted(shares)
    assert {r["id"] for r in selection} == set(in_order[:20])
    bought = [a["example_id"] for a in _jsonl(tmp_path / "s" / "annotations.jsonl")]
    assert bought == [r["id"] for r in selection] + in_order[20:32]
    # the candidates' samples are their self-consistency signal: the same answers, not a second draw
    signals = {r["id"]: r["self_consistency"]["answers"] for r in _jsonl(tmp_path / "s" / "signals.jsonl")}
    assert all(signals[r["id"]] == r["answers"] for r in selection) and len(signals) == 32
    # every candidate was bought: select only ordered the purchases, it chose none
    results = json.loads((tmp_path / "s" / "results.json").read_text())
    assert results["select_bought_by_order"] is None and results["select_cutoff_tie"] is None


def test_select_says_how_many_purchases_the_buying_order_chose_among_tied_candidates(caplog):
    from tailkd.methods.tail import Selection

    def summary(shares, bought):
        return Selection(order=[], samples={}, shares=shares).summary(bought)

    weak = {"a": 0.25, "b": 0.25, "c": 0.25, "d": 0.25, "e": 0.25, "f": 0.75}
    # 5 of 6 candidates tie at the lowest share; 2 of them bought: both could have been 2 others
    assert summary(weak, ["a", "b"]) == {"select_bought_by_order": 1.0, "select_cutoff_tie": 5 / 6}
    assert "5 of 6 candidates tie at majority share 0.25" in caplog.text
    # 4 of the 5 tied bought: only one purchase could have gone to the one left (a sample per question)
    assert summary(weak, ["a", "a", "b", "c", "d"])["select_bought_by_order"] == 0.25
    caplog.clear()
    # a small tie at share 0 (never an answer) and buying stopped inside it: by order, but not a weak selection
    informative = {"a": 0.0, "b": 0.0, **{f"q{i}": 0.75 for i in range(8)}}
    assert summary(informative, ["a"]) == {"select_bought_by_order": 1.0, "select_cutoff_tie": 0.2}
    assert "tie at majority share" not in caplog.text
    # the shares decided every purchase: the cut fell between two shares
    assert summary(informative, ["a", "b"])["select_bought_by_order"] == 0.0
    # a purchase past the candidates has no share; all candidates bought: nothing was chosen
    assert summary(informative, ["x"])["select_bought_by_order"] is None
    assert summary({"a": 0.25, "b": 0.5}, ["a", "b", "x"])["select_bought_by_order"] is None


def test_tail_with_several_teacher_samples_weighs_each_sample(tmp_path):
    """teacher.n_samples=2: each answer is its own annotation with its own signals and weight."""
    from tailkd.tasks import load_task_data

    from helpers import task_cfg

    data = load_task_data(task_cfg(train_size=48, test_size=16, max_new_tokens=24))
    rows = []
    for i, e in enumerate(data.train):
        first, second = e.question.removeprefix("What is ").removesuffix("?").split()[:3:2]
        wrong = f"{first} + {second} = 1000. The answer is 1000." if i % 3 else "I cannot tell."  # no answer: not trained on
        rows.append({"question": e.question, "text": wrong})  # wrong sums
        rows.append({"question": e.question, "text": f"{e.rationale} The answer is {e.answer}."})
    path = tmp_path / "recorded.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    proc = train(tmp_path / "run", "experiment=smoke", "method=tail", "signals=ta_teacher", "ta=verifier",
                 "logger=csv", "teacher=recorded", f"teacher.path={path}", "teacher.n_samples=2",
                 "budget.max_queries=20", "teacher.model=gpt-4o-mini")
    assert proc.returncode == 0, proc.stderr[-3000:]
    signals = _jsonl(tmp_path / "run" / "signals.jsonl")
    parsed = [(a["example_id"], a["sample_index"]) for a in _jsonl(tmp_path / "run" / "annotations.jsonl")
              if not a["parse_failed"]]
    assert 10 < len(parsed) < 20  # some first answers are "I cannot tell.": bought, never weighed or trained
    assert [(r["id"], r["sample_index"]) for r in signals] == parsed
    weights = {(r["id"], r["sample_index"]): r["weight"] for r in signals}
    pairs = [(weights[(q, 0)], weights[(q, 1)]) for q, s in weights if s == 0 and (q, 1) in weights]
    assert pairs and all(wrong < right for wrong, right in pairs)
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["teacher_queries"] == 20 == results["teacher_replayed"] and results["teacher_cost_usd"] > 0
    # what the weights did to the training data: the share of the training weight on right answers
    trained = signals
    right_weight = sum(r["weight"] for r in trained if r["teacher_correct"]) / sum(r["weight"] for r in trained)
    assert results["teacher_annotation_accuracy_weighted"] == pytest.approx(right_weight)
    # against the same answers unweighted (the bought share also counts the unparsed, which never train)
    right = sum(r["teacher_correct"] for r in trained) / len(trained)
    assert results["teacher_annotation_accuracy_trained"] == pytest.approx(right)
    assert results["teacher_annotation_accuracy_weighted"] > results["teacher_annotation_accuracy_trained"]


def test_eval_before_false_still_evaluates_first_under_several_processes(tmp_path):
    """Under DDP the first Lightning call launches the other ranks: skipping it would leave
    tail_no_warmup's rank-0-only steps (buying, signals) without a process group."""
    from types import SimpleNamespace

    from omegaconf import OmegaConf

    from tailkd.methods import pipeline

    class Trainer:
        num_nodes = 1

        def __init__(self, devices):
            self.num_devices, self.tested = devices, 0

        def test(self, module, datamodule, verbose):
            self.tested += 1
            module.accuracy, module.predictions = 0.25, [{"id": "q0", "correct": False}]

    cfg = OmegaConf.create({"trainer": {"eval_before": False}})
    module = SimpleNamespace()
    one, two = Trainer(1), Trainer(2)
    assert pipeline.evaluate_before(cfg, one, module, None, tmp_path) is None and one.tested == 0
    assert pipeline.evaluate_before(cfg, two, module, None, tmp_path) == 0.25 and two.tested == 1
    assert (tmp_path / "predictions_before.jsonl").exists()


def test_rescore_reproduces_a_runs_own_ta_and_scores_with_another(tmp_path, capsys, monkeypatch):
    """tailkd-rescore with the run's own TA gives its numbers exactly (paired difference 0); another
    TA scores the same annotations; a folder that is no run is refused by name."""
    from tailkd.cli.rescore import main as rescore

    monkeypatch.setenv("TAILKD_CACHE_DIR", str(tmp_path / "cache"))  # the run scores, not an earlier run's cache

    proc = train(tmp_path / "run", "experiment=smoke", "method=tail", "signals=ta_teacher",
                 "teacher.corruption.rate=0.4", "logger=csv")
    assert proc.returncode == 0, proc.stderr[-3000:]
    rescore([str(tmp_path / "run"), "--ta", "tiny", "--out", str(tmp_path / "same.jsonl")])
    rows = _jsonl(tmp_path / "same.jsonl")
    assert len(rows) == 32 and 0 < sum(r["teacher_correct"] for r in rows) < 32
    assert all(r["confidence"] == r["run_confidence"] for r in rows)
    assert "paired over the annotations: +0.000 [+0.000, +0.000]" in capsys.readouterr().out
    rescore([str(tmp_path / "run"), "--ta", "tiny", "--set", "init_seed=5", "--out", str(tmp_path / "other.jsonl")])
    other = _jsonl(tmp_path / "other.jsonl")
    assert [r["id"] for r in other] == [r["id"] for r in rows]
    assert any(r["confidence"] != r["run_confidence"] for r in other)
    with pytest.raises(SystemExit, match="not a finished tailkd run"):
        rescore([str(tmp_path), "--ta", "tiny"])
