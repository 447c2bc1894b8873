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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from tailkd.errors import ConfigError
from tailkd.methods import pipeline
from tailkd.signals import (
    Decoding,
    SignalCache,
    SignalSettings,
    auroc_summary,
    measure_signals,
    signal_row,
    weigh,
    weighted_accuracy,
)
from tailkd.signals.measure import Samples, sample_questions
from tailkd.signals.self_consistency import summarise
from tailkd.signals.ta import build_ta
from tailkd.teachers import Budget
from tailkd.training.distributed import from_rank_zero, main_process_first
from tailkd.training.records import records_from_annotations, trainable, training_weights

log = logging.getLogger(__name__)

STAGE2 = ("continue", "restart")


class Tail:
    uses_signals = True  # the run is named, tagged and reported by its signals preset

    def __init__(self, name: str = "tail", warmup_fraction: float = 0.2, stage2: str = "continue"):
        if not 0.0 <= warmup_fraction < 1.0:
            raise ConfigError(f"method.warmup_fraction must be in [0, 1) (got {warmup_fraction})")
        if stage2 not in STAGE2:
            raise ConfigError(f"method.stage2={stage2!r} is unknown; choose one of {list(STAGE2)}")
        self.name, self.warmup_fraction, self.stage2 = name, float(warmup_fraction), stage2

    def run(self, cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
        settings = SignalSettings.from_cfg(OmegaConf.to_container(cfg.signals, resolve=True))
        run = pipeline.start(cfg, run_dir, self.name)
        data = run.data
        collector = pipeline.make_collector(cfg, data, run_dir)
        order = pipeline.buying_order(cfg, data)
        budget = Budget.from_cfg(cfg.budget)
        planned = budget.queries_for_pool(len(order))
        examples = pipeline.examples_by_id(data.train)

        student = pipeline.build_student(cfg, data)
        initial_state = copy.deepcopy(student.model.state_dict()) if self.stage2 == "restart" else None
        module = pipeline.make_module(cfg, student, data)

        # stage 1: warm-up on a share of the budget
        warm_questions = max(1, round(self.warmup_fraction * planned)) if self.warmup_fraction else 0
        warm = collector.collect(order[:warm_questions], budget=budget.scaled(self.warmup_fraction)) if warm_questions else []
        warm_records = records_from_annotations(trainable(warm), data.task, examples)
        datamodule = pipeline.make_datamodule(cfg, warm_records or [pipeline.placeholder_record(data)], data, student)
        trainer = run.trainer()
        accuracy_before = pipeline.evaluate_before(cfg, trainer, module, datamodule, run_dir)
        accuracy_warmup, warm_steps = None, 0
        if warm_records:
            module.log_prefix = "warmup/"
            warm_steps = run.checkpoints.fit("warmup", trainer, module, datamodule).steps
            module.stop = run.stops(datamodule)
            if cfg.trainer.get("eval_before", True):
                accuracy_warmup, _ = pipeline.evaluate(trainer, module, datamodule, "test_warmup")
        decoding = Decoding(data.task.max_new_tokens, tuple(module.stop), cfg.trainer.eval_batch_size)

        # stage 2 purchases: the rest of the budget, least self-consistent first under use=select
        bought = {a.example_id for a in warm}
        rest = [e for e in order if e.id not in bought]
        selection = None
        if settings.use == "select":
            selection = self._least_consistent_first(run, settings, student, trainer, rest, decoding)
            rest = selection.order
        with main_process_first():  # under DDP rank 0 buys, the other ranks read its answers from the cache
            annotations = warm + collector.collect(rest, budget=budget.minus(collector.ledger.spent()))
        spend = pipeline.spend_summary(collector, annotations, run_dir)
        selection_summary = selection.summary([a.example_id for a in annotations[len(warm):]]) if selection else {}

        # signals from the warmed-up student and the TA, then stage 2; what cannot train is left out first,
        # so a parse failure is neither measured nor ranked nor counted in a filter's quota
        trained = trainable(annotations)
        weights, signal_summary = from_rank_zero(
            self._signals(run, settings, student, trainer, trained, decoding, selection.samples if selection else None))
        records = records_from_annotations(trained, data.task, examples, weights=weights)
        if initial_state is not None:
            student.model.load_state_dict(initial_state)
        datamodule = pipeline.make_datamodule(cfg, records, data, student)
        trainer = run.trainer()
        module.log_prefix = ""
        main = run.checkpoints.fit("main", trainer, module, datamodule)
        accuracy, predictions = run.test(trainer, module, datamodule)
        return run.finish(
            student, trainer, module, datamodule, annotations=annotations, spend=spend,
            steps=warm_steps + main.steps, accuracy=accuracy, accuracy_before=accuracy_before, predictions=predictions,
            test_accuracy_warmup=accuracy_warmup, warmup_examples=len(warm_records),
            warmup_fraction=self.warmup_fraction, warmup_steps=warm_steps, stage2=self.stage2,
            signals_preset=cfg.signals.name, **signal_summary, **selection_summary,
        )

    def _least_consistent_first(self, run: pipeline.Run, settings, student, trainer, rest, decoding) -> Selection:
        """``rest`` with its candidates (every question, or the next ``signals.select_candidates`` in buying
        order) first, ordered by the warmed-up student's majority share, lowest first (ties keep the buying
        order); each candidate's share goes to selection.jsonl. The candidates' samples are then their
        self-consistency signal and their greedy outputs what ta_student judges (not decoded a second time)."""
        # sampling a large pool costs more compute than the purchases: a cap keeps select affordable
        n = len(rest) if settings.select_candidates is None else settings.select_candidates
        candidates, others = rest[:n], rest[n:]
        with pipeline.inference(run.cfg, student, trainer):
            samples = from_rank_zero(sample_questions(student, run.data.task, candidates, settings, decoding,
                                                      int(run.cfg.seed), pipeline.signal_cache(run.cfg, student, trainer),
                                                      desc="select: sampling the candidates"))
        shares = {e.id: summarise(samples[e.id].answers).majority_share for e in candidates}
        ordered = sorted(candidates, key=lambda e: shares[e.id])  # stable
        pipeline.write_jsonl(run.dir / "selection.jsonl", ({"id": e.id, "rank": i, "majority_share": shares[e.id],
                                                     "answers": samples[e.id].answers} for i, e in enumerate(ordered)))
        return Selection(ordered + others, samples, shares)

    def _signals(self, run: pipeline.Run, settings, student, trainer, annotations, decoding, sampled=None):
        """Measure, weigh and record the signals of every trainable annotation: (raw weights aligned with
        ``annotations``, the results.json summary). signals.jsonl states the weight each one trains with."""
        cfg, data = run.cfg, run.data
        gold = {e.id: e.answer for e in data.train}
        correct = [a.answer == gold.get(a.example_id) for a in annotations]
        ta = None
        if {"ta_student", "ta_teacher"} & set(settings.enabled):
            ta = build_ta(OmegaConf.to_container(cfg.ta, resolve=True), data.task, pipeline.cache_dir(cfg), pipeline.training_texts(data),
                          device=pipeline.inference_device(trainer))
        cache = pipeline.signal_cache(cfg, student, trainer) if settings.enabled else SignalCache(None)
        with pipeline.inference(cfg, student, trainer):
            measured = measure_signals(settings, student, ta, data.task, annotations, pipeline.examples_by_id(data.train),
                                       decoding=decoding, seed=int(cfg.seed), cache=cache, sampled=sampled)
        weighed = weigh(settings, measured)
        trained = training_weights(weighed.weights)
        rows = [signal_row(m, weighed, i, c, w) for i, (m, c, w) in enumerate(zip(measured, correct, trained))]
        pipeline.write_jsonl(run.dir / "signals.jsonl", rows)
        pipeline.log_signals(run.loggers, rows)
        summary = {"signals": list(settings.enabled), "signals_use": settings.use, "signals_dropped": weighed.dropped,
                   "signal_cache_hits": cache.hits}
        if settings.enabled:
            summary.update(auroc_summary(weighed, correct),
                           teacher_annotation_accuracy_trained=weighted_accuracy([1.0] * len(correct), correct),
                           teacher_annotation_accuracy_weighted=weighted_accuracy(trained, correct))
        return weighed.weights, summary


@dataclass(frozen=True)
class Selection:
    """select's buying order, with each candidate's samples and majority share."""

    order: list
    samples: dict[str, Samples]
    shares: dict[str, float]

    def summary(self, bought: Sequence[str]) -> dict[str, Any]:
        """How much choosing the shares did. Buying stops inside a group of candidates tied at one share,
        and those are bought in the buying order: ``select_bought_by_order`` is the share of the bought
        candidates that another tie-break could have swapped for an unbought one, ``select_cutoff_tie``
        the share of candidates in that tie. With a weak student and few samples (k) most candidates tie
        at the lowest share and both are near 1: select bought what random buying would. None when every
        candidate was bought: select then only ordered the purchases."""
        chosen = [i for i in dict.fromkeys(bought) if i in self.shares]  # a question once, whatever its samples
        if not chosen or len(chosen) == len(self.shares):
            return {"select_bought_by_order": None, "select_cutoff_tie": None}
        cutoff = max(self.shares[i] for i in chosen)
        in_tie = sum(self.shares[i] == cutoff for i in chosen)
        tied = sum(s == cutoff for s in self.shares.values())
        swappable = min(in_tie, tied - in_tie)
        if swappable > len(chosen) / 2 and tied > len(self.shares) / 2:
            log.warning("select: %d of %d candidates tie at majority share %.2f and %d of the %d purchases among "
                        "them were chosen by the buying order: the student's samples could not tell the "
                        "candidates apart (raise signals.self_consistency.k?)",
                        tied, len(self.shares), cutoff, swappable, len(chosen))
        return {"select_bought_by_order": swappable / len(chosen), "select_cutoff_tie": tied / len(self.shares)}

