"""Sweeps end to end: a two-job Hydra multirun (one finished W&B run per job, grouped by sweep; a
signal ablation pays the teacher once and samples the student once), the smoke grid script, and
tailkd-report on what they wrote."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tailkd.cli.report import main as report_main

from helpers import REPO
from test_teacher_openai import openai_overrides


def _run(cmd: list[str], cache: Path, timeout: int = 600, **env_vars: str) -> subprocess.CompletedProcess:
    # the scripts call $TAILKD_TRAIN: this Python's module, whether or not its bin/ is on PATH
    env = {**os.environ, "TAILKD_CACHE_DIR": str(cache), "OMP_NUM_THREADS": "1",
           "TAILKD_TRAIN": f"{sys.executable} -m tailkd.cli.train",
           "TAILKD_COLLECT": f"{sys.executable} -m tailkd.cli.collect", **env_vars}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    return proc


def _results(sweep: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(sweep.rglob("results.json"), key=lambda p: p.parent.name)]


def _wandb_run(job: Path) -> tuple[str, bytes]:
    """The debug log and the records of the job's single offline W&B run."""
    runs = list((job / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, runs
    return (runs[0] / "logs" / "debug.log").read_text(), next(runs[0].glob("run-*.wandb")).read_bytes()


def test_signal_ablation_multirun_pays_the_teacher_once_and_samples_once(fake, api_key, tmp_path):
    server = fake()
    sweep = tmp_path / "ablation"
    _run([sys.executable, "-m", "tailkd.cli.train", "-m", "experiment=smoke", "method=tail", "signals=all,sc",
          *openai_overrides(server), f"hydra.sweep.dir={sweep}"], tmp_path / "cache")
    first, second = _results(sweep)
    assert (first["signals_preset"], second["signals_preset"]) == ("all", "sc")
    assert first["teacher_paid_usd"] > 0 and first["teacher_cache_hits"] == 0
    assert second["teacher_queries"] == first["teacher_queries"] == second["teacher_cache_hits"] == 32
    assert second["teacher_paid_usd"] == 0 and second["teacher_requests_sent"] == 0
    assert second["teacher_cost_usd"] == first["teacher_cost_usd"]  # equal budget whatever the cache held
    assert server.count == first["teacher_requests_sent"]
    # the same warm-up gives the same weights: the sc job reads the samples the all job drew
    assert first["signal_cache_hits"] == 0 and second["signal_cache_hits"] == 1
    assert first["auroc_self_consistency"] == second["auroc_self_consistency"]

    for job, preset in zip(sorted(p for p in sweep.iterdir() if p.is_dir()), ("all", "sc")):
        debug, records = _wandb_run(job)
        assert "finishing run" in debug and "got exitcode: 0" in debug
        for expected in (sweep.name, "tail", f"signals:{preset}", "task:chain_sum", "budget:32", "student:tiny",
                         "test_accuracy_warmup", "signal_cache_hits"):  # group, job type, tags, summary
            assert expected.encode() in records, expected
        assert api_key.encode() not in records


def test_smoke_grid_then_report(tmp_path):
    sweep = tmp_path / "smoke"
    _run(["bash", str(REPO / "multirun_scripts" / "smoke_grid.sh"), f"hydra.sweep.dir={sweep}", "logger=csv"],
         tmp_path / "cache")
    results = _results(sweep)
    assert len(results) == 8
    assert {(r["method"], r["budget_max_queries"], r["seed"]) for r in results} == {
        (m, b, s) for m in ("finetune", "tail") for b in (16, 32) for s in (0, 1)}
    assert report_main([str(sweep)]) == 0
    report = (sweep / "report.md").read_text()
    assert "8 runs in 4 settings" in report
    assert (sweep / "accuracy_vs_budget.png").stat().st_size > 1000
    assert (sweep / "signal_auroc.png").stat().st_size > 1000
    assert "## Signals: AUROC" in report


SCRIPTS = sorted(p.name for p in (REPO / "multirun_scripts").glob("*.sh") if not p.name.startswith("_"))


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_multirun_script_composes_and_passes_arguments_on(script, tmp_path):
    """Each script's sweeps, dry: every swept value composes; the user's arguments reach every multirun,
    and hydra.sweep.dir=DIR names the folder all of them write into."""
    log = tmp_path / "sweeps.jsonl"
    data = tmp_path / "gsm8k_chatgpt"  # real_teacher_study.sh wants its recorded teacher; a dry run never reads it
    data.mkdir()
    (data / "teacher.jsonl").write_text("")
    env = {**os.environ, "SWEEP_LOG": str(log), "TAILKD_TRAIN": f"{sys.executable} {REPO / 'tests' / 'sweep_dry_run.py'}",
           "DATA": str(data)}
    proc = subprocess.run(["bash", str(REPO / "multirun_scripts" / script), f"hydra.sweep.dir={tmp_path / 'study'}",
                           "trainer.lr=3e-4"], capture_output=True, text=True, timeout=600, env=env, cwd=REPO)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    sweeps = [json.loads(line) for line in log.read_text().splitlines()]
    assert sweeps
    for sweep in sweeps:
        assert "trainer.lr=3e-4" in sweep["overrides"]
        dirs = [o for o in sweep["overrides"] if o.startswith("hydra.sweep.dir=")]
        assert len(dirs) == 1 and dirs[0].startswith(f"hydra.sweep.dir={tmp_path / 'study'}")
        assert "logger.wandb.group=study" in sweep["overrides"]
    methods = {m for s in sweeps for m in s["dims"]["method"]}
    assert "finetune" in methods and len(methods) >= 2  # every study compares a method with fine-tuning


@pytest.mark.parametrize("script, parts", [("testbed.sh", "curve elad"), ("live_teacher.sh", "finetune elad")])
@pytest.mark.parametrize("env_vars, elad, others", [({"EPOCHS": "6"}, "3", "6"),
                                                    ({"EPOCHS": "6", "ELAD_EPOCHS": "5"}, "5", "6")])
def test_elad_trains_half_the_epochs_a_round_unless_told(script, parts, env_vars, elad, others, tmp_path):
    """ELAD's 3 rounds train on twice the data, so half the epochs a round take the others' steps; its
    equal-steps control trains as ELAD does."""
    log = tmp_path / "sweeps.jsonl"
    data = tmp_path / "data"
    data.mkdir()
    (data / "teacher.jsonl").write_text("")
    env = {**os.environ, "SWEEP_LOG": str(log), "TAILKD_TRAIN": f"{sys.executable} {REPO / 'tests' / 'sweep_dry_run.py'}",
           "DATA": str(data), "PARTS": parts, "SEEDS": "0", "BUDGETS": "300", "SWEEP_COMPOSE": "0", **env_vars}
    proc = subprocess.run(["bash", str(REPO / "multirun_scripts" / script), f"hydra.sweep.dir={tmp_path / 'study'}"],
                          capture_output=True, text=True, timeout=600, env=env, cwd=REPO)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    epochs = {}
    for sweep in map(json.loads, log.read_text().splitlines()):
        for method in sweep["dims"]["method"]:
            epochs.setdefault(method, set()).update(sweep["dims"]["trainer.pl.max_epochs"])
    assert epochs["elad"] == epochs["finetune_equal_steps_elad"] == {elad}
    assert epochs["finetune"] == {others}

def test_testbed_collects_another_teacher_once_per_seed_and_every_job_replays_its_seeds(tmp_path):
    """TEACHER=<config>: each seed's bought questions are collected once, every job replays its own
    seed's collection, the oracle keeps that teacher's right answers, and the report pairs the seeds."""
    data = tmp_path / "csqa"
    data.mkdir()
    texts = ["office", "desk", "bedroom", "ceiling", "house"]
    rows = [{"id": f"q{i}", "question": f"Where would you put lamp number {i}?", "question_concept": "",
             "choices": {"label": list("ABCDE"), "text": texts}, "answerKey": "ABCDE"[i % 5]} for i in range(40)]
    for name, part in (("train.jsonl", rows[:30]), ("validation.jsonl", rows[30:])):
        (data / name).write_text("".join(json.dumps(r) + "\n" for r in part))
    # the other teacher: right on two questions of three, and it goes on with a question of its own
    said = {r["id"]: r["answerKey"] if i % 3 else "ABCDE"[(i + 1) % 5] for i, r in enumerate(rows[:30])}
    teacher = tmp_path / "other_teacher.jsonl"
    teacher.write_text("".join(json.dumps({"example_id": q, "text": f"A lamp goes where one reads. So the answer is "
                                           f"({a.lower()}).\n\nQ: Where is a cat?"}) + "\n" for q, a in said.items()))
    sweep = tmp_path / "testbed"
    _run(["bash", str(REPO / "multirun_scripts" / "testbed.sh"), f"hydra.sweep.dir={sweep}", "student=tiny",
          "trainer.batch_size=4"], tmp_path / "cache", DATA=str(data), TEACHER="recorded",
         TEACHER_ARGS=f"teacher.path={teacher}", BUDGETS="12", SEEDS="0,1", TEST_SIZE="6", EPOCHS="1",
         ORACLES="finetune,finetune_oracle", MAX_NEW_TOKENS="16")
    bought = {}
    for seed in (0, 1):
        collected = [json.loads(line) for line in (sweep / f"collect_s{seed}" / "annotations.jsonl").read_text().splitlines()]
        assert len(collected) == 12 and all("Q:" not in a["rationale"] for a in collected)
        bought[seed] = {a["example_id"] for a in collected}
        bought[seed, "right"] = sum(a["answer"] == said[a["example_id"]] == next(r["answerKey"] for r in rows if
                                    r["id"] == a["example_id"]) for a in collected)
    assert bought[0] != bought[1]  # each seed its own questions
    results = _results(sweep / "curve")
    assert {(r["method"], r["seed"]) for r in results} == {(m, s) for m in ("finetune", "finetune_oracle") for s in (0, 1)}
    for r in results:
        assert r["teacher_replayed"] == 12 and r["teacher_requests_sent"] == 0
        expected = 12 if r["method"] == "finetune" else bought[r["seed"], "right"]
        assert r["num_train_examples"] == expected, r
    assert report_main([str(sweep / "curve")]) == 0
    assert "4 runs in 2 settings" in (sweep / "curve" / "report.md").read_text()


def test_testbed_refuses_parts_that_choose_beyond_another_teachers_collection(tmp_path):
    proc = subprocess.run(["bash", str(REPO / "multirun_scripts" / "testbed.sh"), f"hydra.sweep.dir={tmp_path}"],
                          capture_output=True, text=True, cwd=REPO, timeout=60,
                          env={**os.environ, "TEACHER": "qwen-1.5b-embedded", "PARTS": "elad",
                               "TAILKD_COLLECT": "true", "DATA": str(tmp_path)})
    assert proc.returncode == 2 and "PARTS=elad chooses questions beyond the collected ones" in proc.stderr


@pytest.mark.parametrize("script, env_vars", [("testbed.sh", {"BUDGETS": "100,300,1000"}),
                                              ("live_teacher.sh", {"BUDGET": "1000"})])
def test_elad_scores_at_least_a_rounds_share_of_the_largest_budget(script, env_vars, tmp_path):
    """A round buys among its candidates only: 200 of them cannot spend a third of 1000 queries."""
    data, log = tmp_path / "data", tmp_path / "sweeps.jsonl"
    data.mkdir()
    (data / "teacher.jsonl").write_text("")
    env = {**os.environ, "SWEEP_LOG": str(log), "TAILKD_TRAIN": f"{sys.executable} {REPO / 'tests' / 'sweep_dry_run.py'}",
           "DATA": str(data), "PARTS": "elad", "SEEDS": "0", **env_vars}
    env.pop("ELAD_CANDIDATES", None)
    proc = subprocess.run(["bash", str(REPO / "multirun_scripts" / script), f"hydra.sweep.dir={tmp_path / 'study'}"],
                          capture_output=True, text=True, timeout=600, env=env, cwd=REPO)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    elad = [s for s in map(json.loads, log.read_text().splitlines()) if s["dims"]["method"] == ["elad"]]
    assert elad and {c for s in elad for c in s["dims"]["method.candidates"]} == {"334"}
