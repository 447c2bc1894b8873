"""A controlled imperfect teacher backend: the gold rationale and answer, corrupted for a share of questions.

Which questions are corrupted, and how, depends only on ``teacher.seed`` and the question id, so a
question gets the same annotation whatever budget or selection buys it (as a cached API answer would).

Corruption kinds:
- ``wrong_answer``: the final answer is wrong; where the rationale states the gold answer, its last
  occurrence is changed too, so the error reads as a slip in the final step.
- ``wrong_step``: one intermediate number of the rationale is wrong and the final answer is still
  right, a flawed annotation that no answer-level check can see. Without a number to change, it falls
  back to ``wrong_answer``.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping, Sequence
from typing import Any

from tailkd.errors import ConfigError
from tailkd.tasks import Example, Task
from tailkd.tasks.rationale import same_step, split_steps
from tailkd.teachers.annotation import approx_tokens, split_rationale
from tailkd.teachers.backends.protocol import Bound, Completion, TeacherCallError, TeacherRequest

KINDS = ("wrong_answer", "wrong_step")
_INT = re.compile(r"(?<![\w.])\d+(?![\w.])")


def _wrong_answer(answer: str, answer_type: str, example: Example, rng: random.Random) -> str:
    if answer_type == "yesno":
        return "no" if answer == "yes" else "yes"
    if answer_type == "choice":
        labels = sorted(example.choices) if example.choices else list("ABCDE")
        return rng.choice([label for label in labels if label != answer])
    value = float(answer)
    delta = rng.choice([d for d in range(-5, 6) if d != 0])
    wrong = value + delta if abs(value) < 20 else value * (1 + delta / 20)
    wrong = round(wrong) if value == int(value) else round(wrong, 2)
    if str(wrong) == answer:  # a rounding collision on tiny values
        wrong = value + 1
    return str(int(wrong)) if wrong == int(wrong) else str(wrong)


def _replace_last(text: str, old: str, new: str) -> str:
    for match in reversed(list(re.finditer(rf"(?<![\w.]){re.escape(old)}(?![\w])", text))):
        return text[: match.start()] + new + text[match.end():]
    return text


def _wrong_step(rationale: str, answer: str, rng: random.Random) -> str | None:
    """Change one number that is not the final answer's last mention; None if there is none."""
    numbers = list(_INT.finditer(rationale))
    last_answer = None
    for match in numbers:
        if match.group(0) == answer:
            last_answer = match
    candidates = [m for m in numbers if m is not last_answer]
    # prefer results of a step ("= 19") over operands copied from the question
    results = [m for m in candidates if rationale[: m.start()].rstrip().endswith("=")]
    pool = results or candidates
    if not pool:
        return None
    target = rng.choice(pool)
    value = int(target.group(0))
    wrong = value + rng.choice([d for d in range(-3, 4) if d != 0])
    wrong = abs(wrong) if wrong != value else value + 1
    if wrong == value:
        wrong = value + 1
    return rationale[: target.start()] + str(wrong) + rationale[target.end():]


class SimulatedBackend:
    """Writes its answers from the gold of the questions it is asked about (see the module docstring)."""

    name = "simulated"
    cacheable = False  # free and deterministic; and identical questions may carry different ids
    max_concurrency = 1
    batch_size = 4096

    def __init__(self, cfg: Mapping[str, Any]):
        self.model: str = cfg.get("model", "simulated-gold")
        self.seed = int(cfg.get("seed", 0))
        corruption = cfg.get("corruption") or {}
        self.error_rate = float(corruption.get("rate", 0.0))
        if not 0.0 <= self.error_rate <= 1.0:
            raise ConfigError(f"teacher.corruption.rate must be in [0, 1] (got {self.error_rate})")
        kinds = dict(corruption.get("kinds") or {"wrong_answer": 1.0})
        unknown = set(kinds) - set(KINDS)
        if unknown:
            raise ConfigError(f"teacher.corruption.kinds: unknown kind(s) {sorted(unknown)}; use {list(KINDS)}")
        if any(float(w) < 0 for w in kinds.values()) or sum(float(w) for w in kinds.values()) <= 0:
            raise ConfigError(f"teacher.corruption.kinds needs non-negative weights, some positive: {kinds}")
        self.kinds = {k: float(w) for k, w in kinds.items()}
        self._task: Task | None = None
        self._examples: dict[str, Example] = {}

    def prepare(self, task: Task, examples: Sequence[Example]) -> None:
        self._task = task
        self._examples.update({e.id: e for e in examples})

    def complete(self, requests: Sequence[TeacherRequest]) -> list[Completion | TeacherCallError]:
        out: list[Completion | TeacherCallError] = []
        for request in requests:
            example = self._examples.get(request.get("question_id", request.example_id))
            if example is None or self._task is None:
                out.append(TeacherCallError(f"no gold for question {request.example_id}", retryable=False))
                continue
            explanation = request.get("revise")
            if explanation is not None:
                text, kind = self.revise(example, self._task, explanation)
            else:
                text, kind = self.answer(example, self._task)
            out.append(Completion(text, approx_tokens(request.prompt), approx_tokens(text), self.model,
                                  {"corruption": kind}))
        return out

    def bound(self, request: TeacherRequest) -> Bound | None:
        """The answer is deterministic, so its charge is known exactly before it is "sent"."""
        found = self.complete([request])[0]
        return Bound(found.input_tokens, found.output_tokens) if isinstance(found, Completion) else None

    def answer(self, example: Example, task: Task) -> tuple[str, str | None]:
        """The annotation text for ``example`` and its corruption kind (None: faithful)."""
        return self._write(example, task, "", example.rationale)

    def revise(self, example: Example, task: Task, explanation: str) -> tuple[str, str | None]:
        """ELAD's revision: the student's steps are kept while they match the gold rationale's, and the
        rest is the gold from the first step that does not; then the usual corruption, which only
        touches what the teacher wrote (the kept prefix is the student's, checked correct). A student
        explanation that is right throughout comes back unchanged, with the answer stated."""
        gold = split_steps(example.rationale)
        student = split_steps(split_rationale(explanation, task, example)[0])
        kept = 0
        while kept < min(len(gold), len(student)) and same_step(gold[kept], student[kept]):
            kept += 1
        return self._write(example, task, " ".join(student[:kept]), " ".join(gold[kept:]))

    def _write(self, example: Example, task: Task, kept: str, rest: str | None) -> tuple[str, str | None]:
        """``kept`` (copied as is) then ``rest`` and the answer, corrupted for ``error_rate`` of the
        questions (which ones depends only on the seed and the question id)."""
        rng = random.Random(f"{self.seed}:{example.id}")
        answer, kind = example.answer, None
        if rng.random() < self.error_rate:
            kind = rng.choices(list(self.kinds), weights=list(self.kinds.values()))[0]
            flawed = _wrong_step(rest, answer, rng) if kind == "wrong_step" and rest else None
            if flawed is not None:
                rest = flawed
            else:
                kind = "wrong_answer"
                answer = _wrong_answer(example.answer, task.extractor.type.name, example, rng)
                if rest:  # (a student right throughout keeps its steps: only the stated answer is wrong)
                    rest = _replace_last(rest, example.answer, answer)
        rationale = " ".join(p for p in (kept, rest) if p) or None
        return task.target(rationale, answer).strip(), kind
