"""ELAD, Explanation-Guided LLM Active Distillation (Zhang et al., 2024), as one recipe.

The budget is spent in ``rounds``. Each round:
1. scores ``candidates`` questions of the pool not bought yet with the current student's uncertainty
   about its own explanations (``tailkd.signals.explanations``; ``selection=elad``), or with the
   entropy of its sampled answers (``answer_entropy``), or not at all (``random``);
2. buys annotations for the most uncertain first, until the round's share of the budget is spent: the
   teacher revises the student's explanation from its first wrong step (``revision=true``), or writes
   a fresh rationale (``revision=false``, and for an explanation with no steps, counted);
3. fine-tunes the student, continuing from the last round, on everything bought so far;
4. evaluates it on the test split (every round, or only after the last with ``test_every_round=false``).
``results.json`` has every round's spend and, when tested, test accuracy: a run is an accuracy-vs-budget curve.
With revision it also says how many revisions kept the student's answer and every one of its steps: a
teacher that finds no wrong step turns revision into training the student on its own answers.
The paper's formulas were not available: every choice is ours, behind a switch (docs/design.md).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from tailkd.errors import ConfigError
from tailkd.methods import pipeline
from tailkd.settings import require
from tailkd.signals.explanations import SPLITS, VARIANTS, Explained, explain
from tailkd.tasks.rationale import same_step, split_steps
from tailkd.teachers import Annotation, Budget
from tailkd.teachers.drafting import render
from tailkd.training.records import records_from_annotations, trainable

log = logging.getLogger(__name__)

SELECTIONS = ("elad", "answer_entropy", "random")
REVISION_COUNTS = ("revisions", "revisions_agree", "revisions_keep_all_steps")


class Elad:
    def __init__(self, name: str = "elad", rounds: int = 3, selection: str = "elad", revision: bool = True,
                 candidates: int = 64, step_split: str = "sentence", within: str = "prefix", k: int = 4,
                 temperature: float = 0.7, weights: Mapping[str, float] | None = None,
                 answer_probe: str = " The answer is", probe_tokens: int = 8, revision_prompt: str = "",
                 train_on: str = "all", test_every_round: bool = True):
        checks = [
            (rounds >= 1, f"method.rounds must be >= 1 (got {rounds})"),
            (selection in SELECTIONS, f"method.selection={selection!r} is unknown; choose one of {list(SELECTIONS)}"),
            (step_split in SPLITS, f"method.step_split={step_split!r} is unknown; choose one of {list(SPLITS)}"),
            (within in VARIANTS, f"method.within={within!r} is unknown; choose one of {list(VARIANTS)}"),
            (k >= 2 or selection == "random", f"method.k must be >= 2 to sample explanations (got {k})"),
            (candidates >= 1, f"method.candidates must be >= 1 (got {candidates})"),
            (train_on in ("all", "new"), f"method.train_on={train_on!r}: choose all or new"),
            (not revision or bool(revision_prompt), "method.revision_prompt is required with method.revision=true"),
            (isinstance(test_every_round, bool), f"method.test_every_round must be true or false (got {test_every_round!r})"),
        ]
        require(checks)
        self.name, self.rounds, self.selection, self.revision = name, int(rounds), selection, bool(revision)
        self.candidates, self.step_split, self.within, self.k = int(candidates), step_split, within, int(k)
        self.temperature = float(temperature)
        self.weights = {"within": 0.5, "across": 0.5, **dict(weights or {})}
        self.answer_probe, self.probe_tokens = answer_probe, int(probe_tokens)
        self.revision_prompt, self.train_on = revision_prompt, train_on
        self.test_every_round = test_every_round

    def run(self, cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
        if self.revision and cfg.teacher.backend == "recorded":
            raise ConfigError("teacher=recorded replays answers it already has and cannot revise a student's "
                              "explanation: use method.revision=false")
        run = pipeline.start(cfg, run_dir, self.name)
        data = run.data
        self.check_candidates(cfg.budget.get("max_queries"), len(data.train))
        collector = pipeline.make_collector(cfg, data, run_dir)
        collector.backend.prepare(data.task, data.train)
        budget = Budget.from_cfg(cfg.budget)
        examples = pipeline.examples_by_id(data.train)
        rng = random.Random(int(cfg.seed))
        pool = pipeline.buying_order(cfg, data)  # the seed's order: ties and random selection follow it
        student = pipeline.build_student(cfg, data)
        module = pipeline.make_module(cfg, student, data)

        annotations, rounds, steps = [], [], 0
        datamodule = pipeline.make_datamodule(cfg, [pipeline.placeholder_record(data)], data, student)
        trainer = run.trainer()
        accuracy_before = pipeline.evaluate_before(cfg, trainer, module, datamodule, run_dir)
        for r in range(1, self.rounds + 1):
            bought = {a.example_id for a in annotations}
            unbought = [e for e in pool if e.id not in bought]
            if not unbought:
                break
            # 1. who is the student least sure about
            candidates = unbought[: self.candidates] if self.selection == "random" else \
                rng.sample(unbought, min(self.candidates, len(unbought)))
            with pipeline.inference(cfg, student, trainer):
                ranked, explained = self.rank(cfg, student, data.task, candidates, module.stop, r)
            # 2. buy for the most uncertain first, within this round's share of every cap
            cap = budget.scaled(r / self.rounds)
            with collector.phase(f"round{r}"):
                new = self.buy(collector, ranked, explained, cap.minus(collector.ledger.spent()))
            if not new:
                log.warning("round %d bought nothing (the budget is spent): stopping", r)
                break
            annotations += new
            if len(new) == len(candidates):  # a budget in USD or tokens is not checked before the run
                log.warning("round %d bought every one of its %d candidates: raise method.candidates so that the "
                            "budget, not the candidates, limits what ELAD buys", r, len(candidates))
            pipeline.write_jsonl(_round_dir(run_dir, r) / "selected.jsonl", self.selected_rows(new, explained))
            # 3. train, continuing from the last round
            train = new if self.train_on == "new" else annotations
            records = records_from_annotations(trainable(train), data.task, examples)
            datamodule = pipeline.make_datamodule(cfg, records, data, student)
            trainer = run.trainer()
            module.log_prefix = f"round{r}/"
            steps += run.checkpoints.fit(f"round{r}", trainer, module, datamodule).steps
            # the next round explains with the stop strings of what the student now writes, tested or not
            module.stop = run.stops(datamodule)
            spend = collector.ledger.summary()
            rounds.append({"round": r, "bought": len(new), **self.revision_audit(new, explained),
                           "teacher_queries": spend["teacher_queries"], "teacher_cost_usd": spend["teacher_cost_usd"],
                           "teacher_tokens": spend["teacher_tokens"], "teacher_output_tokens": spend["teacher_output_tokens"],
                           "num_train_examples": len(datamodule.records)})
            # 4. evaluate: a test of the whole split takes minutes on a CPU, the most of a round
            if self.test_every_round or r == self.rounds:
                accuracy, predictions = run.test(trainer, module, datamodule)
                rounds[-1]["test_accuracy"] = accuracy
            _log_round(run.loggers, rounds[-1])
            log.info("round %d: %d bought (%d fresh for want of steps)%s, accuracy %s at %.4f USD", r, len(new),
                     rounds[-1]["fallback_fresh"], _revisions(rounds[-1]), _accuracy(rounds[-1]), spend["teacher_cost_usd"])
        if not rounds:
            raise ConfigError("ELAD bought nothing: the budget does not cover one teacher answer")
        if "test_accuracy" not in rounds[-1]:  # the pool or the budget ran out before the last round
            accuracy, predictions = run.test(trainer, module, datamodule)
            rounds[-1]["test_accuracy"] = accuracy
            _log_round(run.loggers, rounds[-1])
        spend = pipeline.spend_summary(collector, annotations, run_dir)
        return run.finish(
            student, trainer, module, datamodule, annotations=annotations, spend=spend, steps=steps,
            accuracy=accuracy, accuracy_before=accuracy_before, predictions=predictions, rounds=rounds,
            selection=self.selection, revision=self.revision,
            **{key: sum(x[key] for x in rounds) for key in ("fallback_fresh", *REVISION_COUNTS) if key in rounds[0]},
            spend_by_phase=collector.ledger.summary_by_phase(),
        )

    # -- steps -------------------------------------------------------------------------------------
    def rank(self, cfg, student, task, candidates, stop, round_: int) -> tuple[list, dict[str, Explained]]:
        """The candidates, most uncertain first, and what was measured on each (an explanation is
        needed for revision whatever the selection; random selection samples none)."""
        explained = explain(
            student, task, candidates, stop=stop, batch_size=cfg.trainer.eval_batch_size, split=self.step_split,
            variant=self.within, probe=self.answer_probe, probe_tokens=self.probe_tokens,
            k=self.k if self.selection != "random" else 0, temperature=self.temperature,
            seed=int(cfg.seed) * 1000 + round_)
        for e in explained:
            e.uncertainty = {"elad": self.weights["within"] * e.within + self.weights["across"] * e.across,
                             "answer_entropy": e.entropy, "random": 0.0}[self.selection]
        order = sorted(range(len(explained)), key=lambda i: -explained[i].uncertainty)  # stable: ties keep order
        return [candidates[i] for i in order], {e.example.id: e for e in explained}

    def check_candidates(self, max_queries: int | None, pool: int) -> None:
        """A round buys among its ``candidates`` only: fewer than a round's share of a query budget would
        leave the budget unspent, and ELAD compared with methods that spent all of theirs."""
        if max_queries is None:
            return
        share = -(-min(int(max_queries), pool) // self.rounds)
        if self.candidates < share:
            raise ConfigError(
                f"method.candidates={self.candidates} is fewer than a round's share of budget.max_queries "
                f"({share} of {min(int(max_queries), pool)} over {self.rounds} rounds): ELAD could buy at most "
                f"{self.candidates * self.rounds}; set method.candidates >= {share}")

    def buy(self, collector, ranked, explained: Mapping[str, Explained], budget) -> list[Annotation]:
        """Revision requests (or fresh ones) for ``ranked`` in order, until ``budget`` is spent."""
        requests = []
        for example in ranked:
            e = explained[example.id]
            if self.revises(e):
                requests.append(self.revision_request(collector, example, e.text))
            else:
                requests.extend(collector.requests_for(example)[:1])
        return collector.buy(requests, budget=budget)

    def revision_request(self, collector, example, explanation: str):
        """The teacher's request to revise the student's ``explanation`` of ``example`` (the simulated
        teacher reads the explanation from its context)."""
        text = render(self.revision_prompt, "revision_prompt", question=example.question,
                      explanation=explanation.strip())
        return collector.request(example.id, text, context={"revise": explanation})

    def revises(self, explained: Explained) -> bool:
        """Whether the teacher is asked to revise this explanation (else it writes a fresh rationale)."""
        return self.revision and explained.usable

    def revision_audit(self, new: Sequence[Annotation], explained: Mapping[str, Explained]) -> dict[str, int]:
        """With revision: how many of ``new`` fell back to a fresh rationale for want of steps, how many
        are revisions, how many of those conclude with the student's own answer, and how many keep every
        step of the student's explanation (the teacher found nothing wrong)."""
        if not self.revision:
            return {"fallback_fresh": 0}
        pairs = [(a, explained[a.example_id]) for a in new if self.revises(explained[a.example_id])]
        return {"fallback_fresh": len(new) - len(pairs), "revisions": len(pairs),
                "revisions_agree": sum(a.answer is not None and a.answer == e.final_answer for a, e in pairs),
                "revisions_keep_all_steps": sum(self._keeps_all_steps(a, e) for a, e in pairs)}

    def _keeps_all_steps(self, annotation: Annotation, explained: Explained) -> bool:
        text = annotation.text if annotation.cut_at is None else annotation.text[: annotation.cut_at]
        steps = split_steps(text, self.step_split)
        return len(steps) >= len(explained.steps) and all(map(same_step, explained.steps, steps))

    @staticmethod
    def selected_rows(new: Sequence, explained: Mapping[str, Explained]) -> list[dict[str, Any]]:
        return [{**explained[a.example_id].to_row(), "revised": a.text, "revised_answer": a.answer,
                 "cost_usd": a.cost_usd, "input_tokens": a.input_tokens} for a in new]


def _round_dir(run_dir: Path, r: int) -> Path:
    folder = run_dir / f"round{r}"
    folder.mkdir(exist_ok=True)
    return folder


def _revisions(row: Mapping[str, Any]) -> str:
    if "revisions" not in row:
        return ""
    return (f", {row['revisions_agree']} of {row['revisions']} revisions with the student's own answer, "
            f"{row['revisions_keep_all_steps']} keeping all its steps")


def _accuracy(row: Mapping[str, Any]) -> str:
    return f"{row['test_accuracy']:.4f}" if "test_accuracy" in row else "not tested"


def _log_round(loggers, row: Mapping[str, Any]) -> None:
    for logger in loggers:
        logger.log_metrics({f"elad/{k}": v for k, v in row.items() if k != "round"}, step=int(row["round"]))
