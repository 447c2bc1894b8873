"""The annotation record every teacher backend's answers become, and helpers to read teacher text."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from tailkd.tasks import Example, Task


@dataclass
class Annotation:
    """One teacher answer to one question: the ``sample_index``-th answer bought for ``example_id``
    (``teacher.n_samples`` > 1 buys several). ``answer`` is None when the text could not be parsed."""

    example_id: str
    prompt: str
    text: str
    rationale: str | None
    answer: str | None
    input_tokens: int
    output_tokens: int
    cost_usd: float
    backend: str
    model: str
    sample_index: int = 0
    meta: dict[str, Any] = field(default_factory=dict)
    # where the teacher's invented continuation was cut from ``text`` (None: nothing was), and which
    # rule read the answer (statement, first, fallback) or why none was taken (hedge, no_answer, unfinished)
    cut_at: int | None = None
    parse: str = ""

    @property
    def key(self) -> tuple[str, int]:
        """What identifies an annotation within a run: its question and sample index."""
        return self.example_id, self.sample_index

    @property
    def parse_failed(self) -> bool:
        return self.answer is None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "parse_failed": self.parse_failed}


def approx_tokens(text: str) -> int:
    """About four characters a token, the usual rule of thumb for English with BPE vocabularies."""
    return max(1, math.ceil(len(text) / 4))


def split_rationale(text: str, task: Task, example: Example | None = None) -> tuple[str | None, str | None]:
    """(rationale, answer) of a *student's* text, read as it is scored: the answer by the task's
    extractor with ``example``'s choices (so "The answer is oven." names the oven's label), the
    rationale the text before the last answer sentence. A teacher's text is read strictly instead
    (:meth:`tailkd.tasks.Task.read_teacher`)."""
    answer = task.extract_answer(text, example)
    matches = task.extractor.matches(text)
    rationale = text[: matches[-1].start()].strip() if matches else text.strip()
    return (rationale or None), answer
