"""From raw signals to one weight per annotation, and how well each signal spots wrong answers.

``oriented`` turns each raw signal into a number where higher means "weigh this annotation more"
(``signals.<name>.value``); ``weigh`` normalises, combines and turns the combination into weights
(``use=weight``) or keeps/drops annotations (``use=filter``); ``auroc_summary`` measures each signal
against gold, ``weighted_accuracy`` what the weights made of the share of right answers. Every list is
aligned with the annotations it was computed for: a weight belongs to an annotation (question and
sample index), never to a question id.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tailkd.signals.combine import combine, normalise
from tailkd.signals.measure import Measured
from tailkd.signals.settings import SIGNALS, SignalSettings
from tailkd.stats import auroc


@dataclass(frozen=True)
class Weighed:
    values: dict[str, list[float]]  # per enabled signal: oriented, then normalised
    scores: list[float]  # the combination
    weights: list[float]  # raw: 0 drops an annotation; training_weights() scales the rest to mean 1
    dropped: int  # annotations given weight 0 by use=filter


def oriented(settings: SignalSettings, measured: Sequence[Measured]) -> dict[str, list[float]]:
    columns: dict[str, list[float]] = {}
    if "self_consistency" in settings.enabled:
        value = settings.values["self_consistency"]
        columns["self_consistency"] = [
            {"uncertainty": 1 - m.consistency.majority_share, "consistency": m.consistency.majority_share,
             "teacher_agreement": m.consistency.teacher_agreement or 0.0}[value] for m in measured]
    for name in ("ta_student", "ta_teacher"):
        if name in settings.enabled:
            flip = settings.values[name] == "doubt"
            scores = [getattr(m, name).confidence for m in measured]
            columns[name] = [1 - c if flip else c for c in scores]
    if "oracle" in settings.enabled:
        columns["oracle"] = [1.0 if m.correct else 0.0 for m in measured]
    return columns


def drop_lowest(scores: Sequence[float], share: float) -> list[float]:
    """Weight 0 for exactly ``round(share * n)`` annotations with the lowest scores, 1 for the rest.
    Ties are broken by position (the earlier bought goes first), so a tie never keeps more than the
    intended share, and the same scores always drop the same annotations."""
    n_drop = round(share * len(scores))
    lowest = sorted(range(len(scores)), key=lambda i: (scores[i], i))[:n_drop]
    weights = [1.0] * len(scores)
    for i in lowest:
        weights[i] = 0.0
    return weights


def weigh(settings: SignalSettings, measured: Sequence[Measured]) -> Weighed:
    n = len(measured)
    values = {name: normalise(column, settings.normalise, settings.softmax_temperature)
              for name, column in oriented(settings, measured).items()}
    scores = combine(values, settings.combine, settings.weights) if values else [1.0] * n
    if not values or settings.use == "select":
        weights = [1.0] * n
    elif settings.use == "filter":
        weights = drop_lowest(scores, settings.filter_threshold)
    else:
        top = max(scores) if scores else 1.0
        weights = [settings.floor + (1 - settings.floor) * (s / top if top > 0 else 1.0) for s in scores]
    return Weighed(values, scores, weights, sum(w == 0 for w in weights) if settings.use == "filter" else 0)


def auroc_summary(weighed: Weighed, correct: Sequence[bool | None]) -> dict[str, Any]:
    """Each signal's (and the combination's) AUROC at ranking right teacher answers above wrong ones."""
    summary: dict[str, Any] = {f"auroc_{name}": auroc(column, correct) for name, column in weighed.values.items()}
    summary["auroc_weight"] = auroc(weighed.scores, correct) if weighed.values else None
    return summary


def weighted_accuracy(weights: Sequence[float], correct: Sequence[bool | None]) -> float | None:
    """The share of the training weight that falls on right teacher answers: what weighting or
    filtering made of the bought set's accuracy. ``weights`` as the annotations train (0 for one that
    does not); annotations of unknown correctness are left out; None when no weight is left."""
    known = [(w, c) for w, c in zip(weights, correct) if c is not None]
    total = sum(w for w, _ in known)
    return sum(w for w, c in known if c) / total if total > 0 else None


def signal_row(m: Measured, weighed: Weighed, i: int, correct: bool | None, weight: float) -> dict[str, Any]:
    """One line of signals.jsonl: the annotation's key, its raw signals, values, combined score and the
    weight it trains with (``tailkd.training.records.training_weights`` of ``weighed.weights``)."""
    a = m.annotation
    row: dict[str, Any] = {"id": a.example_id, "sample_index": a.sample_index, "teacher_answer": a.answer,
                           "teacher_correct": correct, "corruption": a.meta.get("corruption")}
    if m.consistency is not None:
        c = m.consistency
        row["self_consistency"] = {"distinct": c.distinct, "majority_share": c.majority_share,
                                   "teacher_agreement": c.teacher_agreement, "answers": list(c.answers)}
    if m.ta_student is not None:
        row["ta_student"] = {"student_output": m.student_output, **_score(m.ta_student)}
    if m.ta_teacher is not None:
        row["ta_teacher"] = _score(m.ta_teacher)
    for name in SIGNALS:
        if name in weighed.values:  # the oracle has no raw record of its own, only its value
            row.setdefault(name, {})["value"] = weighed.values[name][i]
    row["score"], row["weight"] = weighed.scores[i], weight
    return row


def _score(score) -> dict[str, Any]:
    return {"confidence": score.confidence, "mean_logprob": score.mean_logprob, "answer_prob": score.answer_prob}
