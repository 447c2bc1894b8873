"""Checkpoints that let a killed run continue where it stopped.

A run's checkpoints live in one folder named by a fingerprint of its config (everything that changes
what is trained; not where outputs go, how it logs or how many threads it uses), under
``paths.checkpoint_dir`` (default ``<cache_dir>/checkpoints``). The same command started again
finds them; ``resume=PATH`` finds them through the config of the run in PATH. Each training stage
(``trainer.fit`` call) has a sub-folder: ``last.ckpt`` every ``trainer.checkpoint_every_n_steps``
optimiser steps (model, optimiser, schedule, loop position, RNG), and ``done.ckpt`` (weights and
RNG) once the stage ended, so a resumed run skips finished stages. A stage outside Lightning (ARTE's
DPO) keeps its result in a sub-folder of its own (:meth:`Checkpoints.stage_folder`). Everything before training
(teacher answers, signals) is recomputed from the teacher and signal caches; each checkpoint records a
digest of the records its stage trained on, and a stage whose records came out different (a request
that failed before and succeeded now) is trained again from its start rather than continued. The folder is deleted when the run finishes; a lock keeps two live runs of one config from
sharing it.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch

from tailkd import timing
from tailkd.training.memory import ReleaseFreedMemory, release_freed_memory

log = logging.getLogger(__name__)

# settings that change neither the data nor the training: a run differing only in these resumes
# a stage outside trainer.fit (ARTE's DPO) writes this last into its stage folder, once what it keeps is whole
STAGE_DONE = "done.json"
NOT_IN_FINGERPRINT = ("resume", "logger", "hydra", "paths", "trainer.num_threads", "trainer.checkpoint_every_n_steps",
                      "trainer.save_student", "trainer.pl.enable_progress_bar", "trainer.pl.log_every_n_steps",
                      "student.merge_lora")


def fingerprint(config: dict[str, Any]) -> str:
    """A digest of the resolved config without :data:`NOT_IN_FINGERPRINT`."""
    config = json.loads(json.dumps(config, default=str))
    for dotted in NOT_IN_FINGERPRINT:
        node, *path = dotted.split(".")
        parent = config
        for key in [node, *path][:-1]:
            parent = parent.get(key) if isinstance(parent, dict) else None
        if isinstance(parent, dict):
            parent.pop(dotted.split(".")[-1], None)
    blob = json.dumps(config, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


@dataclass
class Fitted:
    """What a stage's fit left: its optimiser steps, and whether it was read from a checkpoint."""

    steps: int
    restored: str | None  # None: trained now from the start; "done": skipped; "last": continued


class _StepCheckpoint(pl.Callback):
    """``last.ckpt`` every n optimiser steps, written to a temporary name and renamed, so that a
    kill during the write leaves the previous checkpoint whole."""

    def __init__(self, folder: Path, every_n_steps: int):
        self.folder, self.every_n_steps = folder, int(every_n_steps)
        self._saved_at = -1

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if step == 0 or step % self.every_n_steps or step == self._saved_at:
            return
        if trainer.fit_loop.epoch_loop._should_accumulate():
            return  # mid-window: the optimiser has not stepped on this batch
        self._saved_at = step
        pl_module.data_position = (trainer.current_epoch, batch_idx + 1)
        _atomic_save(trainer, self.folder / "last.ckpt")


def records_digest(records) -> str:
    """What a stage trains on: every record's id, prompt, target and weight, in order."""
    digest = hashlib.sha256()
    for r in records:
        digest.update(json.dumps([r.id, r.prompt, r.target, r.aux_prompt, r.aux_target, round(r.weight, 9)]).encode())
    return digest.hexdigest()[:20]


def _load(path: Path) -> dict:
    """A checkpoint, memory-mapped: reading its small fields does not read its tensors."""
    return torch.load(path, map_location="cpu", weights_only=False, mmap=True)


def _atomic_save(trainer: pl.Trainer, path: Path, weights_only: bool = False) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    trainer.save_checkpoint(tmp, weights_only=weights_only)
    os.replace(tmp, path)


class Checkpoints:
    """The checkpoints of one run (see the module docstring). ``folder=None`` turns them off."""

    def __init__(self, folder: Path | None, every_n_steps: int | None, run_dir: Path, fresh: bool = False):
        self.folder = Path(folder) if folder is not None else None
        self.every_n_steps = every_n_steps
        self.resumed_from: str | None = None
        self._lock = None
        if self.folder is None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        lock = open(self.folder / ".lock", "w")  # noqa: SIM115 -- held for the run's lifetime
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock.close()
            log.warning("another live run of this config holds %s: this run starts afresh without checkpoints",
                        self.folder)
            self.folder = None
            return
        self._lock = lock
        stages = [p for p in self.folder.iterdir() if p.is_dir()]
        if fresh:  # resume=false: an earlier run's checkpoints go, under the lock (never a live run's)
            for stage in stages:
                shutil.rmtree(stage)
        owner = self.folder / "run.json"
        # what a rerun restores: a checkpoint, or a stage outside training that finished (not a half-written file)
        if owner.exists() and any(any(stage.glob("*.ckpt")) or (stage / STAGE_DONE).is_file()
                                  for stage in stages if stage.exists()):
            self.resumed_from = json.loads(owner.read_text()).get("run_dir")
            log.info("resuming from the checkpoints in %s (left by %s)", self.folder, self.resumed_from)
            if self.resumed_from and Path(self.resumed_from).is_dir() and Path(self.resumed_from) != Path(run_dir):
                (Path(self.resumed_from) / "RESUMED_IN").write_text(f"{run_dir}\n")
        owner.write_text(json.dumps({"run_dir": str(run_dir)}))

    def fit(self, stage: str, trainer: pl.Trainer, module: pl.LightningModule, datamodule) -> Fitted:
        """``trainer.fit`` for one stage of the run: skipped if the stage finished before (its weights
        and RNG restored), continued from its last checkpoint if it was interrupted. Timed as the
        run's ``train`` phase (its ``warmup`` for TAiL's first stage)."""
        if not any(isinstance(c, ReleaseFreedMemory) for c in trainer.callbacks):
            trainer.callbacks.append(ReleaseFreedMemory())
        with timing.phase("warmup" if stage == "warmup" else "train"):
            fitted = self._fit(stage, trainer, module, datamodule)
        release_freed_memory()  # what training freed, before the next stage or test generation needs memory
        return fitted

    def _fit(self, stage: str, trainer: pl.Trainer, module: pl.LightningModule, datamodule) -> Fitted:
        if self.folder is None:
            trainer.fit(module, datamodule=datamodule)
            return Fitted(int(trainer.global_step), None)
        folder = self.folder / stage
        folder.mkdir(exist_ok=True)
        done, last = folder / "done.ckpt", folder / "last.ckpt"
        module.records_digest = records_digest(datamodule.records)
        for path in (done, last):
            if path.is_file() and _load(path).get("tailkd_records") != module.records_digest:
                # a teacher request that failed before may have succeeded now, the code may have changed:
                # continuing on other data would be neither run; this stage trains again from its start
                log.warning("stage %s: the checkpoint %s was trained on other data than this run has; training "
                            "the stage again", stage, path)
                done.unlink(missing_ok=True)
                last.unlink(missing_ok=True)
        if done.is_file():
            state = _load(done)
            module.load_state_dict(state["state_dict"])
            module.on_load_checkpoint(state)
            log.info("stage %s finished before: its weights are restored from %s", stage, done)
            return Fitted(int(state["global_step"]), "done")
        restored = None
        if last.is_file():
            state = _load(last)
            epoch, batches = state.get("tailkd_data_position") or (state["epoch"], 0)
            batches_per_epoch = -(-len(datamodule.records) // datamodule.batch_size)
            if batches >= batches_per_epoch:
                epoch, batches = epoch + 1, 0
            datamodule.sampler.resume_at(epoch, batches * datamodule.batch_size)
            restored = "last"
            log.info("stage %s continues from step %d (%s)", stage, state["global_step"], last)
        if self.every_n_steps:
            trainer.callbacks.append(_StepCheckpoint(folder, self.every_n_steps))
        trainer.fit(module, datamodule=datamodule, ckpt_path=str(last) if restored else None)
        _atomic_save(trainer, done, weights_only=True)
        last.unlink(missing_ok=True)
        return Fitted(int(trainer.global_step), restored)

    def stage_folder(self, stage: str) -> Path | None:
        """Where a stage outside ``trainer.fit`` (ARTE's DPO) keeps what a rerun restores instead of
        recomputing, :data:`STAGE_DONE` last (``resume=false`` empties it, as it deletes checkpoints). None
        when checkpoints are off."""
        if self.folder is None:
            return None
        folder = self.folder / stage
        folder.mkdir(exist_ok=True)
        return folder

    def finish(self) -> None:
        """The run ended: its checkpoints are no longer needed."""
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
        if self._lock is not None:
            self._lock.close()
            self._lock = None
