"""The steps every method recipe composes: load data, buy annotations, build the student, train,
evaluate, write outputs. A recipe (``methods/<name>.py``) reads as the sequence of these it needs."""

from __future__ import annotations

import json
import logging
import os
import random
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from tailkd.models import Student, load_student
from tailkd.tasks import Example, TaskData, load_task_data
from tailkd.teachers import Annotation, build_collector, get_selector
from tailkd.training import DistillDataModule, DistillModule, Encoder, TrainRecord
from tailkd.training.trainer import build_loggers, build_trainer

log = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "tailkd"


def cache_dir(cfg: DictConfig) -> Path:
    configured = cfg.paths.get("cache_dir")
    return Path(str(configured)).expanduser() if configured else default_cache_dir()


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def load_data(cfg: DictConfig) -> TaskData:
    data = load_task_data(OmegaConf.to_container(cfg.task, resolve=True))
    log.info("Task %s: %d training questions in the pool, %d test questions", data.task.name,
             len(data.train), len(data.test))
    return data


def buy_annotations(cfg: DictConfig, data: TaskData, run_dir: Path) -> tuple[list[Annotation], dict[str, Any]]:
    """Teacher annotations for the training pool, up to the budget, in the selection's order; every
    call is in ledger.jsonl, the annotations in annotations.jsonl. Returns them and the spend summary."""
    collector = build_collector(
        OmegaConf.to_container(cfg.teacher, resolve=True),
        OmegaConf.to_container(cfg.budget, resolve=True),
        data.task,
        cache_dir=cache_dir(cfg),
        ledger_path=run_dir / "ledger.jsonl",
    )
    order = get_selector(cfg.budget.get("selection", "random"))(data.train, random.Random(int(cfg.seed)))
    annotations = collector.collect(order)
    write_jsonl(run_dir / "annotations.jsonl", (a.to_dict() for a in annotations))
    summary = collector.ledger.summary()
    summary["teacher_parse_failures"] = sum(a.parse_failed for a in annotations)
    return annotations, summary


def annotation_accuracy(annotations: Sequence[Annotation], data: TaskData) -> float | None:
    """Share of bought annotations whose answer matches gold: how imperfect the teacher was here."""
    gold = {e.id: e.answer for e in data.train}
    if not annotations:
        return None
    return sum(a.answer == gold.get(a.example_id) for a in annotations) / len(annotations)


def build_student(cfg: DictConfig, data: TaskData) -> Student:
    texts = [data.task.prompt(e) + data.task.target(e.rationale, e.answer) for e in data.train]
    texts += [data.task.prompt(e) for e in data.test]
    return load_student(OmegaConf.to_container(cfg.student, resolve=True), cache_dir(cfg), texts)


def make_datamodule(cfg: DictConfig, records: list[TrainRecord], data: TaskData, student: Student):
    encoder = Encoder(student.tokenizer, student.is_causal, cfg.student.max_length)
    return DistillDataModule(
        records, data.test, encoder, cfg.trainer.batch_size, cfg.trainer.eval_batch_size, seed=int(cfg.seed)
    )


def make_module(cfg: DictConfig, student: Student, data: TaskData, **method_kwargs) -> DistillModule:
    return DistillModule(
        student, data.task,
        lr=cfg.trainer.lr, weight_decay=cfg.trainer.weight_decay, warmup_ratio=cfg.trainer.warmup_ratio,
        stop=list(cfg.task.get("until") or []), **method_kwargs,
    )


def make_trainer(cfg: DictConfig, run_dir: Path):
    flat = _flatten(OmegaConf.to_container(cfg, resolve=True))
    run_name = f"{cfg.task.name}-{cfg.method.name}-{cfg.student.name}-s{cfg.seed}"
    loggers = build_loggers(cfg.logger, run_dir, run_name, flat)
    return build_trainer(cfg.trainer.pl, loggers, run_dir), loggers


def evaluate(trainer, module: DistillModule, datamodule, tag: str) -> tuple[float, list[dict[str, Any]]]:
    module.eval_tag = tag
    trainer.test(module, datamodule=datamodule, verbose=False)
    log.info("%s accuracy: %.4f on %d questions", tag, module.accuracy, len(module.predictions))
    return module.accuracy, list(module.predictions)


def write_results(run_dir: Path, results: dict[str, Any]) -> None:
    (run_dir / "results.json").write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")


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
