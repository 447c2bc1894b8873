"""The teacher as a writer of new training data: questions drafted from seed questions, and rationales
written under different reasoning strategies (ARTE's drafts). Every call goes through the collector,
so it is cached, budgeted and in the ledger like any annotation.

A drafted question is parsed (``Question: ...`` or the first line, at least three words), and dropped
with a count when it does not parse, lacks the answer choices its seed questions have (a multiple-choice
question without them names no answer a student could learn), repeats another draft, repeats a seed, or
is a near-duplicate of a test question: word sets with a Jaccard similarity of at least ``dedup_threshold`` count as the same
question ("What is 12 + 7?" and "What is 12 + 8?" share 3 of 5 words and stay apart at 0.8).
"""

from __future__ import annotations

import contextlib
import dataclasses
import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import jinja2

from tailkd.errors import ConfigError
from tailkd.progress import Progress
from tailkd.tasks import Example
from tailkd.teachers.annotation import Annotation
from tailkd.teachers.collect import Collector

_QUESTION = re.compile(r"question\s*[:.-]\s*(.+)", re.IGNORECASE | re.DOTALL)
_WORD = re.compile(r"[a-z0-9]+")
# a multiple-choice question's choices follow its question mark ("...? Answer choices: (A) plant (B) ..."),
# and a choice may hold a question mark of its own
_CHOICES = re.compile(r"\?.*\(A\).*\(B\)", re.DOTALL)
_CHOICE_LINE = re.compile(r"(answer\s+)?(choices|options)\s*:|\([A-Z]\)", re.IGNORECASE)


@dataclass
class DraftRationale:
    strategy: int  # index into the strategy prompts (-1: the plain teacher prompt)
    annotation: Annotation
    preference: Any = None  # the student's Preference for it as the only demonstration (signals.preference)

    @property
    def usable(self) -> bool:
        return not self.annotation.parse_failed

    @property
    def score(self) -> float | None:
        return None if self.preference is None else self.preference.accuracy

    @property
    def rank(self) -> tuple[float, float] | None:
        return None if self.preference is None else self.preference.rank


@dataclass
class DraftQuestion:
    id: str
    question: str
    prompt: str  # the request that wrote it (DPO's prompt for question pairs)
    seeds: list[str]
    rationales: list[DraftRationale] = field(default_factory=list)

    @property
    def score(self) -> float | None:
        """The mean one-shot accuracy its rationales gave the student (the paper's question score)."""
        ranks = [r.rank for r in self.rationales if r.rank is not None]
        return sum(a for a, _ in ranks) / len(ranks) if ranks else None

    @property
    def rank(self) -> tuple[float, float] | None:
        """(score, mean likelihood): the score, its ties broken by the finer likelihood."""
        ranks = [r.rank for r in self.rationales if r.rank is not None]
        return (sum(a for a, _ in ranks) / len(ranks), sum(b for _, b in ranks) / len(ranks)) if ranks else None

    def best(self) -> DraftRationale | None:
        scored = [r for r in self.rationales if r.usable and r.rank is not None]
        return max(scored, key=lambda r: r.rank) if scored else None

    def to_row(self) -> dict[str, Any]:
        return {"id": self.id, "question": self.question, "seeds": self.seeds, "score": self.score,
                "rank": self.rank,
                "rationales": [{"strategy": r.strategy, "text": r.annotation.text, "answer": r.annotation.answer,
                                "score": r.score, "likelihood": r.rank[1] if r.rank else None,
                                "cost_usd": r.annotation.cost_usd} for r in self.rationales]}


@dataclass
class DraftCounts:
    asked: int = 0
    bought: int = 0  # answers received (what the budget allowed)
    unparseable: int = 0
    no_choices: int = 0  # a multiple-choice question drafted without its choices
    duplicates: int = 0
    like_test: int = 0
    refused: list[dict[str, str]] = field(default_factory=list)  # what the teacher wrote, and why it was dropped

    def as_results(self, prefix: str) -> dict[str, int]:
        return {f"{prefix}_{k}": v for k, v in self.__dict__.items() if isinstance(v, int)}

    def add(self, other: DraftCounts) -> None:
        for name, value in other.__dict__.items():
            setattr(self, name, getattr(self, name) + value)

    def _refuse(self, example_id: str, text: str, reason: str) -> None:
        setattr(self, reason, getattr(self, reason) + 1)
        self.refused.append({"id": example_id, "reason": reason, "text": text})

    def __str__(self) -> str:
        return (f"{self.bought} drafts bought: {self.unparseable} unparseable, {self.no_choices} without the "
                f"answer choices their seed questions have, {self.duplicates} repeats, {self.like_test} like a "
                f"test question")


def parse_question(text: str) -> str | None:
    """The question a teacher wrote: what follows ``Question:``, else its first line, with the lines of
    answer choices straight after it; up to its last question mark unless answer choices follow it;
    None when that is not a question of at least three words."""
    match = _QUESTION.search(text)
    first, *rest = [line.strip() for line in (match.group(1) if match else text).strip().split("\n")]
    choices = []
    for line in rest:  # "Answer choices: (A) ..." or "(A) ..." lines straight after the question are its own
        if not _CHOICE_LINE.match(line):
            break
        choices.append(line)
    body = " ".join([first, *choices]).strip('"').strip()
    if "?" in body and not _CHOICES.search(body):
        body = body[: body.rfind("?") + 1]
    return body if len(_WORD.findall(body.lower())) >= 3 else None


def lists_choices(question: str, seeds: Sequence[Example]) -> bool:
    """Whether ``question`` lists answer choices as its seed questions do: at least two of their labels,
    written "(A)" as the task writes them. True when no seed has choices."""
    labels = sorted({label for seed in seeds for label in (seed.choices or {})})
    return not labels or sum(f"({label})" in question for label in labels) >= 2


def _words(text: str) -> frozenset[str]:
    return frozenset(_WORD.findall(text.lower()))


def similar(a: frozenset[str], b: frozenset[str], threshold: float) -> bool:
    return bool(a or b) and len(a & b) / len(a | b) >= threshold


class QuestionFilter:
    """Keeps a drafted question only if it is new: not like a kept one, a seed, or a test question."""

    def __init__(self, seen: Iterable[str], test: Iterable[str], threshold: float):
        self.threshold = threshold
        self.kept = [_words(q) for q in seen]
        self.test = [_words(q) for q in test]

    def verdict(self, question: str) -> str:
        """``keep``, ``duplicate`` or ``like_test``."""
        words = _words(question)
        if any(similar(words, t, self.threshold) for t in self.test):
            return "like_test"
        if any(similar(words, k, self.threshold) for k in self.kept):
            return "duplicate"
        self.kept.append(words)
        return "keep"


def render(template: str, name: str, **values: Any) -> str:
    try:
        return jinja2.Template(template, undefined=jinja2.StrictUndefined).render(**values)
    except jinja2.TemplateError as err:
        raise ConfigError(f"method.{name} does not render: {err}") from err


def draft_questions(collector: Collector, pool: Sequence[Example], keep: QuestionFilter, *, wanted: int,
                    seeds_per_prompt: int, template: str, temperature: float, rng: random.Random,
                    id_prefix: str, budget=None, reserve: int = 0, max_rounds: int = 20, batch: int = 16,
                    desc: str | None = None) -> tuple[list[DraftQuestion], DraftCounts]:
    """Up to ``wanted`` new questions, each written from ``seeds_per_prompt`` questions of ``pool`` and
    kept only if it is usable and ``keep`` (shared by every drafting call of a run) has seen nothing like
    it; stops early when the budget buys nothing more (or after ``max_rounds`` rounds of asking).
    ``reserve``: teacher queries each kept question will cost after this (its rationales). Under a query
    budget they are set aside, and a round asks only as many questions as could each be kept and paid
    for, so refused drafts take from the questions drafted, never from the rationales of kept ones.
    ``desc``: a progress of the kept questions over all rounds (each round's purchase has the teacher's
    bar besides)."""
    counts = DraftCounts()
    drafts: list[DraftQuestion] = []
    with Progress(wanted, desc, unit="q") if desc else contextlib.nullcontext() as progress:
        for _ in range(max_rounds):
            if len(drafts) >= wanted:
                break
            limit = budget() if callable(budget) else budget
            size = min(batch, wanted - len(drafts))
            if reserve and limit is not None and limit.max_queries is not None:
                limit = dataclasses.replace(limit, max_queries=limit.max_queries - reserve * len(drafts))
                size = min(size, limit.max_queries // (1 + reserve))
                if size < 1:
                    break
            asks = []
            for _ in range(size):
                seeds = rng.sample(list(pool), min(seeds_per_prompt, len(pool)))
                asks.append((seeds, render(template, "question_prompt", seeds=[e.question for e in seeds])))
            # no stop sequences: a drafted question may well be written on a "Question:" line of its own
            requests = [collector.request(f"{id_prefix}{counts.asked + i}", text, temperature=temperature, stop=None)
                        for i, (_, text) in enumerate(asks)]
            counts.asked += len(requests)
            bought = {a.example_id: a for a in collector.buy(requests, budget=limit)}
            counts.bought += len(bought)
            if not bought:
                break
            kept = len(drafts)
            for request, (seeds, text) in zip(requests, asks):
                if request.example_id not in bought:
                    continue
                written = bought[request.example_id].text or ""
                question = parse_question(written)
                if question is None:
                    counts._refuse(request.example_id, written, "unparseable")
                elif not lists_choices(question, seeds):
                    counts._refuse(request.example_id, written, "no_choices")
                elif (verdict := keep.verdict(question)) == "keep":
                    drafts.append(DraftQuestion(request.example_id, question, text, [e.question for e in seeds]))
                else:
                    counts._refuse(request.example_id, written, "duplicates" if verdict == "duplicate" else "like_test")
            if progress is not None:
                progress.update(len(drafts) - kept)
    return drafts[:wanted], counts


def draft_rationales(collector: Collector, drafts: Sequence[DraftQuestion], strategies: Sequence[str], *,
                     template: str, temperature: float, max_tokens: int | None = None, budget=None) -> None:
    """One rationale per (question, strategy), in ``draft.rationales`` (what the budget allowed), each
    at most ``max_tokens`` long (None: the teacher's ``max_tokens``)."""
    requests, where = [], {}
    length = {} if max_tokens is None else {"max_tokens": int(max_tokens)}
    for draft in drafts:
        for index, strategy in enumerate(strategies):
            text = render(template, "rationale_prompt", strategy=strategy, question=draft.question)
            request = collector.request(f"{draft.id}-r{index}", text, temperature=temperature, **length)
            requests.append(request)
            where[request.example_id] = (draft, index)
    for annotation in collector.buy(requests, budget=budget):
        draft, index = where[annotation.example_id]
        draft.rationales.append(DraftRationale(index, annotation))
