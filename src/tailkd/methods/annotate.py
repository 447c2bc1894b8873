"""The steps before any model: load a task's data, buy teacher annotations, write outputs.

Kept free of torch and Lightning so that ``tailkd-collect`` starts in a second or two.
"""

from __future__ import annotations

import json
import logging
import os
import random
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from tailkd.tasks import Example, TaskData, load_task_data
from tailkd.teachers import Annotation, Collector, build_collector, get_selector
from tailkd.teachers.audit import log_audit, parse_audit

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


def make_collector(cfg: DictConfig, data: TaskData, run_dir: Path) -> Collector:
    """The run's collector: every call goes to run_dir/ledger.jsonl and through the shared cache
    (``paths.cache_url``'s server, else SQLite in ``paths.cache_dir``)."""
    return build_collector(
        OmegaConf.to_container(cfg.teacher, resolve=True),
        OmegaConf.to_container(cfg.budget, resolve=True),
        data.task,
        cache_dir=cache_dir(cfg),
        cache_url=cfg.paths.get("cache_url"),
        ledger_path=run_dir / "ledger.jsonl",
    )


def buying_order(cfg: DictConfig, data: TaskData) -> list[Example]:
    return get_selector(cfg.budget.get("order", "random"))(data.train, random.Random(int(cfg.seed)))


def spend_summary(collector: Collector, annotations: Sequence[Annotation], run_dir: Path) -> dict[str, Any]:
    """Writes annotations.jsonl; returns the ledger's totals and the audit of how the teacher's text
    was read (logged too)."""
    write_jsonl(run_dir / "annotations.jsonl", (a.to_dict() for a in annotations))
    summary = collector.ledger.summary()
    summary["teacher_parse_failures"] = sum(a.parse_failed for a in annotations)
    audit = parse_audit(annotations, {i: e.answer for i, e in collector.examples.items()})
    log_audit(audit)
    summary["teacher_parse"] = audit
    over = collector.overrun  # a server that billed above the limits sent: at most one request's excess
    summary["teacher_budget_overrun"] = {"queries": over.queries, "tokens": over.tokens, "usd": round(over.usd, 6)}
    summary["teacher_cache_error"] = collector.cache_error  # the cache failed mid-run and was dropped
    summary["teacher_model"] = collector.backend.model  # a recorded teacher's comes from its rows
    return summary


def buy_annotations(cfg: DictConfig, data: TaskData, run_dir: Path) -> tuple[list[Annotation], dict[str, Any]]:
    """Teacher annotations for the training pool, up to the budget, in the selection's order; every
    call is in ledger.jsonl, the annotations in annotations.jsonl. Returns them and the spend summary."""
    collector = make_collector(cfg, data, run_dir)
    annotations = collector.collect(buying_order(cfg, data))
    return annotations, spend_summary(collector, annotations, run_dir)


def annotation_accuracy(annotations: Sequence[Annotation], data: TaskData) -> float | None:
    """Share of bought annotations whose answer matches gold: how imperfect the teacher was here."""
    gold = {e.id: e.answer for e in data.train}
    if not annotations:
        return None
    return sum(a.answer == gold.get(a.example_id) for a in annotations) / len(annotations)


def write_results(run_dir: Path, results: dict[str, Any]) -> None:
    (run_dir / "results.json").write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")

