"""TAiL, Teaching-Assistant-in-the-Loop (Zhou & Ai, ACL Findings 2024), as one recipe.

1. Warm-up: buy ``warmup_fraction`` of the budget and fine-tune the student on it, unweighted, so that
   its own signal (self-consistency) means something.
2. Buy the rest of the budget: in the selection order, or, with ``signals.use=select``, least
   self-consistent questions first (judged by the warmed-up student on the questions not yet bought).
3. Signals on every bought annotation (``tailkd.signals``): student self-consistency, the TA's
   confidence in the student's output and in the teacher's. With ``use=weight`` they become the
   example's loss weight, with ``use=filter`` the lowest-scoring annotations are dropped.
4. Stage 2: train on everything bought with those weights, continuing from the warmed-up student
   (``stage2=continue``) or from the initial one (``stage2=restart``).
``warmup_fraction=0`` skips stage 1: the signals then come from the untrained student.
"""

from __future__ import annotations

import copy
import logging
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from tailkd.errors import ConfigError
from tailkd.methods import pipeline as P
from tailkd.methods.finetune import records_from_annotations
from tailkd.signals import SignalSettings, compute_signals
from tailkd.signals.cache import SignalCache
from tailkd.signals.self_consistency import self_consistency
from tailkd.signals.ta import build_ta
from tailkd.teachers import Budget
from tailkd.teachers.budget import Spend
from tailkd.training.distributed import from_rank_zero, main_process_first

log = logging.getLogger(__name__)

STAGE2 = ("continue", "restart")


class Tail:
    def __init__(self, name: str = "tail", warmup_fraction: float = 0.2, stage2: str = "continue"):
        if not 0.0 <= warmup_fraction < 1.0:
            raise ConfigError(f"method.warmup_fraction must be in [0, 1) (got {warmup_fraction})")
        if stage2 not in STAGE2:
            raise ConfigError(f"method.stage2={stage2!r} is unknown; choose one of {list(STAGE2)}")
        self.name, self.warmup_fraction, self.stage2 = name, float(warmup_fraction), stage2

    def run(self, cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
        started = time.time()
        settings = SignalSettings.from_cfg(OmegaConf.to_container(cfg.signals, resolve=True))
        data = P.load_data(cfg)
        collector = P.make_collector(cfg, data, run_dir)
        order = P.buying_order(cfg, data)
        budget = Budget.from_cfg(cfg.budget)
        planned = budget.queries_for_pool(len(order))
        examples = P.examples_by_id(data.train)
        stop = list(cfg.task.get("until") or [])

        student = P.build_student(cfg, data)
        initial_state = copy.deepcopy(student.model.state_dict()) if self.stage2 == "restart" else None
        module = P.make_module(cfg, student, data)
        loggers = P.make_loggers(cfg, run_dir)

        # stage 1: warm-up on a share of the budget
        warm_questions = max(1, round(self.warmup_fraction * planned)) if self.warmup_fraction else 0
        warm = collector.collect(order[:warm_questions], budget=budget.scaled(self.warmup_fraction)) if warm_questions else []
        warm_records = records_from_annotations(warm, data.task, examples)
        datamodule = P.make_datamodule(cfg, warm_records or [_placeholder(data)], data, student)
        trainer, _ = P.make_trainer(cfg, run_dir, loggers)
        accuracy_before, predictions_before = P.evaluate(trainer, module, datamodule, "test_before")
        P.write_jsonl(run_dir / "predictions_before.jsonl", predictions_before)
        accuracy_warmup = None
        if warm_records:
            module.log_prefix = "warmup/"
            trainer.fit(module, datamodule=datamodule)
            accuracy_warmup, _ = P.evaluate(trainer, module, datamodule, "test_warmup")
        warm_steps = int(trainer.global_step)

        # stage 2 purchases: the rest of the budget, least self-consistent first under use=select
        bought = {a.example_id for a in warm}
        rest = [e for e in order if e.id not in bought]
        if settings.use == "select":
            with P.inference_precision(cfg, student):
                consistency = self_consistency(student, data.task, rest, k=settings.k, temperature=settings.temperature,
                                               batch_size=cfg.trainer.eval_batch_size, stop=stop, seed=int(cfg.seed))
            consistency = from_rank_zero(consistency)
            rest = sorted(rest, key=lambda e: consistency[e.id].majority_share)  # stable: ties keep order
        spent = Spend(len(warm), sum(a.input_tokens + a.output_tokens for a in warm), sum(a.cost_usd for a in warm))
        with main_process_first():  # under DDP rank 0 buys, the other ranks read its answers from the cache
            annotations = warm + collector.collect(rest, budget=budget.minus(spent))
        spend = P.spend_summary(collector, annotations, run_dir)

        # signals from the warmed-up student and the TA, then stage 2
        with P.inference_precision(cfg, student):
            rows, signal_summary = from_rank_zero(self._signals(cfg, settings, student, data, annotations, examples, stop))
        P.write_jsonl(run_dir / "signals.jsonl", rows)
        P.log_signals(loggers, rows)
        weights = {row["id"]: row["weight"] for row in rows}
        records = records_from_annotations(annotations, data.task, examples, weights=weights)
        if initial_state is not None:
            student.model.load_state_dict(initial_state)
        datamodule = P.make_datamodule(cfg, records, data, student)
        trainer, _ = P.make_trainer(cfg, run_dir, loggers)
        module.log_prefix = ""
        trainer.fit(module, datamodule=datamodule)
        datamodule.encoder.report_truncation()
        accuracy, predictions = P.evaluate(trainer, module, datamodule, "test")
        P.write_jsonl(run_dir / "predictions.jsonl", predictions)

        results = P.results_base(cfg, data, self.name, annotations, spend, trainer, started)
        results.update(
            test_accuracy=accuracy, test_accuracy_before=accuracy_before, test_accuracy_warmup=accuracy_warmup,
            num_test_examples=len(predictions), num_train_examples=len(records),
            warmup_examples=len(warm_records), warmup_fraction=self.warmup_fraction, warmup_steps=warm_steps,
            stage2=self.stage2, signals_preset=cfg.signals.name, **signal_summary,
        )
        P.finish_logging(loggers, results)
        return results

    def _signals(self, cfg, settings, student, data, annotations, examples, stop):
        if not settings.enabled:
            rows = [{"id": a.example_id, "weight": 1.0, "teacher_answer": a.answer} for a in annotations]
            return rows, {"signals": [], "signals_use": settings.use}
        ta = None
        if {"ta_student", "ta_teacher"} & set(settings.enabled):
            texts = [data.task.prompt(e) + data.task.target(e.rationale, e.answer) for e in data.train]
            ta = build_ta(OmegaConf.to_container(cfg.ta, resolve=True), data.task, P.cache_dir(cfg), texts)
        gold = {e.id: e.answer for e in data.train}
        cache = None
        if cfg.signals.get("cache", True):
            context = {"precision": str(cfg.trainer.pl.get("precision")), "device": student.model.device.type}
            cache = SignalCache(P.cache_dir(cfg) / "signals", context)
        rows, summary = compute_signals(settings, student, ta, data.task, annotations, examples, gold=gold,
                                        batch_size=cfg.trainer.eval_batch_size, stop=stop, seed=int(cfg.seed),
                                        cache=cache)
        summary["signal_cache_hits"] = cache.hits if cache is not None else 0
        return rows, summary


def _placeholder(data):
    """A record for a datamodule that only evaluates (no warm-up data to train on)."""
    from tailkd.training import TrainRecord

    example = data.train[0]
    return TrainRecord(example.id, data.task.prompt(example), data.task.target(example.rationale, example.answer))
