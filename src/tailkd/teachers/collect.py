"""Buy teacher annotations for a task's training pool, up to the budget."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

from tailkd.errors import ConfigError
from tailkd.tasks import Example, Task
from tailkd.teachers.base import Annotation, Teacher
from tailkd.teachers.budget import Budget, Ledger

# (pool, how many, rng) -> the examples to buy, in buying order
Selector = Callable[[Sequence[Example], int, random.Random], list[Example]]


def select_random(pool: Sequence[Example], k: int, rng: random.Random) -> list[Example]:
    return rng.sample(list(pool), k)


SELECTORS: dict[str, Selector] = {"random": select_random}


def get_selector(name: str) -> Selector:
    if name not in SELECTORS:
        raise ConfigError(f"budget.selection={name!r} is unknown; choose one of {sorted(SELECTORS)}")
    return SELECTORS[name]


def collect_annotations(
    pool: Sequence[Example],
    task: Task,
    teacher: Teacher,
    budget: Budget,
    ledger: Ledger,
    *,
    selection: str = "random",
    seed: int = 0,
) -> list[Annotation]:
    chosen = get_selector(selection)(pool, budget.queries_for_pool(len(pool)), random.Random(seed))
    annotations = teacher.annotate(chosen, task)
    ledger.record(annotations)
    return annotations
