"""Baselines: fine-tune the student on teacher annotations, every example weighted alike.

- ``method=finetune``: learn the teacher's rationale then answer (``target: rationale``), or the answer
  alone (``target: answer``).
- ``method=distill_step_by_step`` (Hsieh et al., 2023): two tasks on each question, told apart by a
  prefix: predict the label (``[label] ``) and generate the rationale (``[rationale] ``);
  loss = label loss + ``rationale_weight`` x rationale loss. Evaluation asks for the label.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from tailkd import __version__
from tailkd.errors import ConfigError
from tailkd.methods import pipeline as P
from tailkd.tasks import Task
from tailkd.teachers import Annotation
from tailkd.training import TrainRecord
from tailkd.training.trainer import finish_loggers

log = logging.getLogger(__name__)

TARGETS = ("rationale", "answer")


def records_from_annotations(
    annotations: Sequence[Annotation],
    task: Task,
    questions: Mapping[str, Any],
    target: str = "rationale",
    multitask: Mapping[str, Any] | None = None,
) -> list[TrainRecord]:
    """One record per parsed annotation; annotations whose answer could not be parsed are skipped
    (they stay in annotations.jsonl, paid for and visible)."""
    records = []
    for a in annotations:
        if a.parse_failed:
            continue
        prompt = task.prompt(questions[a.example_id])
        full_target = task.target(a.rationale, a.answer)
        if multitask:
            records.append(TrainRecord(
                a.example_id,
                multitask["label_prefix"] + prompt, task.answer_target(a.answer),
                aux_prompt=multitask["rationale_prefix"] + prompt, aux_target=full_target,
            ))
        else:
            records.append(TrainRecord(
                a.example_id, prompt, full_target if target == "rationale" else task.answer_target(a.answer)
            ))
    skipped = len(annotations) - len(records)
    if skipped:
        log.warning("%d teacher annotations had no parseable answer and are not trained on", skipped)
    return records


class Finetune:
    def __init__(self, name: str, target: str = "rationale", multitask: Mapping[str, Any] | None = None):
        if target not in TARGETS:
            raise ConfigError(f"method.target={target!r} is unknown; choose one of {list(TARGETS)}")
        if multitask is not None:
            missing = {"label_prefix", "rationale_prefix", "rationale_weight"} - set(multitask)
            if missing:
                raise ConfigError(f"method.multitask lacks {sorted(missing)}")
        self.name = name
        self.target = target
        self.multitask = dict(multitask) if multitask else None

    def run(self, cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
        started = time.time()
        data = P.load_data(cfg)
        annotations, spend = P.buy_annotations(cfg, data, run_dir)
        records = records_from_annotations(
            annotations, data.task, P.examples_by_id(data.train), self.target, self.multitask
        )
        student = P.build_student(cfg, data)
        datamodule = P.make_datamodule(cfg, records, data, student)
        module = P.make_module(
            cfg, student, data,
            aux_loss_weight=self.multitask["rationale_weight"] if self.multitask else 0.0,
            eval_prompt_prefix=self.multitask["label_prefix"] if self.multitask else "",
        )
        trainer, loggers = P.make_trainer(cfg, run_dir)

        accuracy_before, predictions_before = P.evaluate(trainer, module, datamodule, "test_before")
        P.write_jsonl(run_dir / "predictions_before.jsonl", predictions_before)
        trainer.fit(module, datamodule=datamodule)
        datamodule.encoder.report_truncation()
        accuracy, predictions = P.evaluate(trainer, module, datamodule, "test")
        P.write_jsonl(run_dir / "predictions.jsonl", predictions)

        results = {
            "task": data.task.name,
            "task_version": data.task.version,
            "method": self.name,
            "student": cfg.student.name,
            "seed": int(cfg.seed),
            "test_accuracy": accuracy,
            "test_accuracy_before": accuracy_before,
            "num_test_examples": len(predictions),
            "num_train_examples": len(records),
            "train_pool_size": len(data.train),
            "budget_max_queries": cfg.budget.get("max_queries"),
            "teacher_backend": cfg.teacher.backend,
            "teacher_model": cfg.teacher.get("model"),
            "teacher_annotation_accuracy": P.annotation_accuracy(annotations, data),
            **spend,
            "train_steps": int(trainer.global_step),
            "runtime_s": round(time.time() - started, 1),
            "tailkd_version": __version__,
        }
        for logger in loggers:
            logger.log_metrics({f"results/{k}": v for k, v in results.items() if isinstance(v, (int, float))})
        finish_loggers(loggers)
        return results
