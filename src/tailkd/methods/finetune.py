"""Baselines: fine-tune the student on teacher annotations, every example weighted alike.

- ``method=finetune``: learn the teacher's rationale then answer (``target: rationale``), or the answer
  alone (``target: answer``).
- ``method=distill_step_by_step`` (Hsieh et al., 2023): two tasks on each question, told apart by a
  prefix: predict the label (``[label] ``) and generate the rationale (``[rationale] ``);
  loss = label loss + ``rationale_weight`` x rationale loss. Evaluation asks for the label.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from tailkd.errors import ConfigError
from tailkd.methods import pipeline
from tailkd.teachers import Annotation
from tailkd.training.records import records_from_annotations, trainable

log = logging.getLogger(__name__)

TARGETS = ("rationale", "answer")
# references that read gold: what a perfect signal would make of the same purchases (docs/design.md)
ORACLES = ("filter", "gold")


def oracle_annotations(annotations: Sequence[Annotation], gold: Mapping[str, str], oracle: str) -> list[Annotation]:
    """The annotations an oracle trains with. ``filter``: the teacher's right answers only. ``gold``:
    every bought question with its gold answer, and the teacher's rationale only where the teacher
    reached that answer (elsewhere the answer alone; a question whose text gave no answer too)."""
    right = [a.answer == gold[a.example_id] for a in annotations]
    if oracle == "filter":
        return [a for a, r in zip(annotations, right) if r]
    return [replace(a, answer=gold[a.example_id], rationale=a.rationale if r else None)
            for a, r in zip(annotations, right)]


class Finetune:
    def __init__(self, name: str, target: str = "rationale", multitask: Mapping[str, Any] | None = None,
                 steps_of_tail: float | None = None, steps_of_elad: int | None = None, oracle: str | None = None):
        if oracle is not None and oracle not in ORACLES:
            raise ConfigError(f"method.oracle={oracle!r} is unknown; choose one of {list(ORACLES)} or null")
        self.oracle = oracle
        if target not in TARGETS:
            raise ConfigError(f"method.target={target!r} is unknown; choose one of {list(TARGETS)}")
        if multitask is not None:
            missing = {"label_prefix", "rationale_prefix", "rationale_weight"} - set(multitask)
            if missing:
                raise ConfigError(f"method.multitask lacks {sorted(missing)}")
        if steps_of_tail is not None and not 0.0 <= steps_of_tail < 1.0:
            raise ConfigError(f"method.steps_of_tail must be a warm-up share in [0, 1) or null (got {steps_of_tail})")
        if steps_of_elad is not None and (isinstance(steps_of_elad, bool) or not isinstance(steps_of_elad, int)
                                          or steps_of_elad < 1):
            raise ConfigError(f"method.steps_of_elad must be ELAD's number of rounds (>= 1) or null (got {steps_of_elad!r})")
        if steps_of_tail is not None and steps_of_elad is not None:
            raise ConfigError("method.steps_of_tail and method.steps_of_elad: match one method's steps, not both")
        self.name = name
        self.steps_of_tail = steps_of_tail
        self.steps_of_elad = steps_of_elad
        self.target = target
        self.multitask = dict(multitask) if multitask else None

    def run(self, cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
        run = pipeline.start(cfg, run_dir, self.name)
        data = run.data
        annotations, spend = pipeline.buy_annotations(cfg, data, run_dir)
        trained = annotations
        if self.oracle:  # before trainable(): gold's oracle trains on a question the teacher's text left unanswered
            trained = oracle_annotations(annotations, {e.id: e.answer for e in data.train}, self.oracle)
        records = records_from_annotations(
            trainable(trained), data.task, pipeline.examples_by_id(data.train), self.target, self.multitask
        )
        pipeline.require_records(cfg, data, records)  # before the student is loaded for nothing
        student = pipeline.build_student(cfg, data)
        datamodule = pipeline.make_datamodule(cfg, records, data, student)
        module = pipeline.make_module(
            cfg, student, data,
            aux_loss_weight=self.multitask["rationale_weight"] if self.multitask else 0.0,
            eval_prompt_prefix=self.multitask["label_prefix"] if self.multitask else "",
        )
        trainer = run.trainer(max_steps=self.max_steps(cfg, len(records)))

        accuracy_before = pipeline.evaluate_before(cfg, trainer, module, datamodule, run_dir)
        fitted = run.checkpoints.fit("train", trainer, module, datamodule)
        accuracy, predictions = run.test(trainer, module, datamodule)
        return run.finish(student, trainer, module, datamodule, annotations=annotations, spend=spend,
                          steps=fitted.steps, accuracy=accuracy, accuracy_before=accuracy_before,
                          predictions=predictions)

    def max_steps(self, cfg: DictConfig, num_records: int) -> int | None:
        """None: train ``trainer.pl.max_epochs``. Otherwise as many optimiser steps as another method
        takes on the same budget, so that its schedule is compared with fine-tuning at equal steps:
        ``steps_of_tail`` (a warm-up share): TAiL's warm-up, then every annotation; ``steps_of_elad``
        (its rounds): ELAD with ``train_on=all``, whose round r trains on everything bought so far,
        taken as r/rounds of the purchases (each round may spend up to that share of the budget)."""
        if self.steps_of_tail is None and self.steps_of_elad is None:
            return None
        epochs = int(cfg.trainer.pl.max_epochs)
        per_step = int(cfg.trainer.batch_size) * int(cfg.trainer.pl.get("accumulate_grad_batches", 1))
        if self.steps_of_elad is not None:
            sizes = [round(r * num_records / self.steps_of_elad) for r in range(1, self.steps_of_elad + 1)]
        else:
            sizes = [max(1, round(self.steps_of_tail * num_records))] if self.steps_of_tail else []
            sizes.append(num_records)
        return epochs * sum(-(-size // per_step) for size in sizes)
