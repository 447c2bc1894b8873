"""TAiL's per-example signals and how they become a training weight.

- ``self_consistency``: agreement among k answers the (warmed-up) student samples;
- ``ta_student``: the teaching assistant's confidence in the student's own (greedy) output;
- ``ta_teacher``: the teaching assistant's confidence in the teacher's annotation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from tailkd.errors import ConfigError
from tailkd.models import Student, generate_texts
from tailkd.signals.cache import SignalCache
from tailkd.signals.combine import COMBINERS, NORMALISERS, auroc, combine, normalise
from tailkd.signals.self_consistency import self_consistency, summarise
from tailkd.signals.ta import Scored, TAScore
from tailkd.tasks import Example, Task
from tailkd.teachers import Annotation
from tailkd.teachers.base import split_rationale

SIGNALS = ("self_consistency", "ta_student", "ta_teacher")
VALUES = {
    "self_consistency": ("uncertainty", "consistency", "teacher_agreement"),
    "ta_student": ("doubt", "confidence"),
    "ta_teacher": ("confidence", "doubt"),
}
USES = ("weight", "filter", "select")


@dataclass(frozen=True)
class SignalSettings:
    enabled: tuple[str, ...]
    values: Mapping[str, str]
    weights: Mapping[str, float]
    use: str
    normalise: str
    softmax_temperature: float
    combine: str
    floor: float
    filter_threshold: float
    k: int
    temperature: float

    @classmethod
    def from_cfg(cls, cfg: Mapping[str, Any]) -> SignalSettings:
        enabled, values, weights = [], {}, {}
        for name in SIGNALS:
            node = cfg.get(name) or {}
            value = node.get("value", VALUES[name][0])
            if value not in VALUES[name]:
                raise ConfigError(f"signals.{name}.value={value!r} is unknown; choose one of {list(VALUES[name])}")
            values[name], weights[name] = value, float(node.get("weight", 1.0))
            if node.get("enabled", False):
                enabled.append(name)
        settings = cls(
            tuple(enabled), values, weights, cfg.get("use", "weight"), cfg.get("normalise", "rank"),
            float(cfg.get("softmax_temperature", 1.0)), cfg.get("combine", "product"),
            float(cfg.get("floor", 0.0)), float(cfg.get("filter_threshold", 0.2)),
            int((cfg.get("self_consistency") or {}).get("k", 8)),
            float((cfg.get("self_consistency") or {}).get("temperature", 0.7)),
        )
        checks = [
            (settings.use in USES, f"signals.use={settings.use!r} is unknown; choose one of {list(USES)}"),
            (settings.normalise in NORMALISERS, f"signals.normalise={settings.normalise!r} is unknown; choose one of {list(NORMALISERS)}"),
            (settings.combine in COMBINERS, f"signals.combine={settings.combine!r} is unknown; choose one of {list(COMBINERS)}"),
            (0.0 <= settings.floor < 1.0, f"signals.floor must be in [0, 1) (got {settings.floor})"),
            (0.0 <= settings.filter_threshold < 1.0, f"signals.filter_threshold must be in [0, 1) (got {settings.filter_threshold})"),
            (settings.k >= 2, f"signals.self_consistency.k must be >= 2 (got {settings.k})"),
            (settings.temperature > 0, f"signals.self_consistency.temperature must be > 0 (got {settings.temperature})"),
            (settings.use != "select" or "self_consistency" in enabled,
             "signals.use=select orders questions by self-consistency: enable signals.self_consistency"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        return settings


def compute_signals(
    settings: SignalSettings,
    student: Student,
    ta,
    task: Task,
    annotations: Sequence[Annotation],
    examples: Mapping[str, Example],
    *,
    gold: Mapping[str, str] | None = None,
    batch_size: int = 16,
    stop: Sequence[str] = (),
    seed: int = 0,
    cache: SignalCache | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """One row per annotation (raw signals, oriented values, final ``weight``) and a summary with
    each signal's AUROC at telling right teacher answers from wrong ones (when gold is known).
    With a ``cache``, raw values computed by an earlier run with the same weights are reused."""
    cache = cache or SignalCache(None)
    questions = [examples[a.example_id] for a in annotations]
    prompts = [task.prompt(e) for e in questions]
    decoding = {"max_new_tokens": task.max_new_tokens, "stop": list(stop), "batch_size": batch_size}
    rows: list[dict[str, Any]] = [
        {"id": a.example_id, "teacher_answer": a.answer,
         "teacher_correct": None if gold is None else a.answer == gold.get(a.example_id),
         "corruption": a.meta.get("corruption")}
        for a in annotations
    ]
    oriented: dict[str, list[float]] = {}
    if "self_consistency" in settings.enabled:
        def sample() -> dict[str, list[str | None]]:
            found = self_consistency(student, task, questions, k=settings.k, temperature=settings.temperature,
                                     batch_size=batch_size, stop=stop, seed=seed)
            return {i: list(c.answers) for i, c in found.items()}

        key = {"model": cache.model_id(student.model), "prompts": prompts, "k": settings.k,
               "temperature": settings.temperature, "seed": seed, **decoding}
        sampled = cache.fetch("self_consistency", key, sample)
        consistency = {a.example_id: summarise(sampled[a.example_id], a.answer) for a in annotations}
        value = settings.values["self_consistency"]
        column = []
        for row in rows:
            c = consistency[row["id"]]
            row["self_consistency"] = {"distinct": c.distinct, "majority_share": c.majority_share,
                                       "teacher_agreement": c.teacher_agreement, "answers": list(c.answers)}
            column.append({"uncertainty": 1 - c.majority_share, "consistency": c.majority_share,
                           "teacher_agreement": c.teacher_agreement or 0.0}[value])
        oriented["self_consistency"] = column
    if "ta_student" in settings.enabled:
        def greedy() -> list[str]:
            return [text for start in range(0, len(prompts), batch_size)
                    for text in generate_texts(student, prompts[start:start + batch_size], task.max_new_tokens, stop=stop)]

        outputs = cache.fetch("student_outputs", {"model": cache.model_id(student.model), "prompts": prompts,
                                                  **decoding}, greedy)
        parsed = [split_rationale(text, task) for text in outputs]
        scores = _ta_scores(ta, cache, [Scored(e, r, a) for e, (r, a) in zip(questions, parsed)], prompts)
        flip = settings.values["ta_student"] == "doubt"
        for row, text, score in zip(rows, outputs, scores):
            row["ta_student"] = {"student_output": text, **_score_dict(score)}
        oriented["ta_student"] = [1 - s.confidence if flip else s.confidence for s in scores]
    if "ta_teacher" in settings.enabled:
        scores = _ta_scores(ta, cache, [Scored(e, a.rationale, a.answer) for e, a in zip(questions, annotations)], prompts)
        flip = settings.values["ta_teacher"] == "doubt"
        for row, score in zip(rows, scores):
            row["ta_teacher"] = _score_dict(score)
        oriented["ta_teacher"] = [1 - s.confidence if flip else s.confidence for s in scores]

    normalised = {
        name: normalise(column, settings.normalise, settings.softmax_temperature) for name, column in oriented.items()
    }
    combined = combine(normalised, settings.combine, settings.weights)
    weights = _to_weights(combined, settings)
    for row, weight, score in zip(rows, weights, combined):
        row["score"] = score
        row["weight"] = weight
    for name, column in normalised.items():
        for row, v in zip(rows, column):
            row[name]["value"] = v
    summary = {"signals": list(settings.enabled), "signals_use": settings.use}
    correct = [row["teacher_correct"] for row in rows]
    if gold is not None:
        for name, column in normalised.items():
            summary[f"auroc_{name}"] = auroc(column, correct)
        summary["auroc_weight"] = auroc(combined, correct) if normalised else None
    return rows, summary


def _ta_scores(ta, cache: SignalCache, items: Sequence[Scored], prompts: Sequence[str]) -> list[TAScore]:
    model = getattr(ta, "model", None)
    identity = {"ta": type(ta).__name__, "confidence": getattr(ta, "confidence", None),
                "batch_size": getattr(ta, "batch_size", None),
                "weights": cache.model_id(model.model) if model is not None else None}
    key = {**identity, "items": [(p, i.rationale, i.answer) for p, i in zip(prompts, items)]}
    stored = cache.fetch("ta_scores", key, lambda: [asdict(s) for s in ta.score(items)])
    return [TAScore(**s) for s in stored]


def _score_dict(score) -> dict[str, Any]:
    return {"confidence": score.confidence, "mean_logprob": score.mean_logprob, "answer_prob": score.answer_prob}


def _to_weights(combined: list[float], settings: SignalSettings) -> list[float]:
    if not settings.enabled or settings.use == "select":
        return [1.0] * len(combined)
    if settings.use == "filter":
        quantiles = normalise(combined, "rank")
        return [1.0 if q > settings.filter_threshold else 0.0 for q in quantiles]
    top = max(combined) if combined else 1.0
    scaled = [c / top if top > 0 else 1.0 for c in combined]
    return [settings.floor + (1 - settings.floor) * s for s in scaled]
