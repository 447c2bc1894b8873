"""trainer=ddp on two CPU processes (gloo): the teacher is paid once, every rank trains on rank 0's
signal weights, predictions cover the test set once, and only rank 0 writes the run folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tailkd.report import find_runs

from helpers import REPO
from test_teacher_openai import jsonl as _jsonl
from test_teacher_openai import openai_overrides


def test_tail_under_ddp_on_two_cpu_processes(fake, api_key, tmp_path):
    server = fake()
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "tailkd.cli.train", "experiment=smoke", "method=tail", "trainer=ddp",
           "trainer.pl.accelerator=cpu", "trainer.pl.devices=2", "logger=csv", "task.test_size=15",
           *openai_overrides(server), f"hydra.run.dir={run}"]
    env = {**os.environ, "TAILKD_CACHE_DIR": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=REPO)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]

    results = json.loads((run / "results.json").read_text())
    other = json.loads((run / ".rank1" / "results.json").read_text())
    assert results["teacher_queries"] == 32 and results["teacher_paid_usd"] > 0
    assert server.count == results["teacher_requests_sent"]  # rank 1 sent nothing: it read the cache
    assert other["teacher_requests_sent"] == 0 and other["teacher_cache_hits"] == 32
    # 15 questions on 2 ranks: DistributedSampler pads with a repeat; the gathered predictions do not
    predictions = _jsonl(run / "predictions.jsonl")
    assert len(predictions) == 15 == len({p["id"] for p in predictions}) == results["num_test_examples"]
    assert results["test_accuracy"] == other["test_accuracy"]
    assert [r["weight"] for r in _jsonl(run / "signals.jsonl")] == [r["weight"] for r in _jsonl(run / ".rank1" / "signals.jsonl")]
    runs, _ = find_runs([tmp_path])
    assert [r.path for r in runs] == [run]  # the report skips the other rank's scratch folder
