"""tailkd-export: lm-evaluation-harness scores the exported task as tailkd-eval does, and reads answers
as tailkd's extractor does except where LIMITS says."""

from __future__ import annotations

import importlib.util
import json
import random
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from test_eval import evaluate

from tailkd.errors import ConfigError
from tailkd.tasks import AnswerExtractor, Task, load_task_data
from tailkd.tasks.answer_regex import INVALID, LIMITS, lm_eval_filter, lm_eval_metric
from tailkd.tasks.export import export_lm_eval

from helpers import task_cfg
from test_cli import _jsonl, train

needs_lm_eval = pytest.mark.skipif(importlib.util.find_spec("lm_eval") is None,
                                   reason="lm-eval is not installed (pip install -e '.[lmeval]')")
PATTERN = r"the answer is\s*:?\s*(.+)"

# what students write, and the cases each reading rule is for
TEXTS = {
    "number": ["12 + 7 = 19. 19 - 3 = 16. The answer is 16.", "The answer is 5 - 3 = 2.", "The answer is 12 = 3 x 4.",
               "the answer is $1,234.50 in all", "The answer is: -7", "3 - 5", "1,234", "x-3 and v2", "The answer is 007",
               "The answer is 3.00.", "The answer is 16. Then 3 more.", "The answer is unknown. 5 then 6",
               "The answer is\n16", "the answer is 2.5 The answer is banana.", "- 5", "The answer is7", "The answer is--2",
               "0 - 2 = -2. The answer is -2.", "no number at all", ""],
    "yesno": ["The answer is yes.", "The answer is not yes.", "The answer is not  no", "Yes. No. The answer is maybe.",
              "the answer is NOT TRUE", "not sure, yes", "nothing", "The answer is cannot yes", "The answer isfalse"],
    "choice": ["The answer is (B).", "The answer is b", "The answer is A cappella (c)", "(A) or (b)", "I think A",
               "The answer is (e) then (B)", "The answer is: C.", "The answer isE", "nothing", "The answer is bank."],
}
# LIMITS, by example: (answer type, text, the question's choices, what tailkd reads, what lm-eval reads)
DIFFERENCES = [("number", "The answer is 3/4", None, "0.75", "3/4"),
               ("number", "The answer is 0.1234567", None, "0.123457", "0.1234567"),
               ("number", "The answer is −2.", None, "-2", "−2"),
               ("choice", "The answer is bank.", {"A": "river", "B": "bank"}, "B", INVALID)]


def lm_eval_reads(extractor: AnswerExtractor, text: str) -> str:
    """What lm-eval's filters, then exact_match's regexes_to_ignore, make of ``text``: their rules
    (lm_eval/filters, lm_eval/api/metrics.py) restated, so this runs without lm-eval installed."""
    for step in lm_eval_filter(extractor):
        if step["function"] == "regex":
            found = re.findall(step["regex_pattern"], text)
            match = found[step["group_select"]] if found else step["fallback"]
            if isinstance(match, tuple):
                match = next((group for group in match if group), step["fallback"])
            text = match.strip()
        elif step["function"] == "lowercase":
            text = text.lower()
        elif step["function"] == "map":
            text = step["mapping_dict"].get(text, step["default_value"])
    for ignored in lm_eval_metric(extractor).get("regexes_to_ignore", []):
        text = re.sub(ignored, "", text)
    return text


def tailkd_reads(extractor: AnswerExtractor, text: str, choices: dict | None = None) -> str:
    answer = extractor(text, choices)
    return INVALID if answer is None else answer


@pytest.mark.parametrize("kind", sorted(TEXTS))
@pytest.mark.parametrize("fallback", [True, False])
def test_the_exported_filter_reads_answers_as_tailkd(kind, fallback):
    extractor = AnswerExtractor(kind, PATTERN, fallback)
    assert [lm_eval_reads(extractor, t) for t in TEXTS[kind]] == [tailkd_reads(extractor, t) for t in TEXTS[kind]]


def test_the_documented_differences_are_the_only_ones():
    """Random texts from the pieces answers are made of: every disagreement has a fraction, a Unicode
    dash or more than six decimals in it, the cases LIMITS names."""
    for kind, text, choices, tailkd, lm_eval in DIFFERENCES:
        extractor = AnswerExtractor(kind, PATTERN)
        assert (tailkd_reads(extractor, text, choices), lm_eval_reads(extractor, text)) == (tailkd, lm_eval)
    assert len(DIFFERENCES) == sum(len(limits) for limits in LIMITS.values())  # an example for each
    pieces = ["the answer is", "The Answer is:", " ", "  ", "\n", ". ", ".", "=", " = ", "+", " - ", "-", "−", "x",
              "$", ",", "12", "7", "0", "007", "1,234", "3.50", "2.0", "3/4", "-2", "v2", "COVID-19", "(B)", "(c)",
              "A", "b", "yes", "No", "not ", "true", "cannot", "so", "'A'", "A cappella"]
    documented = re.compile(r"\d/\d|[−–]|\.\d{7}")
    rng = random.Random(0)
    for kind in TEXTS:
        for fallback in (True, False):
            extractor = AnswerExtractor(kind, PATTERN, fallback)
            for _ in range(800):
                text = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 14)))
                if lm_eval_reads(extractor, text) != tailkd_reads(extractor, text):
                    assert documented.search(text), (kind, fallback, text)


def test_a_pattern_lm_eval_cannot_mirror_is_one_clear_error(tmp_path):
    data = load_task_data(task_cfg(train_size=8, test_size=2, answer={"type": "number", "pattern": r"(\d+) is it"}))
    with pytest.raises(ConfigError, match="PREFIX"):
        export_lm_eval(data.task, data.test, tmp_path)


def test_export_writes_the_test_questions_as_tailkd_selected_them(tmp_path):
    data = load_task_data(task_cfg(train_size=8, test_size=5))
    written = export_lm_eval(data.task, data.test, tmp_path / "lm", stop=["\nQuestion:"], prompt_prefix="[label] ")
    rows = _jsonl(written.data_file)
    assert [r["id"] for r in rows] == [e.id for e in data.test]
    assert [r["prompt"] for r in rows] == ["[label] " + data.task.prompt(e) for e in data.test]
    assert [r["answer"] for r in rows] == [e.answer for e in data.test]
    config = yaml.safe_load(written.task_file.read_text())
    assert config["task"] == written.name == "tailkd_chain_sum"  # not lm-eval's own names
    assert config["dataset_kwargs"]["data_files"]["test"] == str(written.data_file.resolve())
    assert (config["doc_to_text"], config["doc_to_target"], config["test_split"]) == ("prompt", "answer", "test")
    assert config["generation_kwargs"] == {"until": ["\nQuestion:"], "do_sample": False, "max_gen_toks": 48}
    assert "fraction" in written.task_file.read_text()  # the header says where the scorers differ
    assert sorted(p.name for p in written.task_file.parent.iterdir()) == ["tailkd_chain_sum.jsonl",
                                                                          "tailkd_chain_sum.yaml"]


def test_the_cli_exports_a_task_and_names_what_is_missing(tmp_path):
    cmd = [sys.executable, "-m", "tailkd.cli.export", f"out={tmp_path / 'lm'}", "task.test_size=3", "name=sums"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len(_jsonl(tmp_path / "lm" / "sums.jsonl")) == 3
    assert "--include_path" in proc.stdout and "--tasks sums" in proc.stdout
    proc = subprocess.run(cmd[:3] + [f"run={tmp_path / 'lm'}", f"out={tmp_path / 'x'}"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2 and "not a tailkd-train run folder" in proc.stdout + proc.stderr


@needs_lm_eval
@pytest.mark.parametrize("kind", sorted(TEXTS))
def test_lm_eval_own_filters_read_as_restated(kind):
    import lm_eval.filters  # noqa: F401  (registers the filters by name)
    from lm_eval.api.metrics import exact_match_hf_evaluate
    from lm_eval.api.registry import get_filter

    extractor = AnswerExtractor(kind, PATTERN)
    for text in TEXTS[kind] + [t for k, t, *_ in DIFFERENCES if k == kind]:
        answers = [[text]]
        for step in lm_eval_filter(extractor):
            options = {k: v for k, v in step.items() if k != "function"}
            answers = list(get_filter(step["function"])(**options).apply(answers, [{}]))
        got = answers[0] if isinstance(answers[0], str) else answers[0][0]
        ignored = lm_eval_metric(extractor).get("regexes_to_ignore")
        expected = lm_eval_reads(extractor, text)
        assert exact_match_hf_evaluate([got], [expected], regexes_to_ignore=ignored)["exact_match"] == 1.0, text


def _magic_number_task(folder: Path) -> Path:
    """Every training answer is 7: a tiny student learns to say "The answer is 7." in three epochs, so
    half of the test questions (gold 7, else 8) are right and a score of 0.5 is a real agreement."""
    folder.mkdir()
    train_rows = [{"question": f"Item {i} of the shelf: what is its magic number?",
                   "answer": "Every item has magic number 7. #### 7"} for i in range(48)]
    test_rows = [{"question": f"Box {i} of the hall: what is its magic number?", "answer": f"#### {7 + i % 2}"}
                 for i in range(8)]
    for split, rows in (("train", train_rows), ("test", test_rows)):
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def _lm_eval_output(folder: Path) -> tuple[dict, list[dict]]:
    results = json.loads(next(folder.rglob("results_*.json")).read_text())
    return results, _jsonl(next(folder.rglob("samples_*.jsonl")))


@pytest.mark.lmeval
@needs_lm_eval
def test_lm_eval_scores_the_exported_task_as_tailkd_eval_does(tmp_path, monkeypatch):
    run = tmp_path / "run"
    task = ["task=gsm8k", f"task.data_dir={_magic_number_task(tmp_path / 'data')}", "task.test_size=8",
            "task.max_new_tokens=24"]
    proc = train(run, "experiment=smoke", "logger=csv", *task, "teacher.corruption.rate=0", "trainer.pl.max_epochs=3",
                 "trainer.lr=3e-3", "trainer.eval_before=false")
    assert proc.returncode == 0, proc.stderr[-3000:]
    # the task again: tailkd-eval cannot yet merge a run's task whose source differs from chain_sum's
    # (Key 'path' is not in struct); the run's stop strings are the task's here
    scored = evaluate(tmp_path / "eval", f"model={run}", *task)
    predictions = _jsonl(tmp_path / "eval" / "predictions.jsonl")
    assert 0 < scored["test_accuracy"] < 1  # some right, some wrong

    proc = subprocess.run([sys.executable, "-m", "tailkd.cli.export", f"run={run}", f"out={tmp_path / 'lm'}"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    command = shlex.split(proc.stdout.strip().splitlines()[-1])  # the lm-eval command it prints, run as printed
    assert command[:2] == ["lm-eval", "run"] and f"pretrained={run / 'student'}" in command[command.index("--model_args") + 1]
    # in this process (HF_HUB_OFFLINE is set by conftest): a second interpreter importing torch costs more
    # than the scoring
    from lm_eval.__main__ import cli_evaluate

    monkeypatch.setattr(sys, "argv", [*command, "--log_samples", "--output_path", str(tmp_path / "scores")])
    cli_evaluate()
    results, samples = _lm_eval_output(tmp_path / "scores")
    assert results["results"]["tailkd_gsm8k"]["exact_match,tailkd"] == scored["test_accuracy"]
    samples.sort(key=lambda s: s["doc_id"])
    assert [s["doc"]["id"] for s in samples] == [p["id"] for p in predictions]
    assert [s["resps"][0][0].strip() for s in samples] == [p["output"] for p in predictions]
    assert [s["filtered_resps"][0] for s in samples] == [p["predicted"] or INVALID for p in predictions]
    assert [s["exact_match"] for s in samples] == [float(p["correct"]) for p in predictions]


def test_every_shipped_task_exports(tmp_path):
    """Each conf/task answer pattern is one lm-eval can mirror (no data is read: the task alone)."""
    for name in ("chain_sum", "commonsense_qa", "gsm8k", "gsm_symbolic", "strategyqa", "svamp"):
        task = Task(task_cfg(name))
        steps = lm_eval_filter(task.extractor)
        re.compile(steps[0]["regex_pattern"])


def test_the_printed_command_loads_what_the_run_kept(tmp_path):
    from omegaconf import OmegaConf

    from tailkd.cli.export import model_args

    run_cfg = OmegaConf.create({"student": {"dtype": "bfloat16", "pretrained": "Org/Base"}})
    student = tmp_path / "student"
    student.mkdir()
    (student / "adapter_config.json").write_text("{}")
    assert model_args(tmp_path, run_cfg) == f"pretrained=Org/Base,peft={student},dtype=bfloat16"  # a LoRA adapter
    (student / "merged").mkdir()
    (student / "merged" / "config.json").write_text("{}")
    assert model_args(tmp_path, run_cfg) == f"pretrained={student / 'merged'},dtype=bfloat16"  # its merged copy
    assert model_args(tmp_path / "nothing", run_cfg) is None
