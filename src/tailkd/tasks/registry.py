"""Build a task from its config node and load its train and test examples."""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tailkd.errors import ConfigError
from tailkd.settings import INT, OPTIONAL_POSITIVE_INT, POSITIVE_INT, check_numbers
from tailkd.tasks.sources import read_rows
from tailkd.tasks.task import Example, Task

TASK_NUMBERS = {"max_new_tokens": POSITIVE_INT, "train_size": OPTIONAL_POSITIVE_INT,
                "test_size": OPTIONAL_POSITIVE_INT, "data_seed": INT}


@dataclass
class TaskData:
    task: Task
    train: list[Example]
    test: list[Example]


def load_examples(task: Task, task_cfg: Mapping[str, Any], split: str) -> list[Example]:
    return [
        task.example_from_row(row, f"{task.name}-{split}-{index}", where)
        for index, (row, where) in enumerate(read_rows(task_cfg, split))
    ]


def load_task_data(task_cfg: Mapping[str, Any]) -> TaskData:
    """Train pool and test set of a task, subsampled to ``task.train_size`` / ``task.test_size``.

    The train pool is a random subset drawn with ``task.data_seed`` (fixed across training seeds, so
    seeds vary training, not data); the test set is the first ``test_size`` rows, in source order.
    Test questions that also occur in the train pool are dropped.
    """
    check_numbers(task_cfg, "task", TASK_NUMBERS)  # test_size=0 is a setting to name, not an empty split
    task = Task(task_cfg)
    train = load_examples(task, task_cfg, "train")
    test = load_examples(task, task_cfg, "test")
    for split, rows in (("train", train), ("test", test)):
        if not rows:
            raise ConfigError(f"task {task.name}: the {split} split is empty")
        ids = [e.id for e in rows]
        if len(set(ids)) != len(ids):
            raise ConfigError(f"task {task.name}: duplicate ids in the {split} split (task.id_field)")

    train_size = task_cfg.get("train_size")
    if train_size is not None and int(train_size) < len(train):
        train = random.Random(int(task_cfg.get("data_seed", 0))).sample(train, int(train_size))
    seen = {e.question for e in train}
    test = [e for e in test if e.question not in seen]
    test_size = task_cfg.get("test_size")
    if test_size is not None:
        test = test[: int(test_size)]
    if not test:
        raise ConfigError(f"task {task.name}: no test question left after removing those in train")
    return TaskData(task, train, test)
