"""Every file under conf/ composes, resolves and builds what it configures."""

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

from tailkd.config import config_dir, validate
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
    covered |= {CONF / "train.yaml", CONF / "collect.yaml"} | set((CONF / "hydra").glob("*.yaml"))
    assert set(CONF.rglob("*.yaml")) == covered


@pytest.mark.parametrize("group,name", _options(), ids=lambda x: str(x))
def test_config_composes_and_builds(group, name, tmp_path):
    overrides = [f"{group}={name}"]
    if (group, name) == ("teacher", "recorded"):
        replay = tmp_path / "annotations.jsonl"
        replay.write_text('{"example_id": "x", "text": "The answer is 1."}\n')
        overrides.append(f"teacher.path={replay}")
    cfg = _compose(overrides)
    resolved = OmegaConf.to_container(cfg, resolve=True)  # every interpolation resolves
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


def test_collect_config_composes(tmp_path):
    cfg = _compose(["teacher=openai", "task=gsm8k"], name="collect")
    resolved = OmegaConf.to_container(cfg, resolve=True)
    build_collector(resolved["teacher"], resolved["budget"], Task(resolved["task"]), cache_dir=tmp_path)


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
