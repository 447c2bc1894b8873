"""What a numeric setting may hold (:class:`Num`) and the check that names the first key out of type or
range, with its value: shared by the checks of every config group (``tailkd.config`` for a run's,
``tasks.registry`` for a task's, ``teachers.settings`` for a teacher's), so a word or a 0 where a number
belongs is named before anything is loaded or paid for, not met as a traceback mid-run."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig

from tailkd.errors import ConfigError


@dataclass(frozen=True)
class Num:
    """What a numeric setting may hold: a number (an integer with ``integer``) with optional bounds,
    ``low`` / ``high`` inclusive unless ``open_low`` / ``open_high``; ``null`` allows None."""

    integer: bool = False
    low: float | None = None
    high: float | None = None
    open_low: bool = False
    open_high: bool = False
    null: bool = False

    def accepts(self, value: Any) -> bool:
        if value is None:
            return self.null
        if isinstance(value, bool) or not isinstance(value, int if self.integer else (int, float)):
            return False
        if self.low is not None and (value <= self.low if self.open_low else value < self.low):
            return False
        return self.high is None or (value < self.high if self.open_high else value <= self.high)

    def describe(self) -> str:
        kind = "an integer" if self.integer else "a number"
        if self.low is not None and self.high is not None:
            kind += f" in {'(' if self.open_low else '['}{self.low}, {self.high}{')' if self.open_high else ']'}"
        elif self.low is not None:
            kind += f" {'>' if self.open_low else '>='} {self.low}"
        return kind + (" or null" if self.null else "")


INT, POSITIVE_INT, POSITIVE = Num(integer=True), Num(integer=True, low=1), Num(low=0, open_low=True)
SHARE = Num(low=0, high=1, open_high=True)  # [0, 1)
OPTIONAL_POSITIVE_INT = Num(integer=True, low=1, null=True)


_ABSENT = object()


def require(checks: Iterable[tuple[bool, str]]) -> None:
    """A :class:`ConfigError` with the message of the first failed ``(ok, message)`` check."""
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)


def check_numbers(node: Any, prefix: str, rules: Mapping[str, Num]) -> None:
    """A :class:`ConfigError` naming the key and its value for the first key of ``rules`` (dotted,
    under ``node``, whose own name is ``prefix``) present with a value its rule does not accept. Keys
    a config does not have are not checked: a backend or method reads only its own."""
    for key, rule in rules.items():
        value = _lookup(node, key)
        if value is not _ABSENT and not rule.accepts(value):
            name = f"{prefix}.{key}" if prefix else key
            raise ConfigError(f"{name} must be {rule.describe()} (got {value!r})")


def _lookup(node: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(node, (Mapping, DictConfig)) or part not in node:
            return _ABSENT
        node = node[part]
    return node
