"""What a teacher backend does: turn one request into one completion, or fail saying whether a retry
could help. Caching, budgets, retries, concurrency and parsing live in the collector, once for all."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class TeacherRequest:
    """One paid call: a question's chat messages, the decoding parameters, and which sample it is."""

    example_id: str
    messages: tuple[tuple[str, str], ...]  # (role, content) pairs
    params: tuple[tuple[str, Any], ...]  # sorted decoding parameters: temperature, max_tokens, ...
    sample_index: int = 0
    # what a backend that does not read prompts needs to know (the simulated teacher revising a student's
    # explanation: ("revise", text)); the messages already carry it, so it is no part of the cache key
    context: tuple[tuple[str, Any], ...] = ()

    def get(self, name: str, default: Any = None) -> Any:
        return dict(self.context).get(name, default)

    @property
    def prompt(self) -> str:
        return "\n\n".join(content for _, content in self.messages)

    def chat(self) -> list[dict[str, str]]:
        return [{"role": role, "content": content} for role, content in self.messages]

    def param(self, name: str, default: Any = None) -> Any:
        return dict(self.params).get(name, default)

    def cache_key(self, backend: str, model: str) -> str:
        """Content hash of everything that decides the answer, and nothing else (no question id).
        Stop sequences are left out: an answer bought without them is read after the same cut, so the
        answers a cache holds from before stops were sent stay usable (they were paid for)."""
        params = tuple(p for p in self.params if p[0] != "stop")
        payload = json.dumps(
            {"backend": backend, "model": model, "messages": self.messages, "params": params,
             "sample": self.sample_index},
            sort_keys=True, ensure_ascii=False, default=str,
        )
        return hashlib.sha256(payload.encode()).hexdigest()


@dataclass
class Completion:
    text: str
    input_tokens: int
    output_tokens: int
    model: str
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Bound:
    """The most one request can be charged, known before it is sent: tokens in and out, and the USD
    where the backend knows it better than the price table (a recorded row says what it cost)."""

    input_tokens: int
    output_tokens: int
    cost_usd: float | None = None


class TeacherCallError(Exception):
    """A call that did not produce a usable completion. ``retryable``: a later try may succeed (429,
    5xx, time-out, broken body); ``retry_after``: seconds the server asked us to wait, if it said;
    ``fatal``: no other request can succeed either (bad key, unknown model), so the run stops."""

    def __init__(self, message: str, *, retryable: bool, retry_after: float | None = None, fatal: bool = False):
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after
        self.fatal = fatal


class Backend(Protocol):
    """A teacher backend.

    ``complete`` gets at most ``batch_size`` requests and returns one result per request, in order;
    it never raises for a single request's failure, it returns a :class:`TeacherCallError` in its
    place. The collector runs up to ``max_concurrency`` calls of ``complete`` at once (threads), so
    a backend that holds a local model sets ``max_concurrency = 1`` and batches instead. Only
    ``cacheable`` backends go through the persistent cache (a replay or a simulation is free).
    ``prepare`` is called once before any request with the task and the questions that may be asked.

    A backend may define ``bound(request) -> Bound | None``: the most the request can be charged, when
    it knows better than the collector's generic bound (one token per prompt byte plus chat overhead,
    and the ``max_tokens`` sent). The budget reserves it, so a cap holds whatever the backend charges.
    """

    name: str
    model: str
    identity: str  # what the cache key names: the model, and for servers which server
    max_concurrency: int
    batch_size: int
    cacheable: bool

    def prepare(self, task: Any, examples: Sequence[Any]) -> None: ...

    def complete(self, requests: Sequence[TeacherRequest]) -> list[Completion | TeacherCallError]: ...
