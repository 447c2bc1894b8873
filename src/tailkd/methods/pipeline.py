"""The steps every method recipe composes: load data, buy annotations, build the student, train,
evaluate, write outputs. A recipe (``methods/<name>.py``) reads as the sequence of these it needs."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import WandbLogger

from tailkd import __version__, timing
from tailkd.errors import DataError
from tailkd.methods.annotate import (  # noqa: F401  (re-exported: recipes use pipeline for every step)
    annotation_accuracy,
    buy_annotations,
    buying_order,
    cache_dir,
    load_data,
    make_collector,
    spend_summary,
    write_jsonl,
    write_results,
)
from tailkd.models import Student, load_student
from tailkd.models.save import save_student
from tailkd.provenance import provenance
from tailkd.signals.cache import SignalCache
from tailkd.tasks import Example, TaskData
from tailkd.training import DistillDataModule, DistillModule, Encoder, TrainRecord
from tailkd.training.checkpoints import Checkpoints, fingerprint
from tailkd.training.trainer import build_loggers, build_trainer, finish_loggers

log = logging.getLogger(__name__)


@dataclass
class Run:
    """One job from start to finish: what every recipe holds (its config, folder, data, checkpoints,
    loggers and clock) and the ending every recipe shares, so that a recipe keeps only what makes it
    different. ``start`` opens it; ``finish`` writes results.json's common fields, keeps the student,
    closes the loggers and the checkpoints."""

    cfg: DictConfig
    dir: Path
    method: str
    data: TaskData
    checkpoints: Checkpoints
    started: float
    _loggers: list | None = field(default=None, repr=False)
    _stops: tuple[Any, list[str]] | None = field(default=None, repr=False)

    @property
    def loggers(self) -> list:
        """Opened on first use: a run refused before training (nothing to learn) opens no W&B run."""
        if self._loggers is None:
            self._loggers = make_loggers(self.cfg, self.dir)
        return self._loggers

    def trainer(self, max_steps: int | None = None):
        """A Lightning Trainer on the run's loggers (one CSV file and W&B run for every stage)."""
        return make_trainer(self.cfg, self.dir, self.loggers, max_steps=max_steps)[0]

    def stops(self, datamodule) -> list[str]:
        """The stop strings of what ``datamodule`` trains on (:func:`stop_strings`), worked out and
        warned about once for it: ELAD sets them after a round's training and tests with them."""
        if self._stops is None or self._stops[0] is not datamodule:
            self._stops = (datamodule, stop_strings(self.data, datamodule.records))
        return self._stops[1]

    def test(self, trainer, module: DistillModule, datamodule) -> tuple[float, list[dict[str, Any]]]:
        """The trained student's test accuracy, generating with the stop strings of what it trained
        on; its predictions to predictions.jsonl."""
        module.stop = self.stops(datamodule)
        accuracy, predictions = evaluate(trainer, module, datamodule, "test")
        write_jsonl(self.dir / "predictions.jsonl", predictions)
        return accuracy, predictions

    def finish(self, student: Student, trainer, module: DistillModule, datamodule, *, annotations, spend: dict,
               steps: int, accuracy: float, accuracy_before: float | None, predictions: Sequence[dict[str, Any]],
               **extra: Any) -> dict[str, Any]:
        """results.json's fields for this run (the common ones, then the recipe's ``extra``), the
        student kept, the loggers closed, the checkpoints removed."""
        results = results_base(self.cfg, self.data, self.method, annotations, spend, steps=steps, trainer=trainer,
                               started=self.started, checkpoints=self.checkpoints)
        results.update(test_accuracy=accuracy, test_accuracy_before=accuracy_before,
                       num_test_examples=len(predictions), num_train_examples=len(datamodule.records),
                       stop_strings=module.stop, **datamodule.lengths)
        results.update(extra)
        keep_student(self.cfg, student, self.dir, results)
        finish_logging(self.loggers, results)
        self.checkpoints.finish()
        return results


def start(cfg: DictConfig, run_dir: Path, method: str) -> Run:
    """The run's clock, data and checkpoints (a rerun of the same config finds them again)."""
    started = time.time()
    return Run(cfg, run_dir, method, load_data(cfg), checkpoints(cfg, run_dir), started)

def training_texts(data: TaskData) -> list[str]:
    """The train pool as training renders it: what a tiny model's tokenizer (student or TA) learns from."""
    return [data.task.prompt(e) + data.task.target(e.rationale, e.answer) for e in data.train]


def build_student(cfg: DictConfig, data: TaskData) -> Student:
    texts = training_texts(data) + [data.task.prompt(e) for e in data.test]
    return load_student(OmegaConf.to_container(cfg.student, resolve=True), cache_dir(cfg), texts)


def make_datamodule(cfg: DictConfig, records: list[TrainRecord], data: TaskData, student: Student):
    """Training batches of ``records``; ``student.max_length=auto`` fits the longest of them (up to
    ``student.max_length_cap``), and ``datamodule.lengths`` says how many had to be cut or dropped."""
    require_records(cfg, data, records)
    max_length = cfg.student.get("max_length", "auto")
    encoder = Encoder(student.tokenizer, student.is_causal, None if str(max_length) == "auto" else int(max_length),
                      truncation=cfg.student.get("truncation", "keep_answer"))
    return DistillDataModule(
        records, data.test, encoder, cfg.trainer.batch_size, cfg.trainer.eval_batch_size, seed=int(cfg.seed),
        max_length_cap=int(cfg.student.get("max_length_cap", 1024)),
    )


def require_records(cfg: DictConfig, data: TaskData, records: Sequence[TrainRecord]) -> None:
    """Something to train on, or a :class:`DataError` saying why there is nothing: a recorded file made
    for another task or split, or teacher answers none of which could be read."""
    if records:
        return
    if cfg.teacher.backend == "recorded":
        raise DataError(f"{cfg.teacher.path} answers none of {data.task.name}'s {len(data.train)} training "
                        f"questions with a readable answer: nothing to train on (is it for another task or split?)")
    raise DataError("nothing to train on: the teacher gave no answer that could be read (see annotations.jsonl "
                    "and ledger.jsonl in the run folder)")


def placeholder_record(data: TaskData) -> TrainRecord:
    """A record for a data module that only evaluates (nothing bought to train on yet)."""
    example = data.train[0]
    return TrainRecord(example.id, data.task.prompt(example), data.task.target(example.rationale, example.answer))


def stop_strings(data: TaskData, records: list[TrainRecord]) -> list[str]:
    """``task.until`` without any stop string found inside a target the student is taught, said once."""
    targets = [t for r in records for _, t, _ in r.pairs()]
    stops = data.task.safe_stops(targets)
    dropped = [s for s in data.task.until if s not in stops]
    if dropped:
        log.warning("task.until %s occur inside training targets: generation will not stop at them", dropped)
    return stops


def make_module(cfg: DictConfig, student: Student, data: TaskData, **method_kwargs) -> DistillModule:
    return DistillModule(
        student, data.task,
        lr=cfg.trainer.lr, weight_decay=cfg.trainer.weight_decay, warmup_ratio=cfg.trainer.warmup_ratio,
        stop=list(cfg.task.get("until") or []), **method_kwargs,
    )


def make_loggers(cfg: DictConfig, run_dir: Path):
    """CSV, and W&B when enabled: one W&B run per job, grouped by sweep, ``job_type`` the method."""
    flat = _flatten(OmegaConf.to_container(cfg, resolve=True))
    identity = run_identity(cfg)
    return build_loggers(cfg.logger, run_dir, identity.pop("name"), flat, **identity)


def run_identity(cfg: DictConfig) -> dict[str, Any]:
    """Name, group, job type and tags of a run, so that a W&B workspace sorts a sweep by itself.

    The group is ``logger.wandb.group`` when set, else the multirun folder's name (every job of one
    ``-m`` sweep shares it), else none."""
    signals = cfg.signals.name if _uses_signals(cfg) else None
    budget = cfg.budget.get("max_queries")
    tags = [f"task:{cfg.task.name}", f"student:{cfg.student.name}", f"method:{cfg.method.name}",
            f"budget:{budget if budget is not None else 'unlimited'}", f"teacher:{cfg.teacher.backend}"]
    if signals:
        tags.append(f"signals:{signals}")
    rate = teacher_error_rate(cfg)
    if rate is not None:
        tags.append(f"teacher_error:{rate}")
    name = "-".join(str(p) for p in (cfg.task.name, cfg.method.name, signals, cfg.student.name) if p)
    return {"name": f"{name}-s{cfg.seed}", "group": cfg.logger.get("wandb", {}).get("group") or _sweep_name(),
            "job_type": cfg.method.name, "tags": tags}


def teacher_error_rate(cfg: DictConfig) -> float | None:
    """The simulated teacher's corruption rate; None for a real teacher (its error rate is unknown)."""
    return OmegaConf.select(cfg, "teacher.corruption.rate") if cfg.teacher.backend == "simulated" else None


def _uses_signals(cfg: DictConfig) -> bool:
    """Whether the run's recipe weighs by ``signals`` (its class says so: ``uses_signals``)."""
    from hydra.utils import get_class

    target = cfg.method.get("_target_")
    return bool(target) and getattr(get_class(target), "uses_signals", False)


def _sweep_name() -> str | None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return None
    return Path(HydraConfig.get().sweep.dir).name


def make_trainer(cfg: DictConfig, run_dir: Path, loggers=None, max_steps: int | None = None):
    """A Lightning Trainer; pass the loggers of an earlier stage to keep one CSV file and W&B run.
    ``max_steps`` trains that many optimiser steps instead of ``trainer.pl.max_epochs`` epochs."""
    loggers = loggers if loggers is not None else make_loggers(cfg, run_dir)
    pl_kwargs = dict(cfg.trainer.pl)
    if max_steps is not None:
        pl_kwargs.update(max_steps=int(max_steps), max_epochs=-1)
    return build_trainer(pl_kwargs, loggers, run_dir), loggers


def evaluate(trainer, module: DistillModule, datamodule, tag: str) -> tuple[float, list[dict[str, Any]]]:
    module.eval_tag = tag
    with timing.phase("evaluate"):
        trainer.test(module, datamodule=datamodule, verbose=False)
    log.info("%s accuracy: %.4f on %d questions", tag, module.accuracy, len(module.predictions))
    return module.accuracy, list(module.predictions)


def evaluate_before(cfg: DictConfig, trainer, module: DistillModule, datamodule, run_dir: Path) -> float | None:
    """The untrained student's accuracy (its predictions in predictions_before.jsonl), or None under
    ``trainer.eval_before=false``: it is the same in every run of a study, and a sweep need not pay for
    it in each job. Under DDP/FSDP it runs anyway: the first Lightning call is what launches the other
    ranks, and tail_no_warmup's next one comes after its rank-0-only steps."""
    if not cfg.trainer.get("eval_before", True) and trainer.num_devices * trainer.num_nodes == 1:
        return None
    accuracy, predictions = evaluate(trainer, module, datamodule, "test_before")
    write_jsonl(run_dir / "predictions_before.jsonl", predictions)
    return accuracy


def results_base(cfg: DictConfig, data: TaskData, method: str, annotations, spend: dict, *, steps: int, trainer,
                 started: float, checkpoints: Checkpoints | None = None):
    """The fields every method's results.json has, besides its accuracies: what ran, what the teacher
    cost, and how to reproduce it (commit, library versions, device, precision, threads)."""
    return {
        "task": data.task.name,
        "task_version": data.task.version,
        "method": method,
        "student": cfg.student.name,
        "seed": int(cfg.seed),
        "train_pool_size": len(data.train),
        "budget_max_queries": cfg.budget.get("max_queries"),
        "budget_max_usd": cfg.budget.get("max_usd"),
        "teacher_backend": cfg.teacher.backend,
        "teacher_model": cfg.teacher.get("model"),
        "teacher_error_rate": teacher_error_rate(cfg),
        "teacher_annotation_accuracy": annotation_accuracy(annotations, data),
        **spend,
        "train_steps": int(steps),
        "runtime_s": round(time.time() - started, 1),
        "time_s": timing.summary(),  # per phase: buy, warmup, select, signals (sample, ta), train, evaluate
        "resumed_from": checkpoints.resumed_from if checkpoints is not None else None,
        "tailkd_version": __version__,
        **provenance(device=inference_device(trainer), precision=str(trainer.precision), started=started),
    }


def inference_device(trainer):
    """The device the run trains on. Lightning hands the model back on the CPU after ``fit`` and
    ``test``, so every inference step outside them must move it there first (:func:`inference`)."""
    return trainer.strategy.root_device


@contextlib.contextmanager
def inference(cfg: DictConfig, student: Student, trainer):
    """The student on the run's device, under the training precision, for sampling, selection and
    TA scoring: the same numbers as inside Lightning, at its speed."""
    student.model.to(inference_device(trainer))
    with inference_precision(cfg, student):
        yield


def checkpoints(cfg: DictConfig, run_dir: Path) -> Checkpoints:
    """The run's checkpoints, found again by a rerun of the same config (see training/checkpoints.py);
    ``resume=false`` deletes an earlier run's and starts afresh. Off for multi-process strategies."""
    from tailkd.training.distributed import launched_rank

    every = cfg.trainer.get("checkpoint_every_n_steps")
    root = cfg.paths.get("checkpoint_dir")
    root = Path(str(root)).expanduser() if root else cache_dir(cfg) / "checkpoints"
    pl_cfg = cfg.trainer.pl
    devices = pl_cfg.get("devices", 1)
    one_device = str(devices) == "1" or (OmegaConf.is_list(devices) and len(devices) == 1)
    one_process = pl_cfg.get("strategy", "auto") in (None, "auto") and one_device and pl_cfg.get("num_nodes", 1) in (None, 1)
    if launched_rank() > 0 or not one_process:
        # every rank must take the same decision (a checkpoint is a barrier for all of them): several
        # processes do not resume (yet), see docs
        return Checkpoints(None, None, run_dir)
    folder = root / fingerprint(OmegaConf.to_container(cfg, resolve=True))
    fresh = str(cfg.get("resume", "auto")).lower() in ("false", "never")
    return Checkpoints(folder, int(every) if every else None, run_dir, fresh=fresh)


def keep_student(cfg: DictConfig, student: Student, run_dir: Path, results: dict) -> None:
    """The distilled student into ``run_dir/student`` (``trainer.save_student=false``: not kept)."""
    from tailkd.training.distributed import launched_rank

    if not cfg.trainer.get("save_student", True) or launched_rank() > 0:
        return
    save_student(student, run_dir / "student", results=results, config=OmegaConf.to_container(cfg, resolve=True),
                 merge_lora=bool(cfg.student.get("merge_lora", False)))


def signal_cache(cfg: DictConfig, student: Student, trainer=None) -> SignalCache:
    """What an identical student computed before, shared across a sweep and found again by a rerun
    (``signals.cache``): TAiL's raw signals, ARTE's one-shot scores."""
    if not cfg.signals.get("cache", True):
        return SignalCache(None)
    device = inference_device(trainer) if trainer is not None else student.model.device
    context = {"precision": str(cfg.trainer.pl.get("precision")), "device": str(device.type)}
    return SignalCache(cache_dir(cfg) / "signals", context)


def inference_precision(cfg: DictConfig, student: Student):
    """The autocast that training uses (``trainer.pl.precision``), for inference outside Lightning:
    signal sampling and TA scoring would otherwise run in float32, at half the speed on CPU."""
    import torch

    precision = str(cfg.trainer.pl.get("precision", "32-true"))
    if not precision.endswith("-mixed"):
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision.startswith("bf16") else torch.float16
    return torch.autocast(student.model.device.type, dtype=dtype)


def log_table(loggers, key: str, columns: list[str], rows: list[list[Any]]) -> None:
    """A table to W&B (the JSON Lines files in the run folder hold the same for the CSV logger)."""
    for logger in loggers:
        if isinstance(logger, WandbLogger) and rows:
            logger.log_table(key=key, columns=columns, data=rows)


def log_signals(loggers, rows: Sequence[dict[str, Any]]) -> None:
    """The per-example signal table and weight histogram, to W&B (the CSV gets signals.jsonl instead)."""
    for logger in loggers:
        if not isinstance(logger, WandbLogger) or not rows:
            continue
        import wandb

        names = [n for n in ("self_consistency", "ta_student", "ta_teacher") if n in rows[0]]
        columns = ["id", "teacher_correct", "corruption", "weight"] + [f"{n}_value" for n in names]
        data = [[r["id"], r.get("teacher_correct"), r.get("corruption"), r["weight"]]
                + [r[n].get("value") for n in names] for r in rows]
        logger.log_table(key="signals/examples", columns=columns, data=data)
        histograms = {"signals/weight": wandb.Histogram([r["weight"] for r in rows])}
        histograms.update({f"signals/{n}": wandb.Histogram([r[n]["value"] for r in rows]) for n in names})
        logger.experiment.log(histograms)


def finish_logging(loggers, results: dict[str, Any]) -> None:
    """results.json into every logger: metrics for CSV, the run summary for W&B (what its tables show)."""
    for logger in loggers:
        logger.log_metrics({f"results/{k}": v for k, v in results.items() if isinstance(v, (int, float))
                            and not isinstance(v, bool)})
        if isinstance(logger, WandbLogger):
            logger.experiment.summary.update({k: v for k, v in results.items() if v is not None})
    finish_loggers(loggers)



def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(tree, dict):
        return {prefix: tree}
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict):
            flat.update(_flatten(value, name))
        else:
            flat[name] = value
    return flat


def examples_by_id(examples: Sequence[Example]) -> dict[str, Example]:
    return {e.id: e for e in examples}
