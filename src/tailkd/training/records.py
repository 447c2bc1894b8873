"""From bought annotations to training records: the one owner of an annotation's training weight.

Every method goes the same way: ``trainable`` leaves out what cannot train (an annotation whose answer
could not be parsed) *before* anything is weighed, so that parse failures take part neither in a
signal's rank normalisation nor in a filter's quota; a method's raw weights (signals, an oracle, or
none) then become ``training_weights``: 0 drops an annotation, the rest are scaled to mean 1 over what
trains. That is the weight each record carries, the loss multiplies by and signals.jsonl states.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tailkd.tasks import Task
    from tailkd.teachers import Annotation

log = logging.getLogger(__name__)


@dataclass
class TrainRecord:
    """One training example: what the student reads, what it learns to write, and how much it counts.

    ``aux_prompt``/``aux_target`` hold a second task on the same question (distilling step-by-step's
    rationale task); its loss joins the example's loss before weighting. ``keep_tail`` (and
    ``aux_keep_tail``) is how many characters at the end of the target state the answer: a sequence
    cut to fit ``student.max_length`` never loses them.
    """

    id: str
    prompt: str
    target: str
    weight: float = 1.0
    aux_prompt: str | None = None
    aux_target: str | None = None
    keep_tail: int = 0
    aux_keep_tail: int = 0

    def pairs(self) -> list[tuple[str, str, int]]:
        out = [(self.prompt, self.target, self.keep_tail)]
        if self.aux_target is not None:
            out.append((self.aux_prompt or "", self.aux_target, self.aux_keep_tail))
        return out


def trainable(annotations: Sequence[Annotation]) -> list[Annotation]:
    """The annotations a student can learn from, in buying order: those whose answer was parsed. The
    others stay in annotations.jsonl, paid for and visible, and are counted in the log."""
    kept = [a for a in annotations if not a.parse_failed]
    if len(kept) < len(annotations):
        log.warning("%d teacher annotations had no parseable answer and are not trained on",
                    len(annotations) - len(kept))
    return kept


def normalise_weights(weights: Sequence[float]) -> list[float]:
    """Non-negative weights scaled to mean 1 over the training set: then equal weights give exactly
    the unweighted loss, and the loss does not depend on how examples fall into batches."""
    if not weights:
        return []
    if any(w < 0 for w in weights):
        raise ValueError("example weights must be non-negative")
    mean = sum(weights) / len(weights)
    if mean == 0:
        raise ValueError("all example weights are zero: nothing to learn from")
    return [w / mean for w in weights]


def training_weights(weights: Sequence[float]) -> list[float]:
    """What each annotation trains with, given a method's raw weights: 0 stays 0 (not trained on), the
    rest scaled to mean 1 over the annotations that train."""
    kept = normalise_weights([w for w in weights if w != 0])
    scaled = iter(kept)
    return [0.0 if w == 0 else next(scaled) for w in weights]


def records_from_annotations(
    annotations: Sequence[Annotation],
    task: Task,
    questions: Mapping[str, Any],
    target: str = "rationale",
    multitask: Mapping[str, Any] | None = None,
    weights: Sequence[float] | None = None,
) -> list[TrainRecord]:
    """One record per annotation with a non-zero weight (``weights[i]`` for ``annotations[i]``, default
    1), carrying its training weight. ``annotations`` are :func:`trainable` ones: a parse failure here is
    a caller's bug, not something to skip quietly."""
    if any(a.parse_failed for a in annotations):
        raise ValueError("records_from_annotations takes trainable() annotations: some have no parsed answer")
    raw = [1.0] * len(annotations) if weights is None else list(weights)
    if len(raw) != len(annotations):
        raise ValueError(f"{len(raw)} weights for {len(annotations)} annotations")
    records = []
    for a, weight in zip(annotations, training_weights(raw)):
        if weight == 0:
            continue
        records.append(_record(a, task, questions[a.example_id], weight, target, multitask))
    return records


def _record(a: Annotation, task: Task, question: Any, weight: float, target: str,
            multitask: Mapping[str, Any] | None) -> TrainRecord:
    prompt = task.prompt(question)
    full_target = task.target(a.rationale, a.answer)
    answer_only = task.answer_target(a.answer)
    if multitask:  # distilling step-by-step: the label task, with the rationale task on the same question
        return TrainRecord(a.example_id, multitask["label_prefix"] + prompt, answer_only, weight=weight,
                           aux_prompt=multitask["rationale_prefix"] + prompt, aux_target=full_target,
                           keep_tail=len(answer_only), aux_keep_tail=task.answer_tail(full_target, a.answer))
    if target == "rationale":
        return TrainRecord(a.example_id, prompt, full_target, weight, keep_tail=task.answer_tail(full_target, a.answer))
    return TrainRecord(a.example_id, prompt, answer_only, weight, keep_tail=len(answer_only))
