"""A tailkd task as an lm-evaluation-harness task, so that ``lm-eval`` scores a student as tailkd does.

``export_lm_eval`` writes two files into a folder:

* ``NAME.jsonl``: the test questions as tailkd selected them (the same ``task.test_size`` rows, the
  same ids), each already rendered: ``prompt`` is the exact string the student reads (a run's prompt
  prefix included), ``answer`` the normalised gold. lm-eval renders nothing, so both scorers see the
  same prompts whatever the task's templates do.
* ``NAME.yaml``: an lm-eval task reading that file offline (``dataset_path: json``), generating greedily
  with the task's ``max_new_tokens`` and stop strings, and scoring ``exact_match`` after the filters of
  :mod:`tailkd.tasks.answer_regex`, which read the answer as the task's extractor does.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tailkd.errors import ConfigError
from tailkd.tasks.answer_regex import LIMITS, lm_eval_filter, lm_eval_metric
from tailkd.tasks.task import Example, Task

FILTER_NAME = "tailkd"  # lm-eval reports the score as exact_match,tailkd


class _Dumper(yaml.SafeDumper):
    """Writes a string holding a line break in double quotes ("\\nQuestion:"), as the task configs do."""


def _string(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style='"' if "\n" in value else None)


_Dumper.add_representer(str, _string)


@dataclass(frozen=True)
class Export:
    name: str
    task_file: Path
    data_file: Path
    num_questions: int


def default_name(task: Task) -> str:
    # lm-eval ships tasks called gsm8k, commonsense_qa...: ours must not shadow theirs
    return f"tailkd_{task.name}"


def rows(task: Task, examples: Sequence[Example], prompt_prefix: str = "") -> list[dict[str, str]]:
    """One rendered row a question: what the student reads and the answer that scores."""
    return [{"id": e.id, "question": e.question, "prompt": prompt_prefix + task.prompt(e), "answer": e.answer}
            for e in examples]


def lm_eval_config(task: Task, name: str, data_file: Path, stop: Sequence[str]) -> dict[str, Any]:
    """The lm-eval task config. ``data_file`` is absolute: the datasets library resolves a relative one
    from lm-eval's working folder, not from the YAML's."""
    return {
        "task": name,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(Path(data_file).resolve())}},
        "test_split": "test",
        "output_type": "generate_until",
        "doc_to_text": "prompt",  # field names: lm-eval reads the rows' own strings, no template
        "doc_to_target": "answer",
        "generation_kwargs": {"until": list(stop), "do_sample": False, "max_gen_toks": task.max_new_tokens},
        "filter_list": [{"name": FILTER_NAME, "filter": lm_eval_filter(task.extractor)}],
        "metric_list": [lm_eval_metric(task.extractor)],
        "metadata": {"version": task.version},
    }


def header(task: Task, count: int) -> str:
    """The YAML's opening comment: where it comes from and where lm-eval may score otherwise."""
    limits = LIMITS[task.extractor.type.name]
    lines = [f"Written by tailkd-export: task {task.name} (version {task.version}), {count} test questions as "
             f"tailkd selected them, prompts rendered in the .jsonl file.",
             "exact_match,tailkd reads answers as tailkd does, except where lm-eval's regex cannot:",
             *(f"  - {limit}" for limit in limits or ["(no known difference for this answer type)"])]
    return "".join(f"# {line}\n" for line in lines)


def export_lm_eval(task: Task, examples: Sequence[Example], out_dir: Path, *, name: str | None = None,
                   stop: Sequence[str] | None = None, prompt_prefix: str = "") -> Export:
    """Write ``NAME.jsonl`` and ``NAME.yaml`` into ``out_dir``; ``stop``: the run's stop strings (default
    the task's ``until``)."""
    name = name or default_name(task)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise ConfigError(f"name={name!r}: an lm-eval task name here is letters, digits, '_', '.' and '-'")
    if not examples:
        raise ConfigError(f"task {task.name}: no test question to export")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data_file, task_file = out_dir / f"{name}.jsonl", out_dir / f"{name}.yaml"
    data_file.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows(task, examples, prompt_prefix)),
                         encoding="utf-8")
    config = lm_eval_config(task, name, data_file, task.until if stop is None else stop)
    # width: a long regex on one line, never folded
    body = yaml.dump(config, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=1 << 16)
    task_file.write_text(header(task, len(examples)) + body, encoding="utf-8")
    return Export(name, task_file, data_file, len(examples))
