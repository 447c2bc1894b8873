"""``tailkd-eval``: score a distilled student (or any model) on a task's test split.

``model=`` is a tailkd run folder, a model folder (or LoRA adapter folder), or a hub id. A run folder
(or its ``student/``) brings the run's task, stop rules, dtype, decoding and precision settings, so the
score is the one the run reported, unless ``task=``/``task.*`` is given on the command line.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from tailkd.config import config_dir, run_hydra_cli, validate_eval
from tailkd.console import quiet
from tailkd.errors import ConfigError, TailkdError

log = logging.getLogger("tailkd")


def locate(model: str) -> tuple[str, Path | None]:
    """(what to load: a folder or a hub id, the run folder it came from if any)."""
    path = Path(str(model)).expanduser()
    if not path.exists():
        if str(model).startswith(("/", ".", "~")):
            raise ConfigError(f"model={model}: no such folder")
        return str(model), None  # a hub id
    if not path.is_dir():
        raise ConfigError(f"model={model} is a file; give a run folder, a model folder or a hub id")
    if (path / "config_resolved.yaml").is_file():
        if not (path / "student").is_dir():
            raise ConfigError(_why_no_student(path))
        return str(path / "student"), path
    if (path / "config.json").is_file() or (path / "adapter_config.json").is_file():
        parent = path.parent
        return str(path), parent if (parent / "config_resolved.yaml").is_file() and path.name == "student" else None
    raise ConfigError(f"{path} is not a model: it has no config.json or adapter_config.json, and it is not a "
                      f"tailkd run folder (config_resolved.yaml and student/)")


def _why_no_student(path: Path) -> str:
    """What a tailkd folder without ``student/`` is: a collect or eval folder, an unfinished run, or a
    run told not to keep its student."""
    import yaml

    try:
        config = OmegaConf.load(path / "config_resolved.yaml")
    except (OSError, yaml.YAMLError):
        config = OmegaConf.create()
    if "method" not in config:  # tailkd-train's config is the only one with a method
        kind, holds = ("tailkd-eval", "scores") if "model" in config else ("tailkd-collect", "teacher annotations")
        return (f"{path} is a {kind} folder: it holds {holds}, no model; give a tailkd-train run folder, "
                f"a model folder or a hub id")
    if not (path / "results.json").is_file():
        return (f"the run in {path} did not finish (it has no results.json), so it has no student yet; "
                f"continue it with resume={path}")
    if not OmegaConf.select(config, "trainer.save_student", default=True):
        return f"the run in {path} kept no student (it ran with trainer.save_student=false)"
    return f"the run in {path} has no student/ folder: it was moved or deleted"


def load_model(location: str, arch: str, dtype: str, run_cfg: DictConfig | None, cache_dir: Path):
    """The model at ``location``; a LoRA adapter on its base (the run's student config, else the base
    its adapter_config.json names)."""
    from tailkd.models import load_student
    from tailkd.models.save import is_adapter
    from tailkd.models.student import check_local_weights

    plain = {"name": Path(location).name, "arch": arch, "source": "hub", "dtype": dtype, "lora": {"enabled": False}}
    if not is_adapter(Path(location)):
        return load_student({**plain, "pretrained": location}, cache_dir)
    import json

    from peft import PeftModel

    check_local_weights(Path(location))  # the adapter's own weights; load_student checks the base's

    if (Path(location) / "base").is_dir():
        base_cfg = {**plain, "pretrained": str(Path(location) / "base")}
    elif run_cfg is not None:
        base_cfg = {**OmegaConf.to_container(run_cfg.student, resolve=True), "lora": {"enabled": False}}
    else:
        base = json.loads((Path(location) / "adapter_config.json").read_text()).get("base_model_name_or_path")
        base_cfg = {**plain, "pretrained": base}
    student = load_student(base_cfg, cache_dir)
    student.model = PeftModel.from_pretrained(student.model, location)
    return student


def _run_results(source_run: Path | None) -> dict[str, Any]:
    import json

    path = source_run / "results.json" if source_run is not None else None
    return json.loads(path.read_text()) if path is not None and path.is_file() else {}


def majority_votes(student, task, examples, k: int, temperature: float, batch_size: int, stop, seed: int):
    from tailkd.signals.self_consistency import sample_texts, summarise

    prompts = [task.prompt(e) for e in examples]
    samples = sample_texts(student, prompts, task.max_new_tokens, k=k, temperature=temperature,
                           batch_size=batch_size, stop=stop, seed=seed)
    return [summarise([task.extract_answer(t, e) for t in texts]) for e, texts in zip(examples, samples)]


def effective_config(cfg: DictConfig, eff: DictConfig) -> DictConfig:
    """The config this evaluation ran with: ``cfg`` with the run's task, trainer and paths in place of
    its own. Replaced, not merged: a run's task may have keys the default task lacks (a hub source's
    ``path``), which a merge into Hydra's struct config refuses."""
    return OmegaConf.create({**OmegaConf.to_container(cfg, resolve=True), **OmegaConf.to_container(eff, resolve=True)})


def run(cfg: DictConfig) -> dict[str, Any]:
    from tailkd.methods import pipeline
    from tailkd.provenance import provenance
    from tailkd.training import DistillModule
    from tailkd.training.data import EvalDataModule
    from tailkd.training.trainer import build_trainer, check_trainer_kwargs

    started = time.time()
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    location, source_run = locate(cfg.model)
    run_cfg = OmegaConf.load(source_run / "config_resolved.yaml") if source_run else None
    overrides = HydraConfig.get().overrides.task
    task_node = cfg.task if run_cfg is None or any(o.lstrip("+~").startswith("task") for o in overrides) else run_cfg.task
    trainer_node = run_cfg.trainer if run_cfg is not None else cfg.trainer
    arch = cfg.arch or (run_cfg.student.arch if run_cfg is not None else "causal")
    prefix = cfg.eval.prompt_prefix
    if prefix is None:
        multitask = run_cfg.method.get("multitask") if run_cfg is not None else None
        prefix = multitask.label_prefix if multitask else ""
    k = cfg.eval.maj_at_k  # validate_eval: an integer >= 2, or null

    eff = OmegaConf.create({"task": OmegaConf.to_container(task_node, resolve=True),
                            "trainer": OmegaConf.to_container(trainer_node, resolve=True),
                            "paths": OmegaConf.to_container(cfg.paths, resolve=True)})
    validate_eval(cfg, eff)
    check_trainer_kwargs(eff.trainer.pl)
    (run_dir / "config_resolved.yaml").write_text(OmegaConf.to_yaml(effective_config(cfg, eff)))
    data = pipeline.load_data(eff)
    dtype = cfg.dtype or (run_cfg.student.get("dtype") if run_cfg is not None else None) or "float32"
    student = load_model(location, arch, str(dtype), run_cfg, pipeline.cache_dir(cfg))
    stop = list(eff.task.get("until") or [])
    run_results = _run_results(source_run)
    if task_node is not cfg.task and run_results.get("stop_strings") is not None:
        stop = list(run_results["stop_strings"])  # the run's own: it dropped those found inside its targets
    module = DistillModule(student, data.task, lr=1.0, stop=stop, eval_prompt_prefix=prefix)
    trainer = build_trainer(eff.trainer.pl, [], run_dir)
    datamodule = EvalDataModule(data.test, eff.trainer.eval_batch_size)
    accuracy, predictions = pipeline.evaluate(trainer, module, datamodule, "test")
    results: dict[str, Any] = {
        "model": str(cfg.model), "loaded_from": location, "source_run": str(source_run) if source_run else None,
        "task": data.task.name, "task_version": data.task.version, "num_test_examples": len(predictions),
        "test_accuracy": accuracy, "prompt_prefix": prefix, "stop_strings": stop, "dtype": str(dtype),
    }
    if run_results:
        results["run_test_accuracy"] = run_results.get("test_accuracy")
    if k is not None:
        with pipeline.inference(eff, student, trainer):
            votes = majority_votes(student, data.task, data.test, int(k), float(cfg.eval.temperature),
                                   int(eff.trainer.eval_batch_size), stop, int(cfg.eval.seed))
        for row, vote, example in zip(predictions, votes, data.test):
            row.update(maj_answers=list(vote.answers), maj_predicted=vote.majority_answer,
                       maj_correct=vote.majority_answer == example.answer)
        results.update(maj_at_k=int(k), maj_temperature=float(cfg.eval.temperature),
                       test_accuracy_maj_at_k=sum(v.majority_answer == e.answer for v, e in zip(votes, data.test))
                       / max(1, len(votes)))
    results.update(provenance(device=pipeline.inference_device(trainer), precision=str(trainer.precision), started=started))
    results["runtime_s"] = round(time.time() - started, 1)
    pipeline.write_jsonl(run_dir / "predictions.jsonl", predictions)
    pipeline.write_results(run_dir, results)
    log.info("%s on %s: accuracy %.4f%s; results in %s", cfg.model, data.task.name, accuracy,
             f", maj@{k} {results['test_accuracy_maj_at_k']:.4f}" if k else "", run_dir / "results.json")
    return results


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="eval")
def _main(cfg: DictConfig) -> None:
    quiet()
    try:
        run(cfg)
    except TailkdError as err:
        log.error("tailkd-eval: %s", err)
        sys.exit(2)


def main() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("WANDB_SILENT", "true")
    run_hydra_cli("tailkd-eval", _main)


if __name__ == "__main__":
    main()
