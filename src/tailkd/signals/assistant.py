"""What every teaching assistant is: what it judges (:class:`Attempt`), what it answers
(:class:`TAScore`), and the :class:`TeachingAssistant` protocol the signals use it through. Pure
Python: the rule-based verifier needs no torch, the model TAs of :mod:`.ta` bring it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from tailkd.tasks import Example

if TYPE_CHECKING:
    from tailkd.models import Student


@dataclass(frozen=True)
class Attempt:
    """What the TA judges: a question and one attempt at it (a rationale and an answer), the student's or
    the teacher's."""

    example: Example
    rationale: str | None
    answer: str | None


@dataclass(frozen=True)
class TAScore:
    confidence: float
    mean_logprob: float | None = None
    answer_prob: float | None = None


class TeachingAssistant(Protocol):
    """A TA's identity, which keys its cached scores with the texts it read: ``model`` (the scoring
    model, None for a rule), ``confidence`` (what its confidence reads) and ``batch_size`` (None where
    scores do not depend on batching) and ``version`` (how it computes: a change that moves its numbers,
    even by rounding, bumps it, so that scores cached by the earlier code are not served as its own)."""

    model: Student | None
    version: int
    confidence: str | None
    batch_size: int | None

    def key(self, item: Attempt) -> Any:
        """Everything the score of ``item`` depends on besides the TA's identity (the texts it reads), as
        JSON: the signal cache's key."""
        ...

    def score(self, items: Sequence[Attempt], desc: str = "TA: scoring") -> list[TAScore]:
        """One score per item, in order; ``desc`` names the progress."""
        ...
