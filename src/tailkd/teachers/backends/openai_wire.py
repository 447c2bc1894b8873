"""The chat-completions wire format, as a live request sends it and a Batch API file holds it: the body
a teacher's settings make of a :class:`TeacherRequest` (:class:`ChatFormat`), and the
:class:`Completion` read back from a response (an SDK object, or the dict a batch file holds)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tailkd.teachers.annotation import approx_tokens
from tailkd.teachers.backends.protocol import Completion, TeacherRequest

_THINK = re.compile(r"<think>(.*?)</think>", re.DOTALL)
TOKEN_PARAMS = ("max_tokens", "max_completion_tokens")
MAX_STOP_SEQUENCES = 4  # what OpenAI's chat completions accept


@dataclass(frozen=True)
class ChatFormat:
    """What a teacher's settings put into a request body: the model, the name of its output limit
    (reasoning models take ``max_completion_tokens``), whether it takes sampling settings and stop
    sequences (o-series models refuse them), and a reasoning effort."""

    model: str
    token_param: str = "max_tokens"
    send_temperature: bool = True
    send_stop: bool = True
    reasoning_effort: str | None = None

    def body(self, request: TeacherRequest) -> dict[str, Any]:
        """The chat-completions request body (as sent live, and as a batch file's line holds it)."""
        body: dict[str, Any] = {"model": self.model, "messages": request.chat()}
        sampling = ("temperature", "top_p") if self.send_temperature else ()
        for name in (*sampling, "seed"):
            if request.param(name) is not None:
                body[name] = request.param(name)
        if self.send_stop and request.param("stop"):
            # the chat API takes at most four; the collector cuts at every one of them after the answer
            body["stop"] = list(request.param("stop"))[:MAX_STOP_SEQUENCES]
        if request.param("max_tokens") is not None:  # the limit the budget reserved, reasoning tokens included
            body[self.token_param] = request.param("max_tokens")
        if self.reasoning_effort:
            body["reasoning_effort"] = self.reasoning_effort
        return body


def message_content(body: Mapping[str, Any]) -> str | None:
    """The first choice's text in a response body (a batch file's dict), None if it has none."""
    try:
        text = body["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        return None
    return text if isinstance(text, str) and text.strip() else None


def completion_from(response: Any, request: TeacherRequest, text: str, model: str) -> Completion:
    """A :class:`Completion` from a chat completion (an SDK object, or the dict a batch file holds):
    the usage's token counts (``completion_tokens`` includes a reasoning model's reasoning tokens, so
    they are priced), its cached prompt tokens (billed at their own rate), and a reasoning model's
    reasoning: ``reasoning_content`` (vLLM's reasoning parsers, DeepSeek), ``reasoning``, or a
    ``<think>`` block at the start of the content, which is taken out of the answer text."""
    usage = _get(response, "usage")
    message = _get(_first(_get(response, "choices")), "message")
    reasoning = _get(message, "reasoning_content") or _get(message, "reasoning")
    think = _THINK.search(text)
    if think:
        reasoning = reasoning or think.group(1).strip()
        text = (text[: think.start()] + text[think.end():]).strip()
    input_tokens = _get(usage, "prompt_tokens") or approx_tokens(request.prompt)
    output_tokens = _get(usage, "completion_tokens") or approx_tokens(text + (reasoning or ""))
    meta: dict[str, Any] = {}
    cached = _get(_get(usage, "prompt_tokens_details"), "cached_tokens") or 0
    if cached:
        meta["cached_input_tokens"] = int(cached)
    reasoning_tokens = _get(_get(usage, "completion_tokens_details"), "reasoning_tokens") or 0
    if reasoning_tokens:
        meta["reasoning_tokens"] = int(reasoning_tokens)
    if isinstance(reasoning, str) and reasoning.strip():
        meta["reasoning"] = reasoning.strip()
    return Completion(text, int(input_tokens), int(output_tokens), _get(response, "model") or model, meta)


def _first(items: Any) -> Any:
    try:
        return items[0] if items else None
    except (TypeError, IndexError, KeyError):
        return None


def _get(obj: Any, name: str) -> Any:
    if obj is None:
        return None
    return obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)
