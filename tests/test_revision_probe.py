"""multirun_scripts/revision_probe.py: revision prompts and fresh questions for recorded explanations."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from tailkd.config import config_dir
from tailkd.tasks.registry import load_task_data

REPO = Path(__file__).resolve().parents[1]


def test_the_probe_counts_revisions_that_keep_the_students_answer(tmp_path):
    """The simulated teacher keeps a right student's steps and rewrites a wrong one's from gold: the
    probe reports that one revision of two keeps the student's answer, and both are right."""
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("train", overrides=["experiment=smoke"])
    data = load_task_data(OmegaConf.to_container(cfg.task, resolve=True))
    right, wrong = data.train[:2]
    rows = [{"id": e.id, "question": e.question, "explanation": text, "steps": ["a.", "b."], "final_answer": answer}
            for e, text, answer in [(right, f"{right.rationale} The answer is {right.answer}.", right.answer),
                                    (wrong, "1 + 1 = 3. 3 + 1 = 4. The answer is 4.", "4")]]
    selected = tmp_path / "selected.jsonl"
    selected.write_text("".join(json.dumps(r) + "\n" for r in rows))
    env = {**os.environ, "TAILKD_CACHE_DIR": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, str(REPO / "multirun_scripts" / "revision_probe.py"), str(selected),
                           "experiment=smoke", "teacher=simulated", "teacher.corruption.rate=0.0"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "2 explanations" in proc.stdout
    assert "method.revision_prompt: 2 answers, 1 with the student's answer, 0 the answer line alone, 2 right" in proc.stdout
    assert "fresh (teacher.prompt): 2 answers" in proc.stdout
