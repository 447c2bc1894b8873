"""A task is data: where its rows come from, Jinja templates that read a row, and how answers are scored.

Every template sees the row's fields by name. ``doc_to_question`` / ``doc_to_answer`` /
``doc_to_rationale`` turn a raw row into an :class:`Example`; ``prompt`` and ``target`` turn an
example into what the student reads and what it learns to write (rationale, then answer).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import jinja2

from tailkd.errors import ConfigError, DataError
from tailkd.tasks.answers import AnswerExtractor, answer_only
from tailkd.tasks.rationale import clean_rationale
from tailkd.tasks.teacher_text import TeacherReading, read_teacher_text

# where a teacher's invented next exemplar starts, for tasks that name none: sent as stop sequences
DEFAULT_TEACHER_STOP = ("\nQ:", "\nQuestion:")


@dataclass(frozen=True)
class Example:
    """One reasoning question with its gold answer (normalised) and, if the source has one, rationale."""

    id: str
    question: str
    answer: str
    rationale: str | None = None
    choices: Mapping[str, str] | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)


def _strip_calculator_notes(text: str) -> str:
    """GSM8K writes '<<48/2=24>>24'; the notes are for a calculator tool, not for the student."""
    return re.sub(r"<<[^>]*>>", "", text)


def _arithmetic_steps(expression: str) -> str:
    """'12 + 7 - 3' -> '12 + 7 = 19. 19 - 3 = 16.': a left-to-right worked rationale for +/- chains."""
    tokens = str(expression).split()
    if len(tokens) < 3 or len(tokens) % 2 == 0:
        raise ValueError(f"not a +/- chain: {expression!r}")
    total, steps = int(tokens[0]), []
    for op, operand in zip(tokens[1::2], tokens[2::2]):
        if op not in "+-":
            raise ValueError(f"operator {op!r} in {expression!r} is not + or -")
        value = total + int(operand) if op == "+" else total - int(operand)
        steps.append(f"{total} {op} {operand} = {value}.")
        total = value
    return " ".join(steps)


def _make_env() -> jinja2.Environment:
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=False)
    env.filters["strip_calc"] = _strip_calculator_notes
    env.filters["arithmetic_steps"] = _arithmetic_steps
    env.globals["zip"] = zip
    return env


_ENV = _make_env()


def _compile(name: str, template: str | None, task: str) -> jinja2.Template | None:
    if template is None:
        return None
    try:
        return _ENV.from_string(template)
    except jinja2.TemplateSyntaxError as err:
        raise ConfigError(f"task {task}: template {name} does not parse: {err}") from err


class Task:
    """A reasoning task built from its config node (``conf/task/*.yaml``)."""

    def __init__(self, cfg: Mapping[str, Any]):
        self.cfg = cfg
        self.name: str = cfg["name"]
        self.version = cfg.get("version", 0)
        self.required_fields: list[str] = list(cfg.get("required_fields") or [])
        self.id_field: str | None = cfg.get("id_field")
        self.choices_field: str | None = cfg.get("choices_field")
        templates = {
            k: _compile(k, cfg.get(k), self.name)
            for k in ("doc_to_question", "doc_to_answer", "doc_to_rationale", "prompt", "target",
                      "answer_target")
        }
        for required in ("doc_to_question", "doc_to_answer", "prompt", "target"):
            if templates[required] is None:
                raise ConfigError(f"task {self.name}: task.{required} is required")
        self._t = templates
        answer = cfg.get("answer") or {}
        self.extractor = AnswerExtractor(
            answer.get("type", "number"), answer.get("pattern"), answer.get("fallback", True)
        )
        self.max_new_tokens: int = int(cfg.get("max_new_tokens", 128))
        self.clean_rationales: bool = bool(cfg.get("clean_rationale", True))
        self.until: list[str] = list(cfg.get("until") or [])
        stop = cfg.get("teacher_stop")
        self.teacher_stop: tuple[str, ...] = DEFAULT_TEACHER_STOP if stop is None else tuple(str(s) for s in stop)

    # -- reading rows ------------------------------------------------------------------------------
    def example_from_row(self, row: Mapping[str, Any], default_id: str, where: str) -> Example:
        """Turn one raw row into an Example; ``where`` names the row in any error ("file.jsonl line 3")."""
        needed = list(self.required_fields)
        if self.id_field and self.id_field not in needed:
            needed.append(self.id_field)  # read below with row[id_field]: a KeyError otherwise
        missing = [f for f in needed if row.get(f) in (None, "")]
        if missing:
            raise DataError(
                f"{where}: row lacks field(s) {missing} that task {self.name} needs "
                f"(has {sorted(row)})"
            )
        try:
            choices = self._choices(row)
            question = self._t["doc_to_question"].render(**row).strip()
            raw_answer = self._t["doc_to_answer"].render(**row).strip()
            rationale_t = self._t["doc_to_rationale"]
            rationale = rationale_t.render(**row).strip() if rationale_t else None
        except (jinja2.UndefinedError, TypeError, KeyError, AttributeError, IndexError, ValueError) as err:
            raise DataError(f"{where}: task {self.name} cannot read this row: {err}") from err
        answer = self.extractor.normalise(raw_answer, choices)
        if answer is None:
            raise DataError(
                f"{where}: gold answer {raw_answer!r} is not a valid {self.extractor.type.name} answer "
                f"for task {self.name}"
            )
        example_id = str(row[self.id_field]) if self.id_field else default_id
        return Example(example_id, question, answer, rationale or None, choices)

    def _choices(self, row: Mapping[str, Any]) -> dict[str, str] | None:
        if not self.choices_field:
            return None
        choices = row[self.choices_field]
        return dict(zip(choices["label"], choices["text"]))

    # -- what the student reads and writes ---------------------------------------------------------
    def prompt(self, example: Example) -> str:
        return self.prompt_for(example.question)

    def prompt_for(self, question: str) -> str:
        """What the student reads for a question given as text (a drafted one has no Example)."""
        return self._t["prompt"].render(question=question)

    def target(self, rationale: str | None, answer: str) -> str:
        """Rationale then answer; with no rationale, the answer alone (``answer_target``). The rationale
        is learnt as :func:`clean_rationale` writes it unless ``clean_rationale: false``."""
        if rationale and self.clean_rationales:
            rationale = clean_rationale(rationale)
        if rationale and rationale.strip():
            return self._t["target"].render(rationale=rationale.strip(), answer=answer)
        return self.answer_target(answer)

    def answer_tail(self, target: str, answer: str) -> int:
        """How many characters at the end of ``target`` state the answer (its answer sentence): what a
        truncation must keep. 0 if the target does not end with it."""
        sentence = self.answer_target(answer).strip()
        at = target.rfind(sentence)
        return len(target) - at if at >= 0 and not target[at + len(sentence):].strip() else 0

    def safe_stops(self, targets: list[str]) -> list[str]:
        """``until`` without the stop strings that occur inside a target the student learns: a stop rule
        must never cut off a rationale it was taught to write."""
        return [s for s in self.until if not any(s in t for t in targets)]

    def answer_target(self, answer: str) -> str:
        template = self._t["answer_target"] or _ENV.from_string("The answer is {{ answer }}.")
        return template.render(answer=answer)

    # -- scoring -----------------------------------------------------------------------------------
    def extract_answer(self, text: str, example: Example | None = None) -> str | None:
        return self.extractor(text, example.choices if example else None)

    def answer_only(self, text: str | None, example: Example | None = None) -> bool:
        """Whether ``text`` names an answer and nothing else ("(A)", "16"): no reasoning in it."""
        return answer_only(text, self.extractor.type.name, example.choices if example else None)

    def read_teacher(self, text: str, example: Example | None = None,
                     stops: Sequence[str] | None = None) -> TeacherReading:
        """A teacher's text read strictly (:mod:`tailkd.tasks.teacher_text`): its invented continuation
        cut at ``stops`` (default: the task's ``teacher_stop``), the answer it concludes with."""
        return read_teacher_text(
            text, self.extractor.type.name, self.extractor,
            choices=example.choices if example else None,
            stops=self.teacher_stop if stops is None else stops, fallback=self.extractor.fallback)

    def is_correct(self, text: str, example: Example) -> bool:
        return self.extract_answer(text, example) == example.answer
