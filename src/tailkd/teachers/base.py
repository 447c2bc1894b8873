"""The teacher interface: every backend returns the same annotation record.

A teacher sees only the question (through its prompt template) and answers with a rationale and a
final answer. Backends differ in how they produce the text; parsing, pricing and budgeting are shared.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import jinja2

from tailkd.errors import ConfigError
from tailkd.tasks import Example, Task


@dataclass
class Annotation:
    """One teacher answer to one question. ``answer`` is None when the text could not be parsed."""

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
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def parse_failed(self) -> bool:
        return self.answer is None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "parse_failed": self.parse_failed}


@dataclass(frozen=True)
class Price:
    """USD per one million tokens."""

    input_per_1m: float = 0.0
    output_per_1m: float = 0.0

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        return (input_tokens * self.input_per_1m + output_tokens * self.output_per_1m) / 1e6


def approx_tokens(text: str) -> int:
    """About four characters a token, the usual rule of thumb for English with BPE vocabularies."""
    return max(1, math.ceil(len(text) / 4))


class Teacher(Protocol):
    backend: str
    model: str

    def annotate(self, examples: Sequence[Example], task: Task) -> list[Annotation]:
        """One annotation per example, in order."""
        ...


def render_teacher_prompt(template: str, example: Example) -> str:
    try:
        return jinja2.Template(template, undefined=jinja2.StrictUndefined).render(question=example.question)
    except jinja2.TemplateError as err:
        raise ConfigError(f"teacher.prompt does not render: {err}") from err


def split_rationale(text: str, task: Task) -> tuple[str | None, str | None]:
    """(rationale, answer) of a teacher text: the answer by the task's extractor, the rationale is the
    text before the answer sentence."""
    answer = task.extract_answer(text)
    pattern = task.extractor.pattern
    matches = list(pattern.finditer(text)) if pattern is not None else []
    rationale = text[: matches[-1].start()].strip() if matches else text.strip()
    return (rationale or None), answer


def price_from_cfg(cfg: Mapping[str, Any]) -> Price:
    price = cfg.get("price") or {}
    result = Price(float(price.get("input_per_1m", 0.0)), float(price.get("output_per_1m", 0.0)))
    if result.input_per_1m < 0 or result.output_per_1m < 0:
        raise ConfigError(f"teacher.price must not be negative (got {dict(price)})")
    return result
