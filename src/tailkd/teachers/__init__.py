"""Teachers: backends behind one annotation record, the budget, the cache, the ledger, the collector."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tailkd.errors import ConfigError
from tailkd.tasks import Task
from tailkd.teachers.annotation import Annotation
from tailkd.teachers.backends import build_backend
from tailkd.teachers.budget import Budget
from tailkd.teachers.cache import CACHE_FILE, CompletionCache, open_cache
from tailkd.teachers.collect import Collector, RetryPolicy, get_selector
from tailkd.teachers.ledger import Ledger
from tailkd.teachers.pricing import resolve_price
from tailkd.teachers.settings import check_teacher_cfg


def teacher_stops(teacher: Mapping[str, Any], task: Task) -> tuple[str, ...]:
    """The stop sequences a request is sent with (``teacher.stop``, null: the task's ``teacher_stop``),
    so that nobody pays for a few-shot teacher's invented next question; the collector also cuts there."""
    stop = teacher.get("stop")
    if stop is None:
        return task.teacher_stop
    if isinstance(stop, str):
        stop = [stop]
    if not all(isinstance(s, str) and s for s in stop):
        raise ConfigError(f"teacher.stop must be a list of non-empty strings or null (got {stop!r})")
    return tuple(stop)


def build_collector(
    teacher: Mapping[str, Any],
    budget: Mapping[str, Any],
    task: Task,
    *,
    cache_dir: Path,
    cache_url: str | None = None,
    ledger_path: Path | None = None,
    progress: bool = True,
) -> Collector:
    """Everything a collection needs, from the ``teacher`` and ``budget`` config nodes; answers are
    cached in PostgreSQL at ``cache_url`` (``paths.cache_url``), else in SQLite in ``cache_dir``."""
    check_teacher_cfg(teacher)  # before a backend is built: a bad number fails here, not on every request
    backend = build_backend(teacher, cache_dir)
    get_selector(budget.get("order", "random"))  # an unknown strategy fails before anything is bought
    retry = dict(teacher.get("retry") or {})
    try:
        retry_policy = RetryPolicy(**retry)
    except TypeError as err:
        raise ConfigError(f"teacher.retry: {err}") from err
    params = {k: teacher.get(k) for k in ("temperature", "max_tokens", "top_p") if teacher.get(k) is not None}
    params["stop"] = teacher_stops(teacher, task)
    price = resolve_price(backend.model, teacher.get("price"))
    cache = open_cache(Path(cache_dir), cache_url) if backend.cacheable else None
    lease = float(teacher.get("claim_lease_s") or 600.0)
    if teacher.get("mode") == "batch":  # a batch may take hours: other machines wait on its claims as long
        lease = max(lease, float((teacher.get("batch") or {}).get("max_wait_s", 86400)))
    if hasattr(backend, "attach"):
        backend.attach(cache, price, progress)
    return Collector(
        backend,
        task,
        prompt=teacher["prompt"],
        system_prompt=teacher.get("system_prompt"),
        params=params,
        n_samples=int(teacher.get("n_samples", 1)),
        price=price,
        budget=Budget.from_cfg(budget),
        cache=cache,
        ledger=Ledger(ledger_path),
        retry=retry_policy,
        progress=progress,
        claim_lease_s=lease,
        rationale_from=str(teacher.get("rationale_from") or "content"),
        # a batch of one first would cost the Batch API a whole extra round (hours): batches are trusted,
        # and an overbilling batch raises the reservations of the batches after it
        verify_billing=bool(teacher.get("verify_billing", True)) and teacher.get("mode") != "batch",
    )


__all__ = ["CACHE_FILE", "Annotation", "Budget", "Collector", "CompletionCache", "Ledger", "build_collector",
           "get_selector", "open_cache"]
