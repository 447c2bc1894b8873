"""ARTE, Aligning TeacheR with StudenT PreferencEs (Liu et al., 2024), as one recipe.

1. Draft questions: the teacher writes new questions from ``seed_questions`` training questions per
   prompt (temperature ``question_temperature``) until ``num_questions`` distinct ones exist.
2. Draft rationales: one per question under each of the ``strategies`` prompts.
3. Student preferences: a rationale's score is the student's one-shot accuracy on the preference set
   with (question, rationale) as its only demonstration; a question's score is the mean of its
   rationales'.
4. Align the teacher: ``align=dpo`` trains a LoRA adapter on the local teacher with DPO on question
   pairs (top vs bottom quartile) and rationale pairs (best vs worst per question, under the plain
   prompt); ``align=select`` (any teacher, API ones included) keeps the unaligned teacher and writes
   the tailored data under the strategy the student preferred; ``align=none`` keeps it and writes them
   under the plain prompt, as the aligned teacher does: what DPO adds is ``dpo`` - ``none``.
5. Tailored data: the (aligned) teacher writes new questions and a rationale for each with what is
   left of the budget.
6. The student is fine-tuned on the tailored data (and, ``train_on_drafts=best``, each drafted
   question's best rationale) and evaluated on the test split like every method.
Every teacher call is in one ledger under one budget; ``results.json`` splits the spend by phase.
"""

from __future__ import annotations

import gc
import logging
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from tailkd.errors import ConfigError
from tailkd.methods import pipeline
from tailkd.settings import OPTIONAL_POSITIVE_INT, require
from tailkd.signals.preference import Demonstration, one_shot_scores, preference_set, shuffled
from tailkd.teachers import Budget
from tailkd.teachers.align import DPOSettings
from tailkd.teachers.drafting import (
    DraftCounts,
    DraftQuestion,
    DraftRationale,
    QuestionFilter,
    draft_questions,
    draft_rationales,
)
from tailkd.training import TrainRecord
from tailkd.training.memory import release_freed_memory

log = logging.getLogger(__name__)

ALIGNS = ("dpo", "select", "none")
DRAFT_TRAINING = ("best", "none")


class Arte:
    # the strategies and prompts have no defaults here: conf/method/arte.yaml holds the only ones
    def __init__(self, *, strategies: Sequence[str], question_prompt: str, rationale_prompt: str,
                 name: str = "arte", align: str = "dpo", seed_questions: int = 3, num_questions: int = 250,
                 question_temperature: float = 1.0, rationale_temperature: float = 0.7,
                 rationale_max_tokens: int | None = None,
                 dedup_threshold: float = 0.8, preference_size: int = 40, preference_selection: str = "varied",
                 preference_candidates: int = 120, preference_probes: int = 4, question_quartile: float = 0.25,
                 train_on_drafts: str = "best", max_tailored: int = 1000, draft_share: float = 0.5,
                 dpo: Mapping[str, Any] | None = None):
        checks = [
            (align in ALIGNS, f"method.align={align!r} is unknown; choose one of {list(ALIGNS)}"),
            (train_on_drafts in DRAFT_TRAINING, f"method.train_on_drafts={train_on_drafts!r}: choose one of {list(DRAFT_TRAINING)}"),
            (len(strategies) >= 2, "method.strategies needs at least two reasoning-strategy prompts (rationale pairs need two)"),
            (seed_questions >= 1 and num_questions >= 4, "method.seed_questions must be >= 1 and method.num_questions >= 4"),
            (preference_size >= 1, f"method.preference_size must be >= 1 (got {preference_size})"),
            (0 < question_quartile <= 0.5, f"method.question_quartile must be in (0, 0.5] (got {question_quartile})"),
            (0 < draft_share < 1, f"method.draft_share must be in (0, 1) (got {draft_share})"),
            (OPTIONAL_POSITIVE_INT.accepts(rationale_max_tokens),
             f"method.rationale_max_tokens must be {OPTIONAL_POSITIVE_INT.describe()} (got {rationale_max_tokens!r})"),
            (bool(question_prompt) and bool(rationale_prompt), "method.question_prompt and method.rationale_prompt are required"),
        ]
        require(checks)
        self.name, self.align = name, align
        self.seed_questions, self.num_questions = int(seed_questions), int(num_questions)
        self.strategies = list(strategies)
        self.question_prompt, self.rationale_prompt = question_prompt, rationale_prompt
        self.question_temperature, self.rationale_temperature = float(question_temperature), float(rationale_temperature)
        self.rationale_max_tokens = rationale_max_tokens
        self.dedup_threshold = float(dedup_threshold)
        self.preference_size, self.preference_selection = int(preference_size), preference_selection
        self.preference_candidates, self.preference_probes = int(preference_candidates), int(preference_probes)
        self.question_quartile = float(question_quartile)
        self.train_on_drafts, self.max_tailored = train_on_drafts, int(max_tailored)
        self.draft_share = float(draft_share)
        self.dpo = DPOSettings.from_cfg(dpo)

    def run(self, cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
        if self.align == "dpo" and cfg.teacher.backend != "hf_local":
            raise ConfigError(f"method.align=dpo trains the teacher, which needs a local model (teacher=hf_local); "
                              f"teacher={cfg.teacher.backend} cannot be trained: use method.align=select")
        if cfg.teacher.backend in ("simulated", "recorded"):
            raise ConfigError(f"method=arte needs a teacher that writes new questions (openai or hf_local); "
                              f"teacher={cfg.teacher.backend} only answers known ones")
        run = pipeline.start(cfg, run_dir, self.name)
        data = run.data
        collector = pipeline.make_collector(cfg, data, run_dir)
        collector.backend.prepare(data.task, data.train)
        budget = Budget.from_cfg(cfg.budget)
        rng = random.Random(int(cfg.seed))
        student = pipeline.build_student(cfg, data)
        module = pipeline.make_module(cfg, student, data)
        trainer = run.trainer()
        stop = data.task.until

        def left(cap: Budget = budget) -> Budget:
            return cap.minus(collector.ledger.spent())

        # one filter for the run: drafted and tailored questions are all new, to each other and the test split
        seen = QuestionFilter([e.question for e in data.train], [e.question for e in data.test], self.dedup_threshold)
        drafts, counts = self.draft(collector, data.train, seen, rng, budget.scaled(self.draft_share), left, run_dir)

        # 3. the student's preferences
        demos = [(d, r) for d in drafts for r in d.rationales]
        cache = pipeline.signal_cache(cfg, student, trainer)
        with pipeline.inference(cfg, student, trainer):
            candidates = shuffled(data.train, int(cfg.seed))[: max(self.preference_candidates, self.preference_size)]
            probes = [self._demo(data.task, d, r) for d, r in rng.sample(demos, min(self.preference_probes, len(demos)))]
            prefs = preference_set(student, data.task, candidates, probes, size=self.preference_size,
                                   selection=self.preference_selection, batch_size=cfg.trainer.eval_batch_size, stop=stop,
                                   cache=cache)
            scores = one_shot_scores(student, data.task, [self._demo(data.task, d, r) for d, r in demos], prefs,
                                     batch_size=cfg.trainer.eval_batch_size, stop=stop, cache=cache)
        for (_, rationale), score in zip(demos, scores):
            rationale.preference = score
        pipeline.write_jsonl(run_dir / "drafts.jsonl", (d.to_row() for d in drafts))
        question_pairs, rationale_pairs = self.pairs(collector, data.task, drafts)
        pipeline.write_jsonl(run_dir / "preference_pairs.jsonl", question_pairs + rationale_pairs)

        # 4. align the teacher, or choose the strategy the student preferred, or neither (DPO's control)
        aligned: dict[str, Any] = {}
        strategy = None
        if self.align == "dpo":
            aligned = self.align_teacher(collector.backend, question_pairs + rationale_pairs, run_dir, int(cfg.seed),
                                         saved=run.checkpoints.stage_folder("dpo"))
        elif self.align == "select":
            strategy = self.preferred_strategy(drafts)

        # 5. tailored data with what is left of the budget
        tailored, tailored_counts = self.tailor(collector, data, seen, rng, left, strategy)
        pipeline.write_jsonl(run_dir / "refused_drafts.jsonl", counts.refused + tailored_counts.refused)
        with pipeline.inference(cfg, student, trainer):
            tailored_scores = one_shot_scores(student, data.task, [self._demo(data.task, d, r) for d, r in tailored],
                                              prefs, batch_size=cfg.trainer.eval_batch_size, stop=stop, cache=cache)
        pipeline.write_jsonl(run_dir / "tailored.jsonl", ({"id": d.id, "question": d.question, "text": r.annotation.text,
                                                    "answer": r.annotation.answer, "score": s.accuracy,
                                                    "likelihood": s.likelihood}
                                                   for (d, r), s in zip(tailored, tailored_scores)))
        self._log_tables(run.loggers, drafts)

        # 6. the student learns from it
        records = self.records(data.task, tailored, drafts)
        annotations = [r.annotation for d in drafts for r in d.rationales] + [r.annotation for _, r in tailored]
        spend = pipeline.spend_summary(collector, annotations, run_dir)
        datamodule = pipeline.make_datamodule(cfg, records, data, student)
        accuracy_before = pipeline.evaluate_before(cfg, trainer, module, datamodule, run_dir)
        fitted = run.checkpoints.fit("train", trainer, module, datamodule)
        accuracy, predictions = run.test(trainer, module, datamodule)
        return run.finish(
            student, trainer, module, datamodule, annotations=[], spend=spend, steps=fitted.steps,
            accuracy=accuracy, accuracy_before=accuracy_before, predictions=predictions, align=self.align, preferred_strategy=strategy, spend_by_phase=collector.ledger.summary_by_phase(),
            **counts.as_results("draft_questions"), **tailored_counts.as_results("tailored_questions"),
            drafted=len(drafts),
            draft_rationales=sum(len(d.rationales) for d in drafts), tailored=len(tailored),
            preference_set_size=len(prefs), question_pairs=len(question_pairs), rationale_pairs=len(rationale_pairs),
            signal_cache_hits=cache.hits,
            preference_accuracy_drafts=_mean([p.accuracy for p in scores]),
            preference_accuracy_tailored=_mean([p.accuracy for p in tailored_scores]), **aligned,
        )

    # -- steps -------------------------------------------------------------------------------------
    def draft(self, collector, pool, seen: QuestionFilter, rng: random.Random, drafting: Budget, left,
              run_dir: Path) -> tuple[list[DraftQuestion], DraftCounts]:
        """Steps 1-2 within ``drafting`` (the drafts' share of the budget): questions, then a rationale
        under each strategy for every one kept. Refused drafts (in ``refused_drafts.jsonl``) take from the
        questions, never from a kept question's rationales; a run with none usable stops here, before
        any student is scored."""
        wanted = self.num_questions
        if drafting.max_queries is not None:
            wanted = min(wanted, drafting.max_queries // (1 + len(self.strategies)))
        with collector.phase("draft_questions"):
            drafts, counts = draft_questions(
                collector, pool, seen, wanted=max(wanted, 1), seeds_per_prompt=self.seed_questions,
                template=self.question_prompt, temperature=self.question_temperature, rng=rng,
                id_prefix="arte-draft-", budget=lambda: left(drafting), reserve=len(self.strategies),
                desc="ARTE: drafting questions")
        pipeline.write_jsonl(run_dir / "refused_drafts.jsonl", counts.refused)
        if not drafts:
            raise ConfigError(f"ARTE: the teacher drafted no usable question ({counts}); check method.question_prompt "
                              f"against the task's questions (what the teacher wrote is in {run_dir / 'refused_drafts.jsonl'})")
        with collector.phase("draft_rationales"):
            draft_rationales(collector, drafts, self.strategies, template=self.rationale_prompt,
                             temperature=self.rationale_temperature, max_tokens=self.rationale_max_tokens,
                             budget=left(drafting))
        return drafts, counts

    @staticmethod
    def _demo(task, draft: DraftQuestion, rationale) -> Demonstration:
        a = rationale.annotation
        return Demonstration(draft.question, task.target(a.rationale, a.answer) if a.answer else (a.text or ""))

    def pairs(self, collector, task, drafts: Sequence[DraftQuestion]) -> tuple[list[dict], list[dict]]:
        """Question pairs (top vs bottom ``question_quartile`` by score, best with worst, under the
        chosen question's own drafting prompt) and rationale pairs (each question's best vs worst
        rationale, under the plain teacher prompt). Ties carry no preference and make no pair."""
        scored = sorted((d for d in drafts if d.rank is not None), key=lambda d: d.rank, reverse=True)
        n = int(len(scored) * self.question_quartile)
        question_pairs = [
            {"kind": "question", "prompt_text": top.prompt, "chosen": f"Question: {top.question}",
             "rejected": f"Question: {bottom.question}", "chosen_score": top.rank, "rejected_score": bottom.rank,
             "prompt": collector.rendered(top.prompt)}
            for top, bottom in zip(scored[:n], reversed(scored[len(scored) - n:])) if top.rank > bottom.rank]
        rationale_pairs = []
        for d in drafts:
            ranked = sorted((r for r in d.rationales if r.rank is not None), key=lambda r: r.rank, reverse=True)
            if len(ranked) >= 2 and ranked[0].rank > ranked[-1].rank:
                plain = collector.prompt_text(d.question)
                rationale_pairs.append({
                    "kind": "rationale", "prompt_text": plain, "chosen": ranked[0].annotation.text,
                    "rejected": ranked[-1].annotation.text, "chosen_score": ranked[0].rank,
                    "rejected_score": ranked[-1].rank, "prompt": collector.rendered(plain)})
        return question_pairs, rationale_pairs

    def align_teacher(self, backend, pairs: Sequence[Mapping[str, Any]], run_dir: Path, seed: int,
                      saved: Path | None = None) -> dict[str, Any]:
        """DPO on the preference pairs; the adapter goes to ``run_dir/teacher_adapter``, and to ``saved``
        (the run's checkpoints), from which a rerun of a killed run restores it."""
        from tailkd.teachers.align import dpo_align

        aligned = dpo_align(backend, [_dpo(p) for p in pairs], self.dpo, run_dir / "teacher_adapter", seed=seed,
                            saved=saved)
        # DPO's freed activations (over a 151k vocabulary) stay in glibc's heap: a DPO job beside another
        # run was OOM-killed on 24 GB as the aligned teacher began to write (docs/results.md)
        gc.collect()
        release_freed_memory()
        return aligned

    def preferred_strategy(self, drafts: Sequence[DraftQuestion]) -> int:
        """The strategy whose rationales taught the student best on average (ties: the first)."""
        totals: dict[int, list[tuple[float, float]]] = {i: [] for i in range(len(self.strategies))}
        for d in drafts:
            for r in d.rationales:
                if r.rank is not None:
                    totals[r.strategy].append(r.rank)
        means = {i: (_mean([a for a, _ in v]), _mean([b for _, b in v])) if v else (-1.0, -1e30)
                 for i, v in totals.items()}
        return max(means, key=lambda i: (means[i], -i))

    def tailor(self, collector, data, seen, rng, left,
               strategy: int | None) -> tuple[list[tuple[DraftQuestion, Any]], DraftCounts]:
        """New questions and one rationale each, until the budget (or ``max_tailored``) runs out: under
        the plain prompt from the aligned teacher, or under the preferred strategy (``select``). A round
        whose questions were all refused does not end it; three in a row do."""
        out: list[tuple[DraftQuestion, Any]] = []
        total = DraftCounts()
        rounds = empty = 0
        while len(out) < self.max_tailored and rounds < 50 and empty < 3:
            rounds += 1
            with collector.phase("tailored_questions"):
                fresh, counts = draft_questions(
                    collector, data.train, seen, wanted=min(16, self.max_tailored - len(out)),
                    seeds_per_prompt=self.seed_questions, template=self.question_prompt,
                    temperature=self.question_temperature, rng=rng, id_prefix=f"arte-tailored-{rounds}-",
                    budget=left, reserve=1, max_rounds=1)
            total.add(counts)
            if not counts.bought:
                break  # the budget is spent
            if not fresh:
                empty += 1
                continue
            empty = 0
            with collector.phase("tailored_rationales"):
                if strategy is None:
                    requests = [collector.request(f"{d.id}-r", collector.prompt_text(d.question),
                                                  temperature=self.rationale_temperature) for d in fresh]
                    by_id = {a.example_id: a for a in collector.buy(requests, budget=left())}
                    for d in fresh:
                        if f"{d.id}-r" in by_id:
                            d.rationales.append(DraftRationale(-1, by_id[f"{d.id}-r"]))
                else:
                    draft_rationales(collector, fresh, [self.strategies[strategy]], template=self.rationale_prompt,
                                     temperature=self.rationale_temperature, max_tokens=self.rationale_max_tokens,
                                     budget=left())
            got = [(d, d.rationales[0]) for d in fresh if d.rationales]
            out += got
            if len(got) < len(fresh):  # the budget ran out part-way
                break
        return out, total

    def records(self, task, tailored, drafts: Sequence[DraftQuestion]) -> list[TrainRecord]:
        chosen = [(d, r) for d, r in tailored if r.usable]
        if self.train_on_drafts == "best":
            chosen += [(d, d.best()) for d in drafts if d.best() is not None]
        records = []
        for draft, rationale in chosen:
            a = rationale.annotation
            target = task.target(a.rationale, a.answer)
            records.append(TrainRecord(draft.id, task.prompt_for(draft.question), target,
                                       keep_tail=task.answer_tail(target, a.answer)))
        if not records:
            raise ConfigError("ARTE produced no usable training example (no drafted or tailored rationale had a "
                              "parseable answer): check the teacher's prompts and the budget")
        return records

    def _log_tables(self, loggers, drafts: Sequence[DraftQuestion]) -> None:
        rows = [[d.id, d.question, r.strategy, r.annotation.answer, r.score, d.score] for d in drafts for r in d.rationales]
        pipeline.log_table(loggers, "arte/drafts", ["id", "question", "strategy", "answer", "rationale_score", "question_score"],
                    rows)


def _dpo(pair: Mapping[str, Any]) -> dict[str, str]:
    return {"prompt": pair["prompt"], "chosen": pair["chosen"], "rejected": pair["rejected"]}


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None

