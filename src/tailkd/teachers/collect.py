"""Buy teacher annotations for a task's training pool: selection order, cache, budget, concurrency,
retries and the ledger, once for every backend."""

from __future__ import annotations

import contextlib
import logging
import random
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

import jinja2
from tqdm.auto import tqdm

from tailkd import timing
from tailkd.errors import ConfigError
from tailkd.tasks import Example, Task
from tailkd.teachers.annotation import Annotation, approx_tokens
from tailkd.teachers.backends.protocol import Backend, Completion, TeacherCallError, TeacherRequest
from tailkd.teachers.budget import Budget, BudgetGuard, Spend
from tailkd.teachers.cache import CompletionCache
from tailkd.teachers.ledger import Ledger
from tailkd.teachers.pricing import Price

log = logging.getLogger(__name__)

# (pool, rng) -> the pool in buying order
Selector = Callable[[Sequence[Example], random.Random], list[Example]]


def select_random(pool: Sequence[Example], rng: random.Random) -> list[Example]:
    return rng.sample(list(pool), len(pool))


SELECTORS: dict[str, Selector] = {"random": select_random}


def get_selector(name: str) -> Selector:
    if name not in SELECTORS:
        raise ConfigError(f"budget.order={name!r} is unknown; choose one of {sorted(SELECTORS)}")
    return SELECTORS[name]


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter; a server's Retry-After is honoured when it asks for longer."""

    max_attempts: int = 5
    base_delay_s: float = 0.5
    max_delay_s: float = 30.0

    def delay(self, attempt: int, retry_after: float | None, rng: random.Random) -> float:
        backoff = min(self.max_delay_s, self.base_delay_s * 2**attempt) * rng.uniform(0.5, 1.5)
        return max(backoff, retry_after or 0.0)


# chat overhead per message, on top of one token per byte: an upper bound for any BPE tokenizer
_MESSAGE_OVERHEAD_TOKENS = 8
# the output limit sent with every request that names none: a cap can only hold for a limit that is sent
DEFAULT_MAX_TOKENS = 1024


def _describe(spend: Spend) -> str:
    return f"{spend.tokens} tokens, {spend.usd:.6f} USD"


def _capped(spent: Spend, budget: Budget) -> Spend:
    """``spent`` with every dimension held at its cap: spent minus this is what exceeded the caps."""
    return Spend(min(spent.queries, budget.max_queries) if budget.max_queries is not None else spent.queries,
                 min(spent.tokens, budget.max_tokens) if budget.max_tokens is not None else spent.tokens,
                 min(spent.usd, budget.max_usd) if budget.max_usd is not None else spent.usd)


@dataclass
class _Outcome:
    completion: Completion | None
    cost_usd: float
    error: str | None
    attempts: int


class Collector:
    def __init__(
        self,
        backend: Backend,
        task: Task,
        *,
        prompt: str,
        system_prompt: str | None = None,
        params: Mapping[str, Any] | None = None,
        n_samples: int = 1,
        price: Price = Price(),
        budget: Budget = Budget(),
        cache: CompletionCache | None = None,
        ledger: Ledger | None = None,
        retry: RetryPolicy = RetryPolicy(),
        progress: bool = True,
        sleep: Callable[[float], None] = time.sleep,
        claim_lease_s: float = 600.0,
        poll_s: float = 0.25,
        rationale_from: str = "content",
        verify_billing: bool = True,
    ):
        if n_samples < 1:
            raise ConfigError(f"teacher.n_samples must be >= 1 (got {n_samples})")
        try:
            self._prompt = jinja2.Template(prompt, undefined=jinja2.StrictUndefined)
        except jinja2.TemplateError as err:
            raise ConfigError(f"teacher.prompt does not parse: {err}") from err
        self.backend = backend
        self.task = task
        self.system_prompt = system_prompt
        params = dict(params or {})
        if params.get("stop") is not None:  # hashable: requests are grouped by their parameters
            params["stop"] = tuple(str(s) for s in params["stop"])
        if params.get("max_tokens") is None:
            params["max_tokens"] = DEFAULT_MAX_TOKENS
        self.params = tuple(sorted(params.items()))
        self.n_samples = int(n_samples)
        self.price = price
        self.budget = budget
        self.cache = cache if backend.cacheable else None
        self.ledger = ledger or Ledger()
        self.retry = retry
        self.progress = progress
        self._sleep = sleep
        self._rng = random.Random(0)
        self._failures = 0
        self._fatal: str | None = None
        if rationale_from not in ("content", "reasoning"):
            raise ConfigError(f"teacher.rationale_from={rationale_from!r}: choose content or reasoning")
        self.rationale_from = rationale_from
        self.claim_lease_s = float(claim_lease_s)  # longer than any request with its retries takes
        self.poll_s = float(poll_s)
        # the questions asked so far, by id: a teacher's answer is read against its choices, graded
        # against its gold answer in the parse audit
        self.examples: dict[str, Example] = {}
        # A server may bill more than the max_tokens it was sent. Until one of its answers has been
        # billed within its reservation, calls go out one at a time (a call: one request, or one
        # question's samples asked with n); once one was billed above it,
        # every later reservation is raised by the largest excess seen and requests stay one at a time,
        # so a cap is exceeded by at most one request's excess over that (``overrun``).
        self._billing_checked = not (verify_billing and getattr(backend, "billed_by_server", False))
        self._overbilled = False
        self._excess = Spend()
        self.overrun = Spend()  # the most a cap was exceeded by, per dimension (0 when every cap held)
        self.cache_error: str | None = None  # why the cache was dropped mid-run, if it was

    # -- requests ----------------------------------------------------------------------------------
    def prompt_text(self, question: str) -> str:
        """``teacher.prompt`` for ``question``: the user message a question is asked with."""
        try:
            return self._prompt.render(question=question)
        except jinja2.TemplateError as err:
            raise ConfigError(f"teacher.prompt does not render: {err}") from err

    def requests_for(self, example: Example) -> list[TeacherRequest]:
        user = self.prompt_text(example.question)
        return [self.request(example.id, user, sample_index=i) for i in range(self.n_samples)]

    def request(self, request_id: str, user: str, sample_index: int = 0, context: Mapping[str, Any] | None = None,
                **params: Any) -> TeacherRequest:
        """A request with the user message ``user`` (after the system prompt, if any) and the teacher's
        decoding parameters, ``params`` overriding them (a drafting temperature, say)."""
        messages = ((("system", self.system_prompt),) if self.system_prompt else ()) + (("user", user),)
        # a parameter given as None is not sent (drafting a question sends no stop sequences)
        merged = tuple(sorted((k, v) for k, v in {**dict(self.params), **params}.items() if v is not None)
                       ) if params else self.params
        return TeacherRequest(request_id, messages, merged, sample_index, tuple(sorted((context or {}).items())))

    def rendered(self, user: str) -> str:
        """The text the model reads for a request with user message ``user`` (a local model applies its
        chat template): DPO's prompt must be what generation sees."""
        request = self.request("rendered", user)
        render = getattr(self.backend, "render_prompt", None)
        return render(request) if render is not None else request.prompt

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Ledger entries recorded in the block carry ``phase=name`` (spend per phase in results.json)."""
        previous, self.ledger.phase = self.ledger.phase, name
        try:
            yield
        finally:
            self.ledger.phase = previous

    @property
    def _identity(self) -> str:
        """What the cache keys name: read each time, since a backend's weights can change (an adapter)."""
        return getattr(self.backend, "identity", self.backend.model)

    def buy(self, requests: Sequence[TeacherRequest], budget: Budget | None = None) -> list[Annotation]:
        """Annotations for ``requests`` (any prompts: drafting, revision), bought in order until the
        budget runs out, exactly like :meth:`collect`'s."""
        return self._run(list(requests), budget or self.budget, pool=False)

    def _worst_case(self, request: TeacherRequest) -> Spend:
        bound = getattr(self.backend, "bound", None)
        known = bound(request) if bound is not None else None
        if known is not None:
            cost = known.cost_usd if known.cost_usd is not None else self.price.cost(known.input_tokens, known.output_tokens)
            return Spend(1, known.input_tokens + known.output_tokens, cost)
        max_out = int(request.param("max_tokens"))
        max_in = sum(len(c.encode()) + _MESSAGE_OVERHEAD_TOKENS for _, c in request.messages)
        return Spend(1, max_in + max_out, self.price.cost(max_in, max_out)) + self._excess

    @property
    def _in_flight_limit(self) -> int:
        return max(1, self.backend.max_concurrency) if self._billing_checked else 1


    # -- an estimate before paying ---------------------------------------------------------------
    def estimate(self, order: Sequence[Example], budget: Budget | None = None,
                 expected_output_tokens: int = 200) -> dict[str, Any]:
        """What collecting ``order`` would send and cost, sending nothing: the requests the budget's
        caps let through (each request's worst case, in order; answers already cached are free and
        counted apart), their worst-case and expected tokens, and USD live and in batch mode (the
        list price, and what a batch would be billed). Expected: the prompt at four characters a
        token, ``expected_output_tokens`` out (at most each request's limit)."""
        budget = budget or self.budget
        guard = BudgetGuard(budget)
        requests = [r for e in order for r in self.requests_for(e)]
        worst, expected, cached, sent = Spend(), Spend(), 0, 0
        for request in requests:
            # as the collector buys: a request goes out when its worst case fits beside what the
            # answers before it cost (a cached one what it cost, a fresh one the expected cost)
            bound = self._worst_case(request)
            if not guard.try_reserve(bound):
                break
            key = self._key(request)
            hit = self._cache_safe("reading", lambda k=key: self.cache.get(k)) if key else None
            if hit is not None:
                completion, cost = hit
                guard.settle(bound, Spend(1, completion.input_tokens + completion.output_tokens, cost))
                cached += 1
                continue
            sent += 1
            worst = worst + bound
            tokens_in = approx_tokens(request.prompt)
            tokens_out = min(int(expected_output_tokens), int(request.param("max_tokens")))
            guess = Spend(1, tokens_in + tokens_out, self.price.cost(tokens_in, tokens_out))
            guard.settle(bound, guess)
            expected = expected + guess
        discount = self.price.batch_discount
        return {
            "requests": sent, "already_cached": cached, "questions_in_order": len(order),
            "worst_case_tokens": worst.tokens, "expected_tokens": expected.tokens,
            "worst_case_usd": {"live": round(worst.usd, 6), "batch": round(worst.usd * discount, 6)},
            "expected_usd": {"live": round(expected.usd, 6), "batch": round(expected.usd * discount, 6)},
            "price_per_1m": {"input": self.price.input_per_1m, "output": self.price.output_per_1m},
        }

    # -- the run -----------------------------------------------------------------------------------
    def collect(self, order: Sequence[Example], budget: Budget | None = None) -> list[Annotation]:
        """Annotations for the questions in ``order``, bought in that order until the budget (the
        collector's, or ``budget`` for this call) or the questions run out. Failed questions are
        skipped (and logged), so the next one is bought."""
        self.backend.prepare(self.task, order)
        self.examples.update((e.id, e) for e in order)
        return self._run([r for e in order for r in self.requests_for(e)], budget or self.budget)

    def _run(self, requests: list[TeacherRequest], budget: Budget, pool: bool = True) -> list[Annotation]:
        with timing.phase("buy"):
            return self._buy(requests, budget, pool)

    def _buy(self, requests: list[TeacherRequest], budget: Budget, pool: bool) -> list[Annotation]:
        if pool:  # a training pool: a budget larger than it is worth a warning
            planned = budget.queries_for_pool(len(requests))
        else:
            planned = min(len(requests), budget.max_queries) if budget.max_queries is not None else len(requests)
        self._probe_cache()
        queue = deque(enumerate(requests))
        guard = BudgetGuard(budget)
        results: dict[int, Annotation] = {}
        in_flight: dict[Future, list[tuple[int, TeacherRequest, Spend]]] = {}
        # a request identical to one in flight (a question repeated in the pool, a sample index asked
        # twice) waits for that answer instead of paying for it again: key -> the requests waiting
        waiting: dict[str, list[tuple[int, TeacherRequest]]] = {}
        # requests another process claimed (a parallel job of the sweep is buying them): budget reserved,
        # served from the cache when their answer lands there, or sent by us if that claim lapses
        elsewhere: list[tuple[int, TeacherRequest, Spend]] = []
        bar = tqdm(total=planned, desc=f"teacher {self.backend.name}", unit="q", disable=not self.progress)
        stopped = False
        with ThreadPoolExecutor(max_workers=max(1, self.backend.max_concurrency)) as pool:
            while True:
                while not stopped and not self._fatal and queue and len(in_flight) < self._in_flight_limit:
                    batch, blocked = self._next_batch(queue, guard, results, bar, waiting, elsewhere)
                    if batch:
                        in_flight[pool.submit(self._call, [r for _, r, _ in batch])] = batch
                    if blocked:
                        stopped = not in_flight and not elsewhere  # nothing can free budget: done
                        break
                if elsewhere:
                    for item in self._poll_elsewhere(elsewhere, guard, results, bar, queue, waiting):
                        if self._fatal:  # nothing more is sent once a request failed for good
                            guard.settle(item[2], None)
                            self._release(item[1])
                            continue
                        in_flight[pool.submit(self._call, [item[1]])] = [item]
                if not in_flight and not elsewhere:
                    break
                if not in_flight:
                    self._sleep(self.poll_s)
                    continue
                done, _ = wait(list(in_flight), timeout=self.poll_s if elsewhere else None,
                               return_when=FIRST_COMPLETED)
                for future in done:
                    batch = in_flight.pop(future)
                    for (index, request, reserved), outcome in zip(batch, future.result()):
                        self._settle(index, request, reserved, outcome, guard, results, budget)
                        bar.update(1 if outcome.completion else 0)
                        # back to the front: now a cache hit, or (the request failed) sent themselves
                        queue.extendleft(reversed(waiting.pop(self._key(request), [])))
                bar.set_postfix(usd=f"{guard.spent.usd:.4f}", failed=self._failures)
        bar.close()
        if self.overrun != Spend():
            log.error("the teacher's server billed more than the limits sent: the budget (%s) was exceeded by %s "
                      "(at most one request's excess over the largest seen before; see results.json)",
                      budget, _describe(self.overrun))
        if self._fatal:
            raise ConfigError(
                f"the teacher refused a request in a way no retry can fix ({self._fatal}); nothing more was "
                f"sent. {len(results)} answers received before are in the cache and the ledger."
            )
        if len(results) < planned and not queue:
            log.warning("got %d of %d planned teacher answers: the questions ran out (%d failed)",
                        len(results), planned, self._failures)
        elif len(results) < planned:
            log.warning(
                "got %d of %d planned teacher answers: %d failed, and the budget (%s) had %s left when a "
                "request's worst case (input bytes + max_tokens) no longer fitted",
                len(results), planned, self._failures, budget, guard.budget_left(),
            )
        return [results[i] for i in sorted(results)]

    def _key(self, request: TeacherRequest) -> str | None:
        return request.cache_key(self.backend.name, self._identity) if self.cache is not None else None

    def _next_batch(self, queue, guard: BudgetGuard, results, bar, waiting, elsewhere) -> tuple[list, bool]:
        """Up to ``batch_size`` requests with budget reserved; cache hits are served on the way, a
        request identical to one in flight is set aside in ``waiting`` until that one settles, and one
        that another process has claimed goes to ``elsewhere``."""
        batch: list[tuple[int, TeacherRequest, Spend]] = []
        while queue and len(batch) < max(1, self.backend.batch_size):
            index, request = queue[0]
            key = self._key(request)
            if key is not None and key in waiting:
                waiting[key].append(queue.popleft())
                continue
            hit = self._cache_safe("reading", lambda k=key: self.cache.get(k)) if key else None
            if hit is not None:
                completion, cost = hit
                # admitted by the same rule as a fresh request (its worst case fits), then charged what
                # it cost: the same budget buys the same annotations whatever the cache holds
                worst = self._worst_case(request)
                if not guard.try_reserve(worst):
                    return batch, True
                guard.settle(worst, Spend(1, completion.input_tokens + completion.output_tokens, cost))
                queue.popleft()
                results[index] = self._annotation(request, completion, cost, cache_hit=True)
                self._log(request, completion, cost, "cache_hit", attempts=0)
                bar.update(1)
                continue
            worst = self._worst_case(request)
            if not guard.try_reserve(worst):
                return batch, True
            queue.popleft()
            if key is not None:
                waiting[key] = []
                if not self._cache_safe("claiming", lambda k=key: self.cache.claim(k, self.claim_lease_s), default=True):
                    elsewhere.append((index, request, worst))
                    continue
            batch.append((index, request, worst))
        return batch, False

    def _poll_elsewhere(self, elsewhere, guard: BudgetGuard, results, bar, queue, waiting) -> list:
        """Serves the requests whose answers another process stored meanwhile; returns those whose
        claim lapsed (that process died), now ours to send, their budget still reserved."""
        if self.cache is None:  # dropped: their answers can no longer be seen landing; ours to send
            ours, elsewhere[:] = list(elsewhere), []
            return ours
        ours, still = [], []
        for index, request, reserved in elsewhere:
            key = self._key(request)
            hit = self._cache_safe("reading", lambda k=key: self.cache.get(k))
            if hit is not None:
                completion, cost = hit
                guard.settle(reserved, Spend(1, completion.input_tokens + completion.output_tokens, cost))
                results[index] = self._annotation(request, completion, cost, cache_hit=True)
                self._log(request, completion, cost, "cache_hit", attempts=0)
                bar.update(1)
                queue.extendleft(reversed(waiting.pop(key, [])))
            elif self._cache_safe("claiming", lambda k=key: self.cache.claim(k, self.claim_lease_s), default=True):
                ours.append((index, request, reserved))
            else:
                still.append((index, request, reserved))
        elsewhere[:] = still
        return ours

    def _call(self, requests: list[TeacherRequest]) -> list[_Outcome]:
        """Runs in a worker thread: the backend call with retries. Every answer is cached and logged
        here, the moment it arrives, so a crash after this point loses nothing that was paid for."""
        outcomes: list[_Outcome | None] = [None] * len(requests)
        attempts = [0] * len(requests)
        pending = list(range(len(requests)))
        for attempt in range(self.retry.max_attempts):
            if self.cache is not None:  # still ours: another machine's job must keep waiting for it
                keys = [self._key(requests[i]) for i in pending]
                self._cache_safe("renewing claims", lambda k=keys: self.cache.renew(k, self.claim_lease_s))
            try:
                answers = self.backend.complete([requests[i] for i in pending])
            except Exception as err:  # a backend bug must not kill the other requests in flight
                answers = [TeacherCallError(f"{type(err).__name__}: {err}", retryable=True)] * len(pending)
            retry, wait_s = [], 0.0
            for i, answer in zip(pending, answers):
                attempts[i] += 1
                if isinstance(answer, Completion):
                    cost = float(answer.meta.get("recorded_cost_usd", self.price.cost(answer.input_tokens, answer.output_tokens)))
                    status = "replayed" if self.backend.name == "recorded" else "paid"
                    charged = 0.0 if status == "replayed" else self.price.charged(
                        answer.input_tokens, answer.output_tokens, int(answer.meta.get("cached_input_tokens", 0)),
                        batch=bool(answer.meta.get("batch")))
                    # the cache first: a run killed after the ledger's paid line must find the answer
                    # cached when the next run (another folder) asks, not pay for it again. A cache
                    # that cannot store it (damaged, full) is left behind and the ledger keeps the text.
                    if self.cache is not None:
                        key = requests[i].cache_key(self.backend.name, self._identity)
                        self._cache_safe("storing an answer", lambda k=key, a=answer, c=cost: (
                            self.cache.put(k, self.backend.name, a, c), self.cache.release(k)))
                    self._log(requests[i], answer, cost, status, attempts[i], charged=charged)
                    outcomes[i] = _Outcome(answer, cost, None, attempts[i])
                elif answer.fatal:
                    self._fatal = str(answer)
                    self.ledger.record(example_id=requests[i].example_id, sample_index=requests[i].sample_index,
                                       backend=self.backend.name, model=self.backend.model, status="failed",
                                       error=str(answer), attempts=attempts[i], input_tokens=0,
                                       output_tokens=0, cost_usd=0.0)
                    outcomes[i] = _Outcome(None, 0.0, str(answer), attempts[i])
                elif answer.retryable and attempt + 1 < self.retry.max_attempts:
                    retry.append(i)
                    wait_s = max(wait_s, self.retry.delay(attempt, answer.retry_after, self._rng))
                else:
                    self.ledger.record(example_id=requests[i].example_id, sample_index=requests[i].sample_index,
                                       backend=self.backend.name, model=self.backend.model, status="failed",
                                       error=str(answer), attempts=attempts[i], input_tokens=0,
                                       output_tokens=0, cost_usd=0.0)
                    outcomes[i] = _Outcome(None, 0.0, str(answer), attempts[i])
            if not retry:
                break
            self._sleep(wait_s)
            pending = retry
        for request, outcome in zip(requests, outcomes):  # given up: another process may try it
            if outcome is not None and outcome.completion is None:
                self._release(request)
        return outcomes  # type: ignore[return-value]

    # -- the cache, which must never cost an answer ------------------------------------------------------
    def _probe_cache(self) -> None:
        """A cache that cannot be read and written is one clear error before the first request."""
        if self.cache is None:
            return
        probe = f"tailkd-probe-{uuid.uuid4().hex}"
        try:
            self.cache.claim(probe, 1.0)
            self.cache.release(probe)
            self.cache.get(probe)
        except Exception as err:  # sqlite3 or psycopg, any of their errors
            where = getattr(self.cache, "path", None) or type(self.cache).__name__
            raise ConfigError(f"the teacher cache {where} cannot be used ({type(err).__name__}: {err}); nothing was "
                              f"sent. Move it aside or point paths.cache_dir elsewhere") from err

    def _cache_safe(self, doing: str, op: Callable[[], Any], default: Any = None) -> Any:
        """``op()`` on the cache; if it fails (damaged, disk full) the run goes on without the cache."""
        cache = self.cache
        if cache is None:
            return default
        try:
            return op()
        except Exception as err:  # any database error: the answers are in the ledger already
            if self.cache is cache:
                self.cache = None
                self.cache_error = f"{type(err).__name__}: {err}"
                log.error("the teacher cache %s failed while %s (%s): this run goes on without it. Every answer "
                          "is in ledger.jsonl and annotations.jsonl; none is reused or shared with parallel jobs "
                          "from now on", getattr(cache, "path", cache), doing, self.cache_error)
            return default

    def _release(self, request: TeacherRequest) -> None:
        key = self._key(request)
        if key is not None:
            self._cache_safe("releasing a claim", lambda: self.cache.release(key))

    def _settle(self, index, request, reserved: Spend, outcome: _Outcome, guard: BudgetGuard, results,
                budget: Budget) -> None:
        if outcome.completion is None:
            guard.settle(reserved, None)
            self._failures += 1
            log.warning("teacher gave no answer for %s (sample %d) after %d attempts: %s",
                        request.example_id, request.sample_index, outcome.attempts, outcome.error)
            return
        c = outcome.completion
        actual = Spend(1, c.input_tokens + c.output_tokens, outcome.cost_usd)
        if not reserved.covers(actual):  # paid all the same: the ledger says so, later reservations grow
            excess = actual - reserved
            self._excess = Spend(0, max(self._excess.tokens, excess.tokens), max(self._excess.usd, excess.usd))
            self._overbilled, self._billing_checked = True, False
            log.error("teacher %s billed %s for %s, more than the %s reserved (the limits sent): later requests "
                      "reserve %s more and go out one at a time", self.backend.name, _describe(actual),
                      request.example_id, _describe(reserved), _describe(self._excess))
        elif not self._overbilled:
            self._billing_checked = True  # billed within the limits sent: requests may go out together
        guard.settle(reserved, actual)
        over = guard.spent - _capped(guard.spent, budget)
        self.overrun = Spend(max(self.overrun.queries, over.queries), max(self.overrun.tokens, over.tokens),
                             max(self.overrun.usd, over.usd))
        results[index] = self._annotation(request, c, outcome.cost_usd, cache_hit=False)

    def _annotation(self, request: TeacherRequest, completion: Completion, cost: float, cache_hit: bool) -> Annotation:
        stop = request.param("stop")
        reading = self.task.read_teacher(completion.text, self.examples.get(request.example_id),
                                         stops=tuple(stop) if stop else None)
        rationale = reading.rationale
        if self.rationale_from == "reasoning" and completion.meta.get("reasoning"):
            # a reasoning model's thinking is the worked solution; its reply states the answer
            rationale = completion.meta["reasoning"]
        return Annotation(
            example_id=request.example_id,
            prompt=request.prompt,
            text=completion.text,  # as paid for: what was cut still counts as spent
            rationale=rationale,
            answer=reading.answer,
            cut_at=reading.cut_at,
            parse=reading.how,
            input_tokens=completion.input_tokens,
            output_tokens=completion.output_tokens,
            cost_usd=cost,
            backend=self.backend.name,
            model=completion.model,
            sample_index=request.sample_index,
            meta={**completion.meta, "cache_hit": cache_hit},
        )

    def _log(self, request: TeacherRequest, completion: Completion, cost: float, status: str, attempts: int,
             charged: float = 0.0) -> None:
        """``cost``: the list cost the budget and comparisons use; ``charged``: what was billed now
        (0 for a cache hit or a replay; cached prompt tokens and the Batch API billed at their rates)."""
        self.ledger.record(
            example_id=request.example_id, sample_index=request.sample_index, backend=self.backend.name,
            model=completion.model, status=status, input_tokens=completion.input_tokens,
            output_tokens=completion.output_tokens, cost_usd=cost, charged_usd=round(charged, 9), attempts=attempts,
            # a paid answer's text is kept here too, for a cache that could not store it
            **({"text": completion.text, **({"reasoning": completion.meta["reasoning"]}
                                             if completion.meta.get("reasoning") else {})} if status == "paid" else {}),
        )
