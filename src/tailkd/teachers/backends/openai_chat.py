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
from tailkd.teachers.annotation import approx_tokens
from tailkd.teachers.backends.openai_wire import TOKEN_PARAMS, ChatFormat, completion_from
from tailkd.teachers.backends.protocol import Completion, TeacherCallError, TeacherRequest
from tailkd.teachers.ratelimit import RateLimiter, retry_after
from tailkd.teachers.settings import check_teacher_cfg

_RETRYABLE_STATUS = {408, 409, 425, 429}
_FATAL_STATUS = {401, 403, 404}  # bad key, no access, unknown model: every other request fails too


def _retry_after(response: Any) -> float | None:
    return retry_after(getattr(response, "headers", None))


class OpenAIBackend:
    name = "openai"
    cacheable = True
    batch_size = 1
    # the server says what it billed, and may bill more than the limit sent: the collector checks
    billed_by_server = True

    def __init__(self, cfg: Mapping[str, Any]):
        check_teacher_cfg(cfg)  # a rate limit of 0 or a word would fail inside the client, on every request
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
        # reasoning models (o-series, DeepSeek-R1-style servers): their own output limit, no sampling knobs
        token_param = str(cfg.get("token_limit_param") or "max_tokens")
        if token_param not in TOKEN_PARAMS:
            raise ConfigError(f"teacher.token_limit_param={token_param!r}: choose one of {list(TOKEN_PARAMS)}")
        self.format = ChatFormat(self.model, token_param, send_temperature=bool(cfg.get("send_temperature", True)),
                                 send_stop=bool(cfg.get("send_stop", True)),  # false for models that refuse stop (o-series)
                                 reasoning_effort=cfg.get("reasoning_effort"))
        self.batch = None
        if self.mode == "batch":
            from tailkd.teachers.backends.openai_batch import BatchRunner

            settings = dict(cfg.get("batch") or {})
            self.batch = BatchRunner(settings, body=self.format.body, backend=self.name, identity=self.identity,
                                     model=self.model)
            # one call of complete() is one batch job; several jobs may wait at once
            self.batch_size = int(settings.get("max_requests_per_batch", 1000))
            self.max_concurrency = int(settings.get("max_in_flight", 4))
            if self.batch_size < 1 or self.max_concurrency < 1:
                raise ConfigError("teacher.batch.max_requests_per_batch and max_in_flight must be >= 1")
        self.limiter = RateLimiter(cfg.get("max_requests_per_minute"), cfg.get("max_tokens_per_minute"),
                                   window_s=float(cfg.get("rate_limit_window_s") or 60.0),
                                   in_flight=self.max_concurrency)
        self.read_limit_headers = bool(cfg.get("rate_limit_headers", True))
        # a server never reached (wrong base_url, not started) stops the run after this many connection
        # failures in a row, instead of failing every question of the pool one by one
        self.max_connection_failures = int(cfg.get("max_connection_failures", 5))
        self._connection_failures = 0
        self._reached = False
        # several samples of one prompt in one request (n): the prompt is billed once
        self.samples_per_request = bool(cfg.get("samples_per_request", False))
        if self.samples_per_request and self.mode == "live":
            self.batch_size = max(1, int(cfg.get("n_samples", 1)))  # a question's samples reach complete() together
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

    def complete(self, requests: Sequence[TeacherRequest]) -> list[Completion | TeacherCallError]:
        if self.batch is not None:
            key = os.environ.get(self.api_key_env)
            if not key:
                return [TeacherCallError(f"environment variable {self.api_key_env} is not set", retryable=False)
                        ] * len(requests)
            return [_scrubbed(r, key) for r in self.batch.complete(requests, self._client(key))]
        if self.samples_per_request and len(requests) > 1:
            return self._grouped(requests)
        return [self._single(r) for r in requests]

    def _grouped(self, requests: Sequence[TeacherRequest]) -> list[Completion | TeacherCallError]:
        """Requests that differ only in their sample index go out as one request with ``n``; a server
        that answers fewer choices than asked (no ``n`` support) gets the rest as separate requests."""
        groups: dict[tuple, list[int]] = {}
        for i, r in enumerate(requests):
            groups.setdefault((r.messages, r.params), []).append(i)
        out: list[Completion | TeacherCallError | None] = [None] * len(requests)
        for members in groups.values():
            first = requests[members[0]]
            answers = self._several(first, len(members)) if len(members) > 1 else [self._single(first)]
            for position, i in enumerate(members):
                if position < len(answers) and (position == 0 or isinstance(answers[position], Completion)):
                    out[i] = answers[position]
                else:  # not answered in the group: on its own
                    out[i] = self._single(requests[i])
        return out  # type: ignore[return-value]

    def _several(self, request: TeacherRequest, n: int) -> list[Completion | TeacherCallError]:
        """One request asking for ``n`` choices: a completion (or error) per choice returned, the first
        carrying the prompt's tokens, every choice its own output tokens."""
        key = os.environ.get(self.api_key_env)
        if not key:
            return [TeacherCallError(f"environment variable {self.api_key_env} is not set", retryable=False)]
        response = self._create(key, {**self.format.body(request), "n": n}, request, n)
        if isinstance(response, TeacherCallError):
            return [response]
        choices = list(getattr(response, "choices", None) or [])
        usage = getattr(response, "usage", None)
        prompt_tokens = getattr(usage, "prompt_tokens", None) or approx_tokens(request.prompt)
        texts = [getattr(getattr(c, "message", None), "content", None) for c in choices]
        lengths = [len(t) if isinstance(t, str) else 0 for t in texts]
        total_out = getattr(usage, "completion_tokens", None)
        out: list[Completion | TeacherCallError] = []
        for i, (choice, text) in enumerate(zip(choices, texts)):
            if not isinstance(text, str) or not text.strip():
                out.append(TeacherCallError("a choice without content", retryable=True))
                continue
            single = type("One", (), {"choices": [choice], "usage": None, "model": getattr(response, "model", None)})
            completion = completion_from(single, request, text, self.model)
            # the prompt is billed once (the first choice carries it); output split by length
            completion.input_tokens = int(prompt_tokens) if i == 0 else 0
            if total_out:
                completion.output_tokens = round(total_out * lengths[i] / max(1, sum(lengths)))
            completion.meta["choice"] = i
            out.append(completion)
        return out

    def _single(self, request: TeacherRequest) -> Completion | TeacherCallError:
        key = os.environ.get(self.api_key_env)
        if not key:
            return TeacherCallError(f"environment variable {self.api_key_env} is not set", retryable=False)
        response = self._create(key, self.format.body(request), request, 1)
        if isinstance(response, TeacherCallError):
            return response
        return self._parse(response, request, key)

    def _create(self, key: str, kwargs: dict, request: TeacherRequest, n: int) -> Any:
        """One chat completion request under the rate limiter: the parsed response, or the error it
        became (a 429 pauses every worker, not only this one)."""
        import openai

        self.limiter.acquire(sum(len(c.encode()) for _, c in request.messages) + n * int(request.param("max_tokens") or 0))
        try:
            raw = self._client(key).chat.completions.with_raw_response.create(**kwargs)
            self._reached = True
            if self.read_limit_headers:
                self.limiter.observe(raw.headers)
            return raw.parse()
        except openai.APIStatusError as err:
            self._reached = True
            retryable = err.status_code in _RETRYABLE_STATUS or err.status_code >= 500
            wait = _retry_after(err.response)
            if self.read_limit_headers:
                self.limiter.observe(getattr(err.response, "headers", None))
            if err.status_code == 429:
                self.limiter.pause(wait if wait is not None else 1.0)
            return TeacherCallError(_scrub(f"HTTP {err.status_code}: {err.message}", key),
                                    retryable=retryable, retry_after=wait,
                                    fatal=err.status_code in _FATAL_STATUS)
        except openai.APIConnectionError as err:  # time-outs included
            return self._connection_error(err, key)
        except Exception as err:  # a body that is not the JSON it should be
            return TeacherCallError(_scrub(f"malformed response ({type(err).__name__}: {err})", key), retryable=True)

    def _connection_error(self, err: Exception, key: str) -> TeacherCallError:
        """A request that got no answer: retryable, unless the server was never reached and
        ``max_connection_failures`` connections in a row failed; then no request can succeed and the run
        stops with one message. A time-out after connecting means the server is there, only slow."""
        import openai

        message = _scrub(f"{type(err).__name__}: {err}", key)
        connected = isinstance(err, openai.APITimeoutError) and type(err.__cause__).__name__ != "ConnectTimeout"
        with self._lock:  # never reached: every attempt so far failed to connect, so these are in a row
            self._reached = self._reached or connected
            self._connection_failures += 0 if connected else 1
            failures = self._connection_failures
        if self._reached or failures < self.max_connection_failures:
            return TeacherCallError(message, retryable=True)
        return TeacherCallError(
            f"the server at {self.base_url or 'https://api.openai.com/v1'} is unreachable: {failures} connections "
            f"failed and none ever got an answer (last: {message}); check teacher.base_url and that the server "
            f"is running", retryable=False, fatal=True)

    def _parse(self, response: Any, request: TeacherRequest, key: str) -> Completion | TeacherCallError:
        try:
            message = response.choices[0].message
            text = message.content
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
