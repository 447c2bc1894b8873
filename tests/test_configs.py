"""Every file under conf/ composes, resolves and builds what it configures."""

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

from tailkd.config import config_dir, validate
from tailkd.errors import ConfigError
from tailkd.tasks import Task
from tailkd.teachers import Budget, build_collector

CONF = config_dir()
GROUPS = sorted(p.name for p in CONF.iterdir() if p.is_dir() and p.name != "hydra")


def _options():
    return [(group, f.stem) for group in GROUPS for f in sorted((CONF / group).glob("*.yaml"))]


def _compose(overrides, name="train"):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(name, overrides=overrides, return_hydra_config=False)


def test_every_config_file_is_covered():
    covered = {CONF / group / f"{name}.yaml" for group, name in _options()}
    covered |= {CONF / "train.yaml", CONF / "collect.yaml", CONF / "eval.yaml", CONF / "export.yaml"} | set((CONF / "hydra").glob("*.yaml"))
    covered |= {CONF / "hydra" / "launcher" / f"{name}.yaml" for name in LAUNCHERS}
    assert set(CONF.rglob("*.yaml")) == covered


@pytest.mark.parametrize("group,name", _options(), ids=lambda x: str(x))
def test_config_composes_and_builds(group, name, tmp_path):
    overrides = [f"{group}={name}"]
    if group == "experiment_method":  # picked by an experiment and a method together, never on its own
        experiment, method = name.split("_", 1)
        overrides = [f"experiment={experiment}", f"method={method}"]
    if (group, name) == ("teacher", "recorded"):
        replay = tmp_path / "annotations.jsonl"
        replay.write_text('{"example_id": "x", "text": "The answer is 1."}\n')
        overrides.append(f"teacher.path={replay}")
    cfg = _compose(overrides)
    resolved = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)  # resolves, fills every schema key
    validate(cfg)
    task = Task(resolved["task"])
    build_collector(resolved["teacher"], resolved["budget"], task, cache_dir=tmp_path, progress=False)
    Budget.from_cfg(resolved["budget"])
    recipe = instantiate(cfg.method)
    assert recipe.name == cfg.method.name
    assert cfg.student.arch in ("causal", "seq2seq")
    if group == "task":
        assert cfg.task.name == name
    if group == "student":
        assert cfg.student.name == name


LAUNCHERS = sorted(p.stem for p in (CONF / "hydra" / "launcher").glob("*.yaml"))


@pytest.mark.parametrize("name", LAUNCHERS)
def test_launcher_config_composes_and_names_an_installed_launcher(name):
    from hydra.utils import get_class

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=[f"hydra/launcher={name}"], return_hydra_config=True)
    launcher = get_class(cfg.hydra.launcher._target_)
    assert launcher.__name__ in ("JoblibLauncher", "SlurmLauncher")
    assert "submitit_folder" in cfg.hydra.launcher or cfg.hydra.launcher.n_jobs >= 1


def test_trainer_strategies_build():
    from pytorch_lightning.strategies import FSDPStrategy
    from transformers.models.llama.modeling_llama import LlamaDecoderLayer

    from tailkd.training.strategies import fsdp

    cfg = _compose(["trainer=fsdp"])
    strategy = instantiate(cfg.trainer.pl.strategy)
    assert isinstance(strategy, FSDPStrategy)
    assert fsdp(["LlamaDecoderLayer"]).kwargs["auto_wrap_policy"]._module_classes == {LlamaDecoderLayer}
    assert _compose(["trainer=ddp"]).trainer.pl.strategy == "ddp"
    with pytest.raises(ConfigError, match="NoSuchBlock"):
        fsdp(["NoSuchBlock"])


def test_collect_config_composes(tmp_path):
    cfg = _compose(["teacher=openai", "task=gsm8k"], name="collect")
    resolved = OmegaConf.to_container(cfg, resolve=True)
    build_collector(resolved["teacher"], resolved["budget"], Task(resolved["task"]), cache_dir=tmp_path)


def test_eval_config_composes():
    cfg = _compose(["model=/some/run", "task=gsm8k", "eval.maj_at_k=4"], name="eval")
    resolved = OmegaConf.to_container(cfg, resolve=True)
    assert resolved["model"] == "/some/run" and resolved["eval"]["maj_at_k"] == 4
    Task(resolved["task"])
    assert resolved["trainer"]["eval_batch_size"] >= 1


def test_export_config_composes():
    cfg = _compose(["out=/some/folder", "task=commonsense_qa"], name="export")
    resolved = OmegaConf.to_container(cfg, resolve=True)
    assert resolved["out"] == "/some/folder" and resolved["task"]["name"] == "commonsense_qa"
    Task(resolved["task"])


def test_hydra_run_dirs_name_the_run():
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=["task=gsm8k", "method=distill_step_by_step"], return_hydra_config=True)
    assert "gsm8k/distill_step_by_step" in cfg.hydra.run.dir


def test_readme_test_command_is_what_ci_runs(repo: Path):
    readme = (repo / "README.md").read_text()
    ci = (repo / ".ci" / "run").read_text()
    commands = [line for line in readme.splitlines() if line.startswith("pip install")]
    assert len(commands) == 2, "the README's quick start has exactly two commands"
    assert "torch==2.13.0" in commands[0] and "tailkd-train" in commands[0]
    assert commands[1] in ci.splitlines()


def test_signal_settings_default_to_what_conf_signals_all_says():
    """A signals config that leaves a setting out gets all.yaml's value, not another default in the code
    (floor was 0.1 in all.yaml and 0.0 in the code)."""
    from dataclasses import replace

    from tailkd.signals import SignalSettings

    composed = SignalSettings.from_cfg(OmegaConf.to_container(_compose(["signals=all"]).signals, resolve=True))
    assert composed == replace(SignalSettings(), enabled=composed.enabled)
    assert composed.enabled == ("self_consistency", "ta_student", "ta_teacher")
