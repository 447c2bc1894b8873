"""``tailkd-export``: a task's test questions as an lm-evaluation-harness task (:mod:`tailkd.tasks.export`).

``run=`` is a tailkd-train run folder: the export takes its task, stop strings and prompt prefix, as
``tailkd-eval model=RUN`` scores with them, unless ``task=``/``task.*`` is given on the command line.
It prints the ``lm-eval`` command that scores the run's student on the exported questions.
"""

from __future__ import annotations

import json
import logging
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from tailkd.config import config_dir, run_hydra_cli
from tailkd.errors import ConfigError, TailkdError

log = logging.getLogger("tailkd")


@dataclass(frozen=True)
class Settings:
    task: dict[str, Any]
    stop: list[str] | None  # None: the task's until
    prompt_prefix: str
    run_cfg: DictConfig | None = None


def read_run(run: str) -> DictConfig:
    path = Path(run).expanduser()
    config = path / "config_resolved.yaml"
    if not config.is_file():
        raise ConfigError(f"run={run}: not a tailkd-train run folder (it has no config_resolved.yaml)")
    run_cfg = OmegaConf.load(config)
    if "method" not in run_cfg:  # tailkd-train's config is the only one with a method
        raise ConfigError(f"run={run} is a tailkd-eval or tailkd-collect folder; give a tailkd-train run folder")
    return run_cfg


def settings(cfg: DictConfig, overrides: list[str]) -> Settings:
    """What to export, decided as tailkd-eval decides what to score with."""
    own = OmegaConf.to_container(cfg.task, resolve=True)
    if cfg.run is None:
        return Settings(own, None, cfg.prompt_prefix or "")
    run_cfg = read_run(cfg.run)
    multitask = run_cfg.method.get("multitask")
    prefix = cfg.prompt_prefix if cfg.prompt_prefix is not None else (multitask.label_prefix if multitask else "")
    if any(o.lstrip("+~").startswith("task") for o in overrides):
        return Settings(own, None, prefix, run_cfg)
    results_file = Path(cfg.run).expanduser() / "results.json"
    results = json.loads(results_file.read_text()) if results_file.is_file() else {}
    # the run's own stop strings: it dropped those found inside its training targets
    stop = results.get("stop_strings")
    return Settings(OmegaConf.to_container(run_cfg.task, resolve=True), stop, prefix, run_cfg)


def model_args(run: Path, run_cfg: DictConfig) -> str | None:
    """lm-eval's ``--model_args`` for the run's kept student; None if it kept none."""
    student = run / "student"
    dtype = run_cfg.student.get("dtype") or "float32"
    if (student / "merged" / "config.json").is_file():
        return f"pretrained={student / 'merged'},dtype={dtype}"
    if (student / "config.json").is_file():
        return f"pretrained={student},dtype={dtype}"
    if (student / "adapter_config.json").is_file():
        base = student / "base" if (student / "base").is_dir() else run_cfg.student.get("pretrained")
        return f"pretrained={base},peft={student},dtype={dtype}" if base else None
    return None


def command(name: str, out: Path, args: str | None, batch_size: int | None) -> str:
    model = shlex.quote(args) if args else "pretrained=STUDENT_FOLDER"
    batch = f" --batch_size {batch_size}" if batch_size else ""
    return (f"lm-eval run --model hf --model_args {model} --include_path {shlex.quote(str(out))} "
            f"--tasks {name}{batch}")


def run(cfg: DictConfig) -> dict[str, Any]:
    from tailkd.tasks import load_task_data
    from tailkd.tasks.answer_regex import LIMITS
    from tailkd.tasks.export import export_lm_eval

    if cfg.out is None:
        raise ConfigError("out=DIR is required: the folder for the lm-eval task (lm-eval's --include_path)")
    chosen = settings(cfg, list(HydraConfig.get().overrides.task))
    data = load_task_data(chosen.task)
    out = Path(str(cfg.out)).expanduser()
    written = export_lm_eval(data.task, data.test, out, name=cfg.name, stop=chosen.stop,
                             prompt_prefix=chosen.prompt_prefix)
    run_cfg = chosen.run_cfg
    args = model_args(Path(cfg.run).expanduser(), run_cfg) if run_cfg is not None else None
    batch = int(run_cfg.trainer.eval_batch_size) if run_cfg is not None else None
    log.info("%d test questions of %s in %s and %s", written.num_questions, data.task.name, written.data_file,
             written.task_file)
    for limit in LIMITS[data.task.extractor.type.name]:
        log.info("lm-eval reads answers as tailkd does, except: %s", limit)
    print(command(written.name, out, args, batch))
    return {"name": written.name, "task_file": str(written.task_file), "data_file": str(written.data_file),
            "num_questions": written.num_questions}


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="export")
def _main(cfg: DictConfig) -> None:
    try:
        run(cfg)
    except TailkdError as err:
        log.error("tailkd-export: %s", err)
        sys.exit(2)


def main() -> None:
    run_hydra_cli("tailkd-export", _main)


if __name__ == "__main__":
    main()
