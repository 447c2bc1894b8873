"""Reasoning tasks as data: registry, templates, answer extraction and scoring."""

from tailkd.tasks.answers import AnswerExtractor
from tailkd.tasks.registry import TaskData, load_task_data
from tailkd.tasks.task import Example, Task

__all__ = ["AnswerExtractor", "Example", "Task", "TaskData", "load_task_data"]
