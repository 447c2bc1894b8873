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

    def complete(self, requests: Sequence[TeacherRequest]) -> list[Completion | TeacherCallError]:
        return [self._one(r) for r in requests]

    def _one(self, request: TeacherRequest) -> Completion | TeacherCallError:
        import openai

        key = os.environ.get(self.api_key_env)
        if not key:
            return TeacherCallError(f"environment variable {self.api_key_env} is not set", retryable=False)
        kwargs: dict[str, Any] = {"model": self.model, "messages": request.chat()}
        for name in ("temperature", "max_tokens", "top_p", "seed"):
            if request.param(name) is not None:
                kwargs[name] = request.param(name)
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
        usage = getattr(response, "usage", None)
        input_tokens = getattr(usage, "prompt_tokens", None) or approx_tokens(request.prompt)
        output_tokens = getattr(usage, "completion_tokens", None) or approx_tokens(text)
        return Completion(text, int(input_tokens), int(output_tokens), getattr(response, "model", None) or self.model)


def _scrub(message: str, key: str) -> str:
    return message.replace(key, "***") if key else message
