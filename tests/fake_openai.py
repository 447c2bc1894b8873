"""A fake OpenAI-compatible chat-completions server (127.0.0.1, ephemeral port) for tests and benchmarks.

``POST /v1/chat/completions`` works chain sums ("What is 12 + 7 - 3?") out step by step and answers
anything else with a text ending "The answer is 42.". Per server: ``latency_s`` per request, and a
seeded ``fail_rate`` of faults drawn from ``faults``: ``"429"`` (with a small ``Retry-After``) or any
other HTTP status (``"401"``'s body echoes the key it got, as careless servers do); ``"bad_json"``
(a 200 that is not JSON); ``"no_choices"`` (JSON without ``choices``); ``"stall"`` (``stall_s``,
longer than the client's time-out). It records every request (path, lower-cased headers, body,
fault, arrival time) and the most requests in flight at once, thread-safely::

    with FakeOpenAI(fail_rate=0.4) as server:  # teacher.base_url=server.base_url
        ...
"""

from __future__ import annotations

import json
import math
import random
import re
import threading
import time
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ALL_FAULTS = ("429", "500", "503", "bad_json", "no_choices", "stall")
_CHAIN = re.compile(r"What is (\d+(?:\s*[-+]\s*\d+)+)\s*\?")


def answer(prompt: str, salt: int = 0) -> str:
    """The teacher's text: asked to write a new question (ARTE's drafting), a new chain sum; else a
    worked chain sum, else a fixed guess."""
    if "Write one new question" in prompt:
        rng = random.Random(f"{prompt}:{salt}")
        terms = [str(rng.randint(1, 60)) for _ in range(rng.randint(2, 3))]
        expression = terms[0] + "".join(f" {rng.choice('+-')} {t}" for t in terms[1:])
        return f"Question: What is {expression}?"
    match = _CHAIN.search(prompt)
    if not match:
        return "Let me think about this step by step. The answer is 42."
    numbers = [int(n) for n in re.findall(r"\d+", match.group(1))]
    ops = re.findall(r"[-+]", match.group(1))
    total, steps = numbers[0], []
    for op, n in zip(ops, numbers[1:]):
        new = total + n if op == "+" else total - n
        steps.append(f"{total} {op} {n} = {new}.")
        total = new
    return f"{' '.join(steps)} The answer is {total}."


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a stalled handler does not hold up shutdown
    request_queue_size = 128  # the default backlog of 5 drops connections when many clients start at once


REASONING = "First I read the numbers. Then I add and subtract them from left to right."


def _completion(body: dict, salt: int, cached_tokens: int = 0, reasoning: str | None = None,
                n_supported: bool = True) -> dict:
    """A chat completion; ``reasoning``: "field" answers as a reasoning model behind vLLM's parser
    (``reasoning_content``), "think" puts a ``<think>`` block in the content."""
    prompt = "\n".join(str(m.get("content", "")) for m in body.get("messages", []))
    text = answer(prompt, salt=salt)
    message = {"role": "assistant", "content": text}
    thought = math.ceil(len(REASONING) / 4) if reasoning else 0
    if reasoning == "field":
        message["reasoning_content"] = REASONING
    elif reasoning == "think":
        message["content"] = f"<think>{REASONING}</think>\n{text}"
    usage = {"prompt_tokens": math.ceil(len(prompt) / 4), "completion_tokens": math.ceil(len(text) / 4) + thought}
    usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
    if thought:
        usage["completion_tokens_details"] = {"reasoning_tokens": thought}
    if cached_tokens:
        usage["prompt_tokens_details"] = {"cached_tokens": min(cached_tokens, usage["prompt_tokens"])}
    choices = [{"index": 0, "message": message, "finish_reason": "stop", "logprobs": None}]
    for i in range(1, int(body.get("n") or 1) if n_supported else 1):  # more samples of the same prompt
        other = f"{text} (sample {i})"
        choices.append({"index": i, "message": {"role": "assistant", "content": other}, "finish_reason": "stop",
                        "logprobs": None})
        usage["completion_tokens"] += math.ceil(len(other) / 4)
        usage["total_tokens"] += math.ceil(len(other) / 4)
    return {"id": f"chatcmpl-{salt}", "object": "chat.completion", "created": int(time.time()),
            "model": body.get("model", "fake"), "usage": usage, "choices": choices}


class FakeOpenAI:
    """Also a fake Batch API: ``POST /v1/files`` (multipart upload), ``POST /v1/batches``,
    ``GET /v1/batches/{id}`` and ``GET /v1/batches``, ``GET /v1/files/{id}/content``. A batch completes
    ``batch_latency_s`` after it was created; ``batch_fail_rate`` of its requests fail (seeded), and
    with ``batch_expire_after=n`` it expires with only its first n requests answered. ``batches``
    holds every batch created (what was submitted, and so paid for)."""

    def __init__(self, *, fail_rate: float = 0.0, faults: Sequence[str] = ALL_FAULTS, latency_s: float = 0.0,
                 stall_s: float = 1.0, retry_after_s: float = 0.02, seed: int = 0, cached_tokens: int = 0,
                 batch_latency_s: float = 0.0, batch_fail_rate: float = 0.0, batch_expire_after: int | None = None,
                 reasoning: str | None = None, rpm_limit: int | None = None, window_s: float = 60.0,
                 n_supported: bool = True, bill_output_tokens: int | None = None):
        self.fail_rate, self.faults, self.latency_s = fail_rate, tuple(faults), latency_s
        self.stall_s, self.retry_after_s = stall_s, retry_after_s
        self.cached_tokens, self.reasoning, self.n_supported = cached_tokens, reasoning, n_supported
        # a per-window request limit: past it a 429 with Retry-After; every answer says what is left
        self.rpm_limit, self.window_s = rpm_limit, window_s
        self.limited: list[float] = []  # arrival times of the requests the limit counted
        self.rate_limited = 0  # 429s sent for it
        self.batch_latency_s, self.batch_fail_rate, self.batch_expire_after = batch_latency_s, batch_fail_rate, batch_expire_after
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self._batch_rng = random.Random(seed + 1)
        self.requests: list[dict[str, Any]] = []  # {"path", "headers", "body", "fault", "time"}
        # the completions sent whole (their bodies): what a real server would bill
        self.answered: list[dict[str, Any]] = []
        # a server that bills this many output tokens whatever max_tokens it was sent
        self.bill_output_tokens = bill_output_tokens
        self.in_flight = self.max_in_flight = 0
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._httpd = _Server(("127.0.0.1", 0), _handler(self))
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_port}/v1"

    @property
    def count(self) -> int:
        with self._lock:
            return len(self.requests)

    def wait_quiet(self, quiet_s: float = 0.2) -> int:
        """The request count once nothing new arrived for ``quiet_s``: a request a client timed out on
        before this server got to it (a busy machine) is still counted, after the client moved on."""
        while True:
            with self._lock:
                last = self.requests[-1]["time"] if self.requests else 0.0
            if time.monotonic() - last >= quiet_s:
                return self.count
            time.sleep(quiet_s / 4)

    def prompts(self) -> list[str]:
        """The last (user) message of every request received, in arrival order."""
        with self._lock:
            return [r["body"]["messages"][-1]["content"] for r in self.requests if r["body"].get("messages")]

    def start(self) -> FakeOpenAI:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _arrive(self, path: str, headers: dict[str, str], body: Any) -> str | None:
        """Record a request; the fault to inject, if any."""
        with self._lock:
            fault = self._rng.choice(self.faults) if self._rng.random() < self.fail_rate else None
            self.requests.append({"path": path, "headers": headers, "body": body, "fault": fault,
                                  "time": time.monotonic()})
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            return fault

    def _leave(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def _rate_limit(self) -> dict[str, str] | None:
        """None: over the limit (answer 429); else the x-ratelimit headers of an accepted request."""
        if self.rpm_limit is None:
            return {}
        with self._lock:
            now = time.monotonic()
            self.limited = [t for t in self.limited if now - t < self.window_s]
            if len(self.limited) >= self.rpm_limit:
                return None
            self.limited.append(now)
            reset = self.window_s - (now - self.limited[0])
            return {"x-ratelimit-limit-requests": str(self.rpm_limit),
                    "x-ratelimit-remaining-requests": str(self.rpm_limit - len(self.limited)),
                    "x-ratelimit-reset-requests": f"{max(reset, 0.001) * 1000:.0f}ms"}

    # -- the Batch API ----------------------------------------------------------------------------
    def _new_file(self, content: bytes) -> str:
        with self._lock:
            file_id = f"file-{len(self.files)}"
            self.files[file_id] = content
            return file_id

    def _create_batch(self, body: dict) -> dict:
        with self._lock:
            batch_id = f"batch_{len(self.batches)}"
            lines = [json.loads(line) for line in self.files[body["input_file_id"]].decode().splitlines() if line.strip()]
            self.batches[batch_id] = {"id": batch_id, "created": time.monotonic(), "input": lines,
                                      "input_file_id": body["input_file_id"], "metadata": body.get("metadata") or {},
                                      "status": "validating", "output_file_id": None, "error_file_id": None}
        return self._batch_view(batch_id)

    def _batch_view(self, batch_id: str) -> dict:
        with self._lock:
            batch = self.batches[batch_id]
            if batch["status"] in ("validating", "in_progress") and \
                    time.monotonic() - batch["created"] >= self.batch_latency_s:
                self._finish(batch)
            elif batch["status"] == "validating":
                batch["status"] = "in_progress"
            done = batch.get("counts", {"completed": 0, "failed": 0})
            return {"id": batch_id, "object": "batch", "endpoint": "/v1/chat/completions", "errors": None,
                    "input_file_id": batch["input_file_id"], "completion_window": "24h", "status": batch["status"],
                    "output_file_id": batch["output_file_id"], "error_file_id": batch["error_file_id"],
                    "created_at": int(time.time()), "metadata": batch["metadata"],
                    "request_counts": {"total": len(batch["input"]), **done}}

    def _finish(self, batch: dict) -> None:
        out, err = [], []
        for i, line in enumerate(batch["input"]):
            cid = line["custom_id"]
            if self.batch_expire_after is not None and i >= self.batch_expire_after:
                err.append({"id": f"req_{i}", "custom_id": cid, "response": None,
                            "error": {"code": "batch_expired", "message": "not completed in time"}})
            elif self._batch_rng.random() < self.batch_fail_rate:
                err.append({"id": f"req_{i}", "custom_id": cid, "response": {"status_code": 500, "body": {
                    "error": {"message": "injected batch item failure"}}}, "error": None})
            else:
                body = _completion(line["body"], salt=hash(cid) % 10_000, cached_tokens=self.cached_tokens)
                out.append({"id": f"req_{i}", "custom_id": cid, "response": {"status_code": 200, "body": body},
                            "error": None})
        batch["status"] = "expired" if self.batch_expire_after is not None else "completed"
        batch["counts"] = {"completed": len(out), "failed": len(err)}
        for name, rows in (("output_file_id", out), ("error_file_id", err)):
            if rows:
                file_id = f"file-{len(self.files)}"
                self.files[file_id] = "".join(json.dumps(r) + "\n" for r in rows).encode()
                batch[name] = file_id


def _handler(server: FakeOpenAI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # quiet
            pass

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0].rstrip("/")
            if path.endswith("/batches"):
                with server._lock:
                    ids = list(server.batches)
                return self._send(200, {"object": "list", "data": [server._batch_view(i) for i in reversed(ids)],
                                        "has_more": False})
            if "/batches/" in path:
                batch_id = path.rsplit("/", 1)[1]
                if batch_id not in server.batches:
                    return self._send(404, {"error": {"message": f"no batch {batch_id}"}})
                return self._send(200, server._batch_view(batch_id))
            if path.endswith("/content") and "/files/" in path:
                file_id = path.split("/files/", 1)[1].split("/", 1)[0]
                return self._send(200, server.files.get(file_id, b""), {"Content-Type": "application/octet-stream"})
            self._send(404, {"error": {"message": f"no route {self.path}"}})

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.path.rstrip("/").endswith("/files"):
                return self._upload(raw)
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                body = {"raw": raw.decode(errors="replace")}
            if self.path.rstrip("/").endswith("/batches"):
                return self._send(200, server._create_batch(body))
            headers = {k.lower(): v for k, v in self.headers.items()}
            fault = server._arrive(self.path, headers, body)
            try:
                time.sleep(server.latency_s)
                self._respond(body, headers, fault)
            except OSError:  # the client gave up (a stall it timed out on, a killed process)
                pass
            finally:
                server._leave()

        def _upload(self, raw: bytes) -> None:
            from email.parser import BytesParser
            from email.policy import default

            message = BytesParser(policy=default).parsebytes(
                b"Content-Type: " + self.headers["Content-Type"].encode() + b"\r\n\r\n" + raw)
            content = next(part.get_payload(decode=True) for part in message.iter_parts() if part.get_filename())
            file_id = server._new_file(content)
            self._send(200, {"id": file_id, "object": "file", "bytes": len(content), "created_at": int(time.time()),
                             "filename": "batch.jsonl", "purpose": "batch", "status": "processed"})

        def _respond(self, body: dict, headers: dict[str, str], fault: str | None) -> None:
            if not self.path.rstrip("/").endswith("/chat/completions"):
                return self._send(404, {"error": {"message": f"no route {self.path}"}})
            if fault == "stall":
                time.sleep(server.stall_s)
            elif fault == "bad_json":
                return self._send(200, b'{"id": "chatcmpl-x", "choices": [')
            elif fault == "no_choices":
                return self._send(200, {"id": "chatcmpl-x", "object": "chat.completion", "model": body.get("model")})
            elif fault is not None:
                key = headers.get("authorization", "").removeprefix("Bearer ")
                message = f"Incorrect API key provided: {key}" if fault == "401" else f"injected HTTP {fault}"
                extra = {"Retry-After": str(server.retry_after_s)} if fault == "429" else {}
                return self._send(int(fault), {"error": {"message": message, "type": "fake"}}, extra)
            limit_headers = server._rate_limit()
            if limit_headers is None:
                server.rate_limited += 1
                return self._send(429, {"error": {"message": "rate limit reached", "type": "requests"}},
                                  {"Retry-After": f"{server.window_s:.3f}"})
            payload = _completion(body, salt=server.count, cached_tokens=server.cached_tokens,
                                  reasoning=server.reasoning, n_supported=server.n_supported)
            if server.bill_output_tokens is not None:
                usage = payload["usage"]
                usage["completion_tokens"] = server.bill_output_tokens
                usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
            self._send(200, payload, limit_headers)
            with server._lock:
                server.answered.append(body)

        def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
            data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

    return Handler
