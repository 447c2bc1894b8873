"""Replay teacher answers already paid for, from a JSON Lines file: no call, no cost."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tailkd.errors import ConfigError, DataError
from tailkd.jsonl import read_objects
from tailkd.teachers.annotation import approx_tokens
from tailkd.teachers.backends.protocol import Bound, Completion, TeacherCallError, TeacherRequest

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RecordedRow:
    line: int  # 1-based line of the file
    text: str
    example_id: str | None = None
    question: str | None = None
    prompt: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cost_usd: float | None = None
    model: str | None = None
    backend: str | None = None


def _norm(text: str) -> str:
    """Questions and prompts match up to whitespace."""
    return " ".join(text.split())


class RecordedBackend:
    """Answers read from a JSON Lines file instead of a model.

    Config (the ``teacher`` node)::

        backend: recorded
        path: runs/earlier/annotations.jsonl   # the file to replay
        model: gpt-4o                           # optional: name for rows without a "model"
                                                # (default: the rows' model if they all agree, else "recorded")
        batch_size: 1024                        # optional

    Rows: the ``Annotation.to_dict()`` records tailkd writes to ``annotations.jsonl`` (``example_id``,
    ``prompt``, ``text``, ``input_tokens``, ``output_tokens``, ``cost_usd``, ``model``, ...), or the
    minimal ``{"example_id": ..., "text": ...}`` / ``{"question": ..., "text": ...}``; missing token
    counts are estimated with :func:`approx_tokens`. Other keys are ignored.

    A request finds its rows by ``example_id``; if there is none, by the question text of that
    example (known from ``prepare``); if none again, by the prompt text (a row's ``prompt``).
    Questions and prompts match up to whitespace. Several rows for one question are its samples, in
    file order: ``sample_index`` i takes the i-th. A request without a row is a non-retryable
    :class:`TeacherCallError`; a malformed file is a :class:`DataError` when the backend is built.

    ``Completion.meta`` says where the text came from (``recorded_from``: file and line), and carries
    ``recorded_cost_usd`` (what the row says it cost) and ``recorded_backend`` when the row has them.
    """

    name = "recorded"
    cacheable = False
    max_concurrency = 1

    def __init__(self, cfg: Mapping[str, Any]):
        path = cfg.get("path")
        if path is None or not str(path).strip():
            raise ConfigError("teacher.path is required for backend recorded: a JSON Lines file of answers")
        self.path = Path(str(path)).expanduser()
        try:
            self.batch_size = int(cfg.get("batch_size", 1024))
        except (TypeError, ValueError) as err:
            raise ConfigError(f"teacher.batch_size must be an integer ({err})") from err
        if self.batch_size < 1:
            raise ConfigError(f"teacher.batch_size must be at least 1 (got {self.batch_size})")
        self.rows = read_recorded(self.path)
        models = {row.model for row in self.rows if row.model}
        self.model: str = str(cfg.get("model") or (models.pop() if len(models) == 1 else "recorded"))
        self._by_id: dict[str, list[RecordedRow]] = {}
        self._by_question: dict[str, list[RecordedRow]] = {}
        self._by_prompt: dict[str, list[RecordedRow]] = {}
        for row in self.rows:
            if row.example_id is not None:
                self._by_id.setdefault(row.example_id, []).append(row)
            if row.question is not None:
                self._by_question.setdefault(_norm(row.question), []).append(row)
            if row.prompt is not None:
                self._by_prompt.setdefault(_norm(row.prompt), []).append(row)
        self._questions: dict[str, str] = {}

    def prepare(self, task: Any, examples: Sequence[Any]) -> None:
        self._questions = {str(example.id): _norm(example.question) for example in examples}
        covered = sum(1 for example in examples if self._rows_for(str(example.id)))
        if examples and not covered:
            log.warning("%s has no answer for any of the %d questions: is it for another task or split?",
                        self.path, len(examples))
        else:
            log.info("%s answers %d of %d questions", self.path, covered, len(examples))

    def _rows_for(self, example_id: str, prompt: str | None = None) -> list[RecordedRow]:
        rows = self._by_id.get(example_id)
        if not rows and example_id in self._questions:
            rows = self._by_question.get(self._questions[example_id])
        if not rows and prompt is not None:
            rows = self._by_prompt.get(_norm(prompt))
        return rows or []

    def complete(self, requests: Sequence[TeacherRequest]) -> list[Completion | TeacherCallError]:
        return [self._complete_one(request) for request in requests]

    def bound(self, request: TeacherRequest) -> Bound | None:
        """Exactly what the replay will charge: the row's tokens, and its ``cost_usd`` where it has one
        (a recorded answer may have cost more than today's price table says)."""
        found = self._complete_one(request)
        if not isinstance(found, Completion):
            return None
        return Bound(found.input_tokens, found.output_tokens, found.meta.get("recorded_cost_usd"))

    def _complete_one(self, request: TeacherRequest) -> Completion | TeacherCallError:
        rows = self._rows_for(request.example_id, request.prompt)
        if not rows:
            return TeacherCallError(f"no recorded answer for example {request.example_id!r} in {self.path}",
                                    retryable=False)
        if not 0 <= request.sample_index < len(rows):
            return TeacherCallError(
                f"example {request.example_id!r} has {len(rows)} recorded answer(s) in {self.path}; "
                f"sample {request.sample_index} needs {request.sample_index + 1}", retryable=False)
        row = rows[request.sample_index]
        meta: dict[str, Any] = {"recorded_from": f"{self.path}:{row.line}"}
        if row.cost_usd is not None:
            meta["recorded_cost_usd"] = row.cost_usd
        if row.backend is not None:
            meta["recorded_backend"] = row.backend
        return Completion(
            text=row.text,
            input_tokens=row.input_tokens if row.input_tokens is not None
            else approx_tokens(row.prompt if row.prompt is not None else request.prompt),
            output_tokens=row.output_tokens if row.output_tokens is not None else approx_tokens(row.text),
            model=row.model or self.model,
            meta=meta,
        )


def read_recorded(path: Path) -> list[RecordedRow]:
    """The rows of a recorded-answers file; a :class:`DataError` naming file and line if malformed."""
    if not path.is_file():
        raise DataError(f"recorded answers file {path} does not exist (teacher.path)")
    rows = [_parse_row(raw, where, number) for raw, where, number in read_objects(path)]
    if not rows:
        raise DataError(f"recorded answers file {path} has no rows")
    return rows


def _parse_row(raw: dict, where: str, number: int) -> RecordedRow:
    text = raw.get("text")
    if not isinstance(text, str):
        raise DataError(f"{where}: the row needs a \"text\" string (the teacher's answer)")
    example_id = raw.get("example_id")
    if isinstance(example_id, bool) or not isinstance(example_id, (str, int, type(None))):
        raise DataError(f"{where}: \"example_id\" must be a string or an integer, got {example_id!r}")
    example_id = str(example_id) if example_id is not None and str(example_id) != "" else None
    question = _optional_str(raw, "question", where)
    if example_id is None and not (question and question.strip()):
        raise DataError(f"{where}: the row needs an \"example_id\" or a \"question\" to say what it answers")
    return RecordedRow(
        line=number,
        text=text,
        example_id=example_id,
        question=question if question and question.strip() else None,
        prompt=_optional_str(raw, "prompt", where),
        input_tokens=_optional_count(raw, "input_tokens", where),
        output_tokens=_optional_count(raw, "output_tokens", where),
        cost_usd=_optional_cost(raw, where),
        model=_optional_str(raw, "model", where) or None,
        backend=_optional_str(raw, "backend", where) or None,
    )


def _optional_str(raw: Mapping[str, Any], key: str, where: str) -> str | None:
    value = raw.get(key)
    if value is not None and not isinstance(value, str):
        raise DataError(f"{where}: \"{key}\" must be a string, got {value!r}")
    return value


def _optional_count(raw: Mapping[str, Any], key: str, where: str) -> int | None:
    value = raw.get(key)
    if value is None:
        return None
    if (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0
            or value != int(value)):
        raise DataError(f"{where}: \"{key}\" must be a non-negative integer, got {value!r}")
    return int(value)


def _optional_cost(raw: Mapping[str, Any], where: str) -> float | None:
    value = raw.get("cost_usd")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise DataError(f"{where}: \"cost_usd\" must be a non-negative number, got {value!r}")
    return float(value)
