"""The teacher settings every backend's numbers must satisfy, checked before anything is sent: a limit
of 0 or a word where a number belongs would otherwise fail inside the client on every request, be
retried, and end as a run with nothing bought and exit 0."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tailkd.settings import INT, OPTIONAL_POSITIVE_INT, POSITIVE, POSITIVE_INT, Num, check_numbers

OPTIONAL_POSITIVE = Num(low=0, open_low=True, null=True)
NON_NEGATIVE = Num(low=0)

TEACHER_NUMBERS = {
    "max_tokens": OPTIONAL_POSITIVE_INT, "temperature": Num(low=0, null=True),
    "top_p": Num(low=0, high=1, open_low=True, null=True), "n_samples": POSITIVE_INT, "seed": INT,
    "max_concurrency": POSITIVE_INT, "batch_size": POSITIVE_INT, "timeout_s": POSITIVE,
    "retry.max_attempts": POSITIVE_INT, "retry.base_delay_s": NON_NEGATIVE, "retry.max_delay_s": NON_NEGATIVE,
    "claim_lease_s": OPTIONAL_POSITIVE,
    "max_requests_per_minute": OPTIONAL_POSITIVE_INT, "max_tokens_per_minute": OPTIONAL_POSITIVE_INT,
    "rate_limit_window_s": OPTIONAL_POSITIVE, "max_connection_failures": POSITIVE_INT,
    "batch.poll_s": POSITIVE, "batch.max_wait_s": POSITIVE, "batch.max_requests_per_batch": POSITIVE_INT,
    "batch.max_in_flight": POSITIVE_INT,
    "corruption.rate": Num(low=0, high=1), "price.input_per_1m": NON_NEGATIVE, "price.output_per_1m": NON_NEGATIVE,
}


def check_teacher_cfg(teacher: Mapping[str, Any]) -> None:
    """A :class:`~tailkd.errors.ConfigError` naming ``teacher.<key>`` and its value for the first number
    out of type or range; keys a backend does not have are not checked."""
    check_numbers(teacher, "teacher", TEACHER_NUMBERS)
