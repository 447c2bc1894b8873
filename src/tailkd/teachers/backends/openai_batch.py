"""The OpenAI Batch API behind the openai backend (``teacher.mode=batch``): half the price, hours of wait.

A call of :meth:`BatchRunner.complete` is one batch job: its requests are written as the Batch API's
JSON Lines (``custom_id`` = the request's cache key), uploaded (``/v1/files``), submitted
(``/v1/batches``), polled every ``poll_s`` and their results downloaded, all through the ``openai``
client. The collector has already reserved every request's worst case, so caps hold.

Nothing paid for is lost to a kill: the job's request keys are written to the cache database *before*
the batch is created, its id right after (and the batch carries the keys' digest in its metadata, so
a kill between the two is recovered from the server's batch list). A restart that asks for any of
those keys polls the same batch and never submits them again. Answers of a finished job that the
current call did not ask for go straight into the cache. Failed and expired items come back as
retryable errors, so the collector resubmits them in a new batch; answered ones are kept.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from tqdm.auto import tqdm

from tailkd.jsonl import parse_objects
from tailkd.teachers.backends.openai_wire import completion_from, message_content
from tailkd.teachers.backends.protocol import Completion, TeacherCallError, TeacherRequest

log = logging.getLogger(__name__)

FINAL = ("completed", "expired", "failed", "cancelled")


class BatchRunner:
    """Batch jobs of chat-completion requests: ``body`` makes a request's body (the backend's
    :class:`~tailkd.teachers.backends.openai_wire.ChatFormat`); ``backend`` and ``identity`` key the
    requests in the teacher cache (their ``custom_id``), as the collector keys them; ``model`` names the
    teacher where a response does not."""

    def __init__(self, settings: Mapping[str, Any], *, body: Callable[[TeacherRequest], dict[str, Any]],
                 backend: str, identity: str, model: str, sleep: Callable[[float], None] = time.sleep):
        self.body, self.backend, self.identity, self.model = body, backend, identity, model
        self.poll_s = float(settings.get("poll_s", 30.0))
        self.max_wait_s = float(settings.get("max_wait_s", 24 * 3600.0))
        self.sleep = sleep
        self.cache = None  # the collector's CompletionCache (attach): where jobs are recorded
        self.price = None
        self.progress = True

    def attach(self, cache, price, progress: bool = True) -> None:
        self.cache, self.price, self.progress = cache, price, progress

    def complete(self, requests: Sequence[TeacherRequest], client) -> list[Completion | TeacherCallError]:
        """One batch job of ``requests`` through ``client`` (an ``openai.OpenAI``)."""
        if self.cache is None:
            raise RuntimeError("teacher.mode=batch needs the teacher cache: the collector attaches it")
        keys = [r.cache_key(self.backend, self.identity) for r in requests]
        by_key = dict(zip(keys, requests))
        results: dict[str, Completion | TeacherCallError] = {}
        for digest, batch_id, job_keys in self.cache.batch_jobs(keys):  # submitted before: a restart
            batch_id = batch_id or self._submitted(client, digest)
            if batch_id is None:  # killed before the batch was created: nothing was paid
                self.cache.finish_batch_job(digest, "never_submitted")
                continue
            log.info("resuming batch %s (%d requests) instead of submitting them again", batch_id, len(job_keys))
            results.update(self._wait(client, batch_id, digest, by_key))
        todo = [k for k in keys if k not in results]
        if todo:
            results.update(self._submit(client, todo, by_key))
        return [results.get(k) or TeacherCallError("no answer in the batch's output", retryable=True) for k in keys]

    # -- submission --------------------------------------------------------------------------------
    def _submit(self, client, keys: list[str], by_key: Mapping[str, TeacherRequest]) -> dict:
        import openai

        digest = hashlib.sha256("\n".join(sorted(keys)).encode()).hexdigest()[:32]
        self.cache.record_batch_job(digest, keys)  # before anything can be paid
        lines = "".join(json.dumps({"custom_id": k, "method": "POST", "url": "/v1/chat/completions",
                                    "body": self.body(by_key[k])}) + "\n" for k in keys)
        try:
            uploaded = client.files.create(file=("tailkd-batch.jsonl", lines.encode()), purpose="batch")
            batch = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                                          completion_window="24h", metadata={"tailkd_digest": digest})
        except openai.APIStatusError as err:
            self.cache.finish_batch_job(digest, "rejected")
            error = TeacherCallError(f"batch submission: HTTP {err.status_code}: {err.message}",
                                     retryable=err.status_code == 429 or err.status_code >= 500,
                                     fatal=err.status_code in (401, 403, 404))
            return dict.fromkeys(keys, error)
        except (openai.APITimeoutError, openai.APIConnectionError) as err:
            # the batch may have been created: keep the job; the next call finds it by its digest
            return dict.fromkeys(keys, TeacherCallError(f"batch submission: {type(err).__name__}", retryable=True))
        self.cache.record_batch_job(digest, keys, batch.id)
        log.info("submitted batch %s: %d requests", batch.id, len(keys))
        return self._wait(client, batch.id, digest, by_key)

    def _submitted(self, client, digest: str) -> str | None:
        """The id of a batch created for ``digest`` whose id was never recorded (killed in between)."""
        try:
            for batch in client.batches.list(limit=100):
                if (getattr(batch, "metadata", None) or {}).get("tailkd_digest") == digest:
                    return batch.id
        except Exception as err:  # cannot list: treat as not submitted only if the server says so
            log.warning("cannot list batches to recover job %s (%s)", digest, err)
        return None

    # -- waiting and reading -----------------------------------------------------------------------
    def _wait(self, client, batch_id: str, digest: str, by_key: Mapping[str, TeacherRequest]) -> dict:
        started = time.monotonic()
        bar = tqdm(desc=f"batch {batch_id}", unit="req", disable=not self.progress)
        while True:
            try:
                batch = client.batches.retrieve(batch_id)
            except Exception as err:  # a polling hiccup is no reason to give up a paid batch
                log.warning("polling batch %s failed (%s); trying again", batch_id, err)
                batch = None
            if batch is not None:
                counts = batch.request_counts
                if counts is not None:
                    bar.total = counts.total
                    bar.n = (counts.completed or 0) + (counts.failed or 0)
                bar.set_postfix(status=batch.status)
                if batch.status in FINAL:
                    break
            if time.monotonic() - started > self.max_wait_s:
                bar.close()
                message = (f"batch {batch_id} still {getattr(batch, 'status', 'unknown')} after "
                           f"teacher.batch.max_wait_s={self.max_wait_s:.0f}; it stays recorded: run again to collect it")
                return dict.fromkeys(by_key, TeacherCallError(message, retryable=False))
            self.sleep(self.poll_s)
        bar.close()
        out = self._read(client, batch, by_key)
        self.cache.finish_batch_job(digest, batch.status)
        return out

    def _read(self, client, batch, by_key: Mapping[str, TeacherRequest]) -> dict:
        out: dict[str, Completion | TeacherCallError] = {}
        for file_id in (batch.output_file_id, batch.error_file_id):
            if not file_id:
                continue
            for row, _, _ in parse_objects(client.files.content(file_id).text.splitlines(), f"batch file {file_id}"):
                key, response = row.get("custom_id"), row.get("response") or {}
                body = response.get("body") or {}
                text = message_content(body)
                if response.get("status_code") == 200 and text:
                    request = by_key.get(key)
                    completion = completion_from(body, request or _Stub(), text, self.model)
                    completion.meta["batch"] = True
                    if request is not None:
                        out[key] = completion
                    else:  # paid for by an earlier call that did not live to read it: keep it
                        self.cache.put(key, self.backend, completion,
                                       self.price.cost(completion.input_tokens, completion.output_tokens))
                else:
                    error = row.get("error") or body.get("error") or {}
                    out.setdefault(key, TeacherCallError(
                        f"batch {batch.id} item: {error.get('code') or response.get('status_code')}: "
                        f"{error.get('message', '')}", retryable=True))
        status = batch.status
        for key in by_key:  # a failed or cancelled batch answers nothing: try those again
            out.setdefault(key, TeacherCallError(f"batch {batch.id} ended {status} without this request",
                                                 retryable=status != "failed"))
        return {k: v for k, v in out.items() if k in by_key}


class _Stub:
    prompt = ""
