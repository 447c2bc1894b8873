"""Keep the distilled student: a plain transformers folder with its tokenizer and a model card.

``student/`` loads with ``AutoModelForCausalLM.from_pretrained`` (or ``AutoModelForSeq2SeqLM``) and
``lm-eval --model hf --model_args pretrained=student``. A LoRA student is saved as its adapter (with
``adapter_config.json`` naming the base model; a tiny random base, which no config rebuilds, is kept in
``student/base/``) and, with ``student.merge_lora=true``, also merged into the base as
``student/merged/``, a full model again.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from tailkd.models.student import Student

log = logging.getLogger(__name__)

CARD_FIELDS = ("task", "method", "student", "seed", "test_accuracy", "test_accuracy_before", "budget_max_queries",
               "budget_max_usd", "teacher_backend", "teacher_model", "teacher_queries", "teacher_cost_usd",
               "num_train_examples", "git_commit")


def is_adapter(folder: Path) -> bool:
    return (Path(folder) / "adapter_config.json").is_file()


def save_student(student: Student, folder: Path, *, results: Mapping[str, Any], config: Mapping[str, Any],
                 merge_lora: bool = False) -> Path:
    """Writes ``folder`` (built beside it and renamed, so a crash never leaves half a model)."""
    folder = Path(folder)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        model = student.model
        model.save_pretrained(tmp)
        student.tokenizer.save_pretrained(tmp)
        lora = is_adapter(tmp)
        if lora and (config.get("student") or {}).get("source") == "tiny":
            # a random tiny base cannot be rebuilt from its config (its tokenizer is trained on the run's
            # texts): keep it beside the adapter
            copy.deepcopy(model).unload().save_pretrained(tmp / "base")
            student.tokenizer.save_pretrained(tmp / "base")
        if lora and merge_lora:
            merged = model.merge_and_unload()  # the run is over: merging the live model in place is fine
            merged.save_pretrained(tmp / "merged")
            student.tokenizer.save_pretrained(tmp / "merged")
        (tmp / "README.md").write_text(model_card(student, results, config, lora=lora, merged=lora and merge_lora))
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("the distilled student is in %s", folder)
    return folder


def model_card(student: Student, results: Mapping[str, Any], config: Mapping[str, Any], *, lora: bool,
               merged: bool) -> str:
    auto = "AutoModelForCausalLM" if student.is_causal else "AutoModelForSeq2SeqLM"
    front = {"library_name": "peft" if lora else "transformers", "tags": ["tailkd", "distillation", "reasoning"]}
    base = (config.get("student") or {}).get("pretrained")
    if base and not str(base).startswith("/"):
        front["base_model"] = str(base)
    rows = "\n".join(f"| {k} | {results[k]} |" for k in CARD_FIELDS if results.get(k) is not None)
    if lora:
        how = (f"The folder holds a LoRA adapter on `{base}`: `PeftModel.from_pretrained(base, 'student')` "
               f"or `{auto}.from_pretrained('student')` with peft installed."
               + (f" `student/merged/` is the adapter merged into the base: `{auto}.from_pretrained('student/merged')`."
                  if merged else ""))
    else:
        how = f"`{auto}.from_pretrained('student')`, or `lm-eval --model hf --model_args pretrained=student`."
    how += " `tailkd-eval model=RUN_FOLDER` scores it on its task again; any `task=` on another."
    return (f"---\n{yaml.safe_dump(front, sort_keys=False)}---\n\n"
            f"# {results.get('student')} distilled by tailkd ({results.get('method')} on {results.get('task')})\n\n"
            f"| | |\n|---|---|\n{rows}\n\n## Loading\n\n{how}\n\n"
            f"## The run's configuration\n\n```json\n{json.dumps(config, indent=2, default=str)}\n```\n")
