"""Any OpenAI-compatible chat-completions server (OpenAI, vLLM, llama.cpp's server, ...).

The API key is read from the environment variable ``teacher.api_key_env`` at call time and never
stored in the config, logged, or left in an error message.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from tailkd.errors import ConfigError
from tailkd.teachers.backends.base import Completion, TeacherCallError, TeacherRequest
from tailkd.teachers.base import approx_tokens

_RETRYABLE_STATUS = {408, 409, 425, 429}
_FATAL_STATUS = {401, 403, 404}  # bad key, no access, unknown model: every other request fails too


def _retry_after(response: Any) -> float | None:
    headers = getattr(response, "headers", None) or {}
    value = headers.get("retry-after") or headers.get("Retry-After")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None  # an HTTP date: rare from API servers; the backoff covers it


class OpenAIBackend:
    name = "openai"
    cacheable = True
    batch_size = 1

    def __init__(self, cfg: Mapping[str, Any]):
        self.model: str = cfg.get("model") or ""
        if not self.model:
            raise ConfigError("teacher.model is required for the openai backend (e.g. gpt-4o-mini)")
        self.base_url: str | None = cfg.get("base_url")
        # the same model name on another server (a local vLLM, a proxy) is another teacher
        self.identity = f"{self.model}@{self.base_url or 'https://api.openai.com/v1'}"
        self.api_key_env: str = cfg.get("api_key_env") or "OPENAI_API_KEY"
        self.timeout_s = float(cfg.get("timeout_s", 60.0))
        self.max_concurrency = int(cfg.get("max_concurrency", 8))
        if self.max_concurrency < 1:
            raise ConfigError(f"teacher.max_concurrency must be >= 1 (got {self.max_concurrency})")
        self.mode = str(cfg.get("mode") or "live")
        if self.mode not in ("live", "batch"):
            raise ConfigError(f"teacher.mode={self.mode!r} is unknown; choose live or batch")
        self.batch = None
        if self.mode == "batch":
            from tailkd.teachers.backends.openai_batch import BatchRunner

            settings = dict(cfg.get("batch") or {})
            self.batch = BatchRunner(self, settings)
            # one call of complete() is one batch job; several jobs may wait at once
            self.batch_size = int(settings.get("max_requests_per_batch", 1000))
            self.max_concurrency = int(settings.get("max_in_flight", 4))
            if self.batch_size < 1 or self.max_concurrency < 1:
                raise ConfigError("teacher.batch.max_requests_per_batch and max_in_flight must be >= 1")
        self._clients: dict[int, Any] = {}
        self._lock = threading.Lock()

    def prepare(self, task, examples) -> None:
        if not os.environ.get(self.api_key_env):
            raise ConfigError(
                f"the teacher's API key is not set: export {self.api_key_env}=... (teacher.api_key_env "
                f"names the variable; a local server that needs no key accepts any value)"
            )

    def _client(self, key: str):
        import openai

        # one client per key (thread-safe, keeps its connection pool); keyed by hash, not by the key
        with self._lock:
            client = self._clients.get(hash(key))
            if client is None:
                client = openai.OpenAI(api_key=key, base_url=self.base_url, max_retries=0, timeout=self.timeout_s)
                self._clients[hash(key)] = client
            return client

    def attach(self, cache, price, progress: bool = True) -> None:
        """The collector's cache and prices: batch jobs are recorded in the cache database."""
        if self.batch is not None:
            self.batch.attach(cache, price, progress)

    def request_body(self, request: TeacherRequest) -> dict[str, Any]:
        """The chat-completions request body (as sent live, and as a batch file's line holds it)."""
        body: dict[str, Any] = {"model": self.model, "messages": request.chat()}
        for name in ("temperature", "max_tokens", "top_p", "seed"):
            if request.param(name) is not None:
                body[name] = request.param(name)
        return body

    def complete(self, requests: Sequence[TeacherRequest]) -> list[Completion | TeacherCallError]:
        if self.batch is not None:
            key = os.environ.get(self.api_key_env)
            if not key:
                return [TeacherCallError(f"environment variable {self.api_key_env} is not set", retryable=False)
                        ] * len(requests)
            return [_scrubbed(r, key) for r in self.batch.complete(requests, key)]
        return [self._one(r) for r in requests]

    def _one(self, request: TeacherRequest) -> Completion | TeacherCallError:
        import openai

        key = os.environ.get(self.api_key_env)
        if not key:
            return TeacherCallError(f"environment variable {self.api_key_env} is not set", retryable=False)
        kwargs = self.request_body(request)
        try:
            response = self._client(key).chat.completions.create(**kwargs)
        except openai.APIStatusError as err:
            retryable = err.status_code in _RETRYABLE_STATUS or err.status_code >= 500
            return TeacherCallError(_scrub(f"HTTP {err.status_code}: {err.message}", key),
                                    retryable=retryable, retry_after=_retry_after(err.response),
                                    fatal=err.status_code in _FATAL_STATUS)
        except (openai.APITimeoutError, openai.APIConnectionError) as err:
            return TeacherCallError(_scrub(f"{type(err).__name__}: {err}", key), retryable=True)
        except Exception as err:  # a body that is not the JSON it should be
            return TeacherCallError(_scrub(f"malformed response ({type(err).__name__}: {err})", key), retryable=True)
        return self._parse(response, request, key)

    def _parse(self, response: Any, request: TeacherRequest, key: str) -> Completion | TeacherCallError:
        try:
            text = response.choices[0].message.content
        except (AttributeError, IndexError, TypeError):
            text = None
        if not isinstance(text, str) or not text.strip():
            return TeacherCallError(_scrub(f"malformed response: no message content in {response!r:.200}", key),
                                    retryable=True)
        return completion_from(response, request, text, self.model)


def _scrubbed(result, key: str):
    if isinstance(result, TeacherCallError):
        return TeacherCallError(_scrub(str(result), key), retryable=result.retryable, fatal=result.fatal)
    return result


def _scrub(message: str, key: str) -> str:
    return message.replace(key, "***") if key else message


def completion_from(response: Any, request: TeacherRequest, text: str, model: str) -> Completion:
    """A :class:`Completion` from a chat completion (an SDK object, or the dict a batch file holds):
    the usage's token counts, and its cached prompt tokens, which are billed at their own rate."""
    usage = _get(response, "usage")
    input_tokens = _get(usage, "prompt_tokens") or approx_tokens(request.prompt)
    output_tokens = _get(usage, "completion_tokens") or approx_tokens(text)
    cached = _get(_get(usage, "prompt_tokens_details"), "cached_tokens") or 0
    meta = {"cached_input_tokens": int(cached)} if cached else {}
    return Completion(text, int(input_tokens), int(output_tokens), _get(response, "model") or model, meta)


def _get(obj: Any, name: str) -> Any:
    if obj is None:
        return None
    return obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)
