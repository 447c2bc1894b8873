"""A run killed at any point continues when the same command starts again: same result, teacher unpaid.

The run is TAiL (both stages train) with a LoRA student whose adapters have dropout, so that the data
order, the optimiser, the schedule and the RNG stream all have to be restored exactly for the weights
to come out bit for bit the same.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from fake_openai import FakeOpenAI

TRAIN = [sys.executable, "-m", "tailkd.cli.train"]


def _overrides(server: FakeOpenAI, ckpt: Path) -> list[str]:
    return ["experiment=smoke", "method=tail", "signals=ta_teacher", "logger=csv", "trainer.pl.max_epochs=12",
            "trainer.checkpoint_every_n_steps=1", f"paths.checkpoint_dir={ckpt}",
            "student.lora.enabled=true", "student.lora.dropout=0.1", "teacher=openai",
            f"teacher.base_url={server.base_url}", "teacher.model=gpt-4o-mini", "teacher.max_concurrency=4",
            "teacher.retry.base_delay_s=0.01"]


def _start(run_dir: Path, overrides: list[str], env: dict) -> subprocess.Popen:
    return subprocess.Popen([*TRAIN, f"hydra.run.dir={run_dir}", *overrides], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _kill_when(proc: subprocess.Popen, ready, what: str) -> None:
    deadline = time.monotonic() + 240
    while not ready():
        if proc.poll() is not None:
            raise AssertionError(f"the run ended before {what}: {proc.communicate()[1][-2000:]}")
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL


def _finish(proc: subprocess.Popen) -> dict:
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    return out + err


def test_killed_in_either_stage_then_rerun_ends_as_an_uninterrupted_run(tmp_path, api_key):
    ckpt = tmp_path / "checkpoints"
    env = {**os.environ, "TAILKD_CACHE_DIR": str(tmp_path / "cache")}
    with FakeOpenAI(latency_s=0.01) as server:
        overrides = _overrides(server, ckpt)

        # killed during the warm-up, then (same command) during stage 2, then finished
        first = _start(tmp_path / "a", overrides, env)
        _kill_when(first, lambda: any(ckpt.glob("*/warmup/last.ckpt")), "a warm-up checkpoint")
        assert not any(ckpt.glob("*/warmup/done.ckpt")), "the warm-up ended before the kill"
        assert server.wait_quiet() == 6  # the warm-up's share of the 32 annotations
        second = _start(tmp_path / "b", overrides, env)
        _kill_when(second, lambda: any(ckpt.glob("*/main/last.ckpt")), "a stage-2 checkpoint")
        assert any(ckpt.glob("*/warmup/done.ckpt"))
        assert server.wait_quiet() == 32 == len(set(server.prompts()))  # the rest, nothing twice
        _finish(_start(tmp_path / "c", overrides, env))
        resumed = json.loads((tmp_path / "c" / "results.json").read_text())
        assert not any(ckpt.rglob("*.ckpt"))  # a finished run leaves no checkpoints behind
        assert server.wait_quiet() == 32  # nothing bought again
        statuses = {json.loads(line)["status"] for line in (tmp_path / "c" / "ledger.jsonl").read_text().splitlines()}
        assert statuses == {"cache_hit"} and resumed["teacher_paid_usd"] == 0
        assert resumed["resumed_from"] == str(tmp_path / "b")
        assert (tmp_path / "b" / "RESUMED_IN").read_text().strip() == str(tmp_path / "c")

        # the same command once more, never interrupted (the checkpoints are gone: it trains afresh)
        _finish(_start(tmp_path / "d", overrides, env))
    reference = json.loads((tmp_path / "d" / "results.json").read_text())
    assert reference["resumed_from"] is None
    for key in ("test_accuracy", "test_accuracy_warmup", "train_steps", "warmup_steps", "teacher_cost_usd"):
        assert resumed[key] == reference[key], key
    assert reference["train_steps"] == 12 + 12 * 4

    def outputs(run):
        return [json.loads(line)["output"] for line in (tmp_path / run / "predictions.jsonl").read_text().splitlines()]

    assert outputs("c") == outputs("d")
    adapter = "student/adapter_model.safetensors"
    assert (tmp_path / "c" / adapter).read_bytes() == (tmp_path / "d" / adapter).read_bytes()


def test_resume_from_a_run_folder(tmp_path):
    """resume=PATH continues the run in PATH with the config it started with, whatever else is given."""
    ckpt = tmp_path / "checkpoints"
    env = {**os.environ, "TAILKD_CACHE_DIR": str(tmp_path / "cache")}
    overrides = ["experiment=smoke", "logger=csv", "trainer.pl.max_epochs=15", "trainer.checkpoint_every_n_steps=2",
                 f"paths.checkpoint_dir={ckpt}", "seed=3"]
    first = _start(tmp_path / "a", overrides, env)
    _kill_when(first, lambda: any(ckpt.glob("*/train/last.ckpt")), "a checkpoint")
    _finish(_start(tmp_path / "b", [f"resume={tmp_path / 'a'}", "task=gsm_symbolic", "logger=csv"], env))
    results = json.loads((tmp_path / "b" / "results.json").read_text())
    assert results["task"] == "chain_sum" and results["seed"] == 3 and results["resumed_from"] == str(tmp_path / "a")
    assert results["train_steps"] == 15 * 4
    done = subprocess.run([*TRAIN, f"hydra.run.dir={tmp_path / 'c'}", f"resume={tmp_path / 'b'}"], env=env,
                          capture_output=True, text=True)
    assert done.returncode == 2 and "finished" in done.stdout + done.stderr and "Traceback" not in done.stderr


def test_a_stage_checkpointed_on_other_data_is_trained_again(tmp_path, caplog):
    """A resumed run whose purchases came out different (a request that failed before succeeded now)
    must not continue training on records its checkpoint never saw."""
    import pytorch_lightning as pl

    from tailkd.training import DistillDataModule, DistillModule, Encoder
    from tailkd.training.checkpoints import Checkpoints

    from helpers import chain_task, records, tiny_student

    def fit(recs, run):
        student = tiny_student()
        datamodule = DistillDataModule(recs, [], Encoder(student.tokenizer, True, 128), 4, 4)
        trainer = pl.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                             enable_model_summary=False, accelerator="cpu")
        return Checkpoints(tmp_path / "ckpt", 1, tmp_path / run).fit("train", trainer,
                                                                       DistillModule(student, chain_task(), lr=1e-3),
                                                                       datamodule)

    assert fit(records(8), "a").restored is None
    assert fit(records(8), "b").restored == "done"  # the same records: the finished stage is reused
    changed = records(8)
    changed[3].target = " something else entirely. The answer is 1."
    assert fit(changed, "c").restored is None and "trained on other data" in caplog.text


def test_every_training_stage_hands_freed_memory_back_each_epoch_and_at_its_end(tmp_path, monkeypatch):
    """Batches of varying length fragment glibc's heap: memory a step freed stays in the process (two
    135M jobs on ~350-token rationales grew to 10.5 GB each and were OOM-killed). malloc_trim runs at each
    epoch's end and when the stage ends, with or without checkpoints."""
    import pytorch_lightning as pl

    from tailkd.training import DistillDataModule, DistillModule, Encoder, memory
    from tailkd.training.checkpoints import Checkpoints

    from helpers import chain_task, records, tiny_student

    calls = []
    monkeypatch.setattr(memory, "_malloc_trim", lambda: lambda pad: calls.append(pad) or 1)
    for folder in (tmp_path / "ckpt", None):
        calls.clear()
        student = tiny_student()
        datamodule = DistillDataModule(records(8), [], Encoder(student.tokenizer, True, 128), 4, 4)
        trainer = pl.Trainer(max_epochs=3, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                             enable_model_summary=False, accelerator="cpu")
        Checkpoints(folder, None, tmp_path / "run").fit("train", trainer, DistillModule(student, chain_task(), lr=1e-3),
                                                        datamodule)
        assert calls == [0] * 4, folder  # three epochs, then the stage's end


def test_releasing_freed_memory_is_a_no_op_without_glibc(monkeypatch):
    from tailkd.training import memory

    monkeypatch.setattr(memory, "_malloc_trim", lambda: None)  # macOS, musl: no malloc_trim
    assert memory.release_freed_memory() is False


def test_a_stage_outside_training_is_found_by_a_rerun_and_emptied_by_resume_false(tmp_path):
    from tailkd.training.checkpoints import STAGE_DONE, Checkpoints

    killed = Checkpoints(tmp_path / "ckpt", None, tmp_path / "a")
    (killed.stage_folder("dpo") / "adapter_model.safetensors").write_text("half")
    killed._lock.close()  # a killed run's lock goes with its process
    saving = Checkpoints(tmp_path / "ckpt", None, tmp_path / "a")
    assert saving.resumed_from is None  # killed while saving: nothing to restore
    (saving.stage_folder("dpo") / STAGE_DONE).write_text("{}")
    saving._lock.close()
    rerun = Checkpoints(tmp_path / "ckpt", None, tmp_path / "b")
    assert rerun.resumed_from == str(tmp_path / "a") and (rerun.stage_folder("dpo") / STAGE_DONE).is_file()
    rerun._lock.close()
    fresh = Checkpoints(tmp_path / "ckpt", None, tmp_path / "c", fresh=True)
    assert fresh.resumed_from is None and not any(fresh.stage_folder("dpo").iterdir())
    assert Checkpoints(None, None, tmp_path / "d").stage_folder("dpo") is None
