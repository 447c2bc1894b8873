"""Settings and files a user can get wrong are refused by name, as one line, before anything is
loaded or paid for: wrong types, impossible teacher limits, Lightning settings this machine cannot
run, unreadable files, and the misleading messages that used to hide them."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from tailkd import config
from tailkd.config import config_dir, validate
from tailkd.errors import ConfigError, DataError

from helpers import task_cfg
from test_cli import train
from test_teacher_openai import FAST, FAST_OVERRIDES, collect_cli, make_collector, openai_overrides


def _compose(*overrides: str, name: str = "train"):
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose(name, overrides=list(overrides))


def _error_line(proc, cli: str) -> str:
    """The run stopped with exit 2 and said what is wrong on one line, without a traceback."""
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out[-3000:]
    assert "Traceback" not in out, out[-3000:]
    lines = [line for line in out.splitlines() if f"{cli}: " in line]
    assert len(lines) == 1, out[-3000:]
    return lines[0]


# -- item 5 and 7: wrong types and impossible limits, named with their value ------------------------
OPENAI = ["teacher=openai"]


@pytest.mark.parametrize("overrides,message", [
    (["trainer.lr=abc"], "trainer.lr must be a number > 0 (got 'abc')"),
    (["trainer.batch_size=abc"], "trainer.batch_size must be an integer >= 1 (got 'abc')"),
    (["trainer.eval_batch_size=2.5"], "trainer.eval_batch_size must be an integer >= 1 (got 2.5)"),
    (["trainer.eval_before=maybe"], "trainer.eval_before must be true or false (got 'maybe')"),
    (["budget.max_usd=abc"], "budget.max_usd must be a number or null (got 'abc')"),
    (["signals.self_consistency.k=abc"], "signals.self_consistency.k must be an integer (got 'abc')"),
    (["trainer.lrr=1"], "trainer.lrr is not a setting of trainer (those are: batch_size, eval_batch_size, lr, "
                        "weight_decay, warmup_ratio, checkpoint_every_n_steps, eval_before, save_student, "
                        "num_threads, pl)"),
    (["signals.self_consistency.kk=3"], "signals.self_consistency.kk is not a setting of signals.self_consistency "
                                        "(those are: enabled, value, weight, k, temperature)"),
    (["signals.select_candidates=many"], "signals.select_candidates must be an integer or null (got 'many')"),
    (["task=bogus"], "In 'train': Could not find 'task/bogus' Available options in 'task': chain_sum, "
                     "commonsense_qa, gsm8k, gsm_symbolic, strategyqa, svamp"),
])
def test_a_setting_of_the_wrong_type_is_refused_while_composing(overrides, message):
    """The groups with a schema (tailkd/schema.py) are type-checked by Hydra before any check of ours
    runs; the message is one line, in the words validate() uses for a value out of range."""
    from hydra.errors import CompactHydraException

    with pytest.raises(CompactHydraException) as err:
        _compose(*overrides)
    assert config.composition_error(err.value) == message


@pytest.mark.parametrize("cli,overrides,message", [
    ("tailkd-train", ["trainer.lr=abc"], "tailkd-train: trainer.lr must be a number > 0 (got 'abc')"),
    ("tailkd-train", ["-m", "trainer.lr=abc,0.1"], "tailkd-train: trainer.lr must be a number > 0 (got 'abc')"),
    ("tailkd-collect", ["budget.max_queries=x"], "tailkd-collect: budget.max_queries must be an integer or null (got 'x')"),
])
def test_the_cli_names_what_hydra_cannot_compose_in_one_line(tmp_path, cli, overrides, message):
    import subprocess
    import sys

    module = "tailkd.cli." + cli.removeprefix("tailkd-")
    cmd = [sys.executable, "-m", module, *overrides, f"hydra.run.dir={tmp_path}", f"hydra.sweep.dir={tmp_path}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert _error_line(proc, cli) == message
    assert not [p for p in tmp_path.iterdir() if p.is_dir()]  # no job's folder: nothing was started


def test_a_key_added_to_a_group_with_a_schema_is_named():
    """Hydra lets ``+trainer.lrr=1`` add a key; a typo must not be ignored while the run goes on."""
    with pytest.raises(ConfigError, match=r"^trainer.lrr is not a setting of trainer \(those are: batch_size, "):
        validate(_compose("+trainer.lrr=1"))
    with pytest.raises(ConfigError, match=r"^budget.max_query is not a setting of budget"):
        config.validate_collect(_compose("+budget.max_query=5", name="collect"))


def test_an_error_inside_the_run_keeps_its_traceback(tmp_path):
    """Only what Hydra cannot compose becomes one line: a recipe that cannot be built is not a typo."""
    proc = train(tmp_path, "experiment=smoke", "method._target_=tailkd.nope.Recipe")
    assert proc.returncode == 1 and "Traceback" in proc.stderr, proc.stderr[-2000:]


@pytest.mark.parametrize("overrides,message", [
    (["task.max_new_tokens=abc"], "task.max_new_tokens must be an integer >= 1 (got 'abc')"),
    (["seed=abc"], "seed must be an integer (got 'abc')"),
    (["trainer.pl.max_epochs=-2"], "trainer.pl.max_epochs must be an integer >= -1 or null (got -2)"),
    (["trainer.pl.max_epochs=abc"], "trainer.pl.max_epochs must be an integer >= -1 or null (got 'abc')"),
    (["method=tail", "method.warmup_fraction=abc"], "method.warmup_fraction must be a number in [0, 1) (got 'abc')"),
    ([*OPENAI, "teacher.max_tokens=abc"], "teacher.max_tokens must be an integer >= 1 or null (got 'abc')"),
    ([*OPENAI, "teacher.max_tokens=0"], "teacher.max_tokens must be an integer >= 1 or null (got 0)"),
    ([*OPENAI, "teacher.max_tokens=-5"], "teacher.max_tokens must be an integer >= 1 or null (got -5)"),
    ([*OPENAI, "teacher.timeout_s=abc"], "teacher.timeout_s must be a number > 0 (got 'abc')"),
    ([*OPENAI, "teacher.retry.max_attempts=0"], "teacher.retry.max_attempts must be an integer >= 1 (got 0)"),
    ([*OPENAI, "teacher.max_requests_per_minute=0"],
     "teacher.max_requests_per_minute must be an integer >= 1 or null (got 0)"),
    ([*OPENAI, "teacher.max_requests_per_minute=abc"],
     "teacher.max_requests_per_minute must be an integer >= 1 or null (got 'abc')"),
    ([*OPENAI, "teacher.max_tokens_per_minute=-1"],
     "teacher.max_tokens_per_minute must be an integer >= 1 or null (got -1)"),
    ([*OPENAI, "teacher.max_connection_failures=0"], "teacher.max_connection_failures must be an integer >= 1 (got 0)"),
])
def test_a_wrong_setting_is_named_with_its_value(overrides, message):
    with pytest.raises(ConfigError) as err:
        validate(_compose(*overrides))
    assert str(err.value) == message


@pytest.mark.parametrize("overrides,key", [
    (["task.test_size=0"], "task.test_size"),
    (["seed=abc"], "seed"),
    ([*OPENAI, "teacher.retry.max_attempts=0"], "teacher.retry.max_attempts"),
    ([*OPENAI, "teacher.max_requests_per_minute=0"], "teacher.max_requests_per_minute"),
])
def test_collect_checks_before_loading_or_sending(overrides, key):
    """tailkd-collect runs the same checks; test_size=0 is named, not "no test question left"."""
    with pytest.raises(ConfigError, match=key):
        config.validate_collect(_compose(*overrides, name="collect"))


@pytest.mark.parametrize("teacher", [{"max_requests_per_minute": 0}, {"max_requests_per_minute": "abc"},
                                     {"max_tokens": 0}, {"retry": {**FAST, "max_attempts": 0}}])
def test_the_collector_refuses_impossible_teacher_limits(fake, api_key, tmp_path, teacher):
    """Built from code as well as from a CLI: nothing is sent, no request fails inside the client."""
    from tailkd.tasks import load_task_data

    server = fake()
    data = load_task_data(task_cfg(train_size=8, test_size=2))
    with pytest.raises(ConfigError, match="teacher." + next(iter(teacher))):
        make_collector(server, tmp_path, data, {"max_queries": 4}, **teacher)
    assert server.requests == []


def test_a_recipe_setting_out_of_range_is_a_config_error_not_hydras():
    from tailkd.cli.train import build_recipe

    with pytest.raises(ConfigError, match=r"method.warmup_fraction must be in \[0, 1\) \(got 1.5\)"):
        build_recipe(_compose("method=tail", "method.warmup_fraction=1.5"))


# -- item 6: what Lightning would refuse is refused before the teacher is paid ------------------------
def test_lightning_settings_are_checked_before_anything_is_bought(fake, api_key, tmp_path):
    server = fake()
    proc = train(tmp_path, "experiment=smoke", "logger=csv", *openai_overrides(server),
                 "trainer.pl.accelerator=mps")  # never available on Linux
    line = _error_line(proc, "tailkd-train")
    assert "trainer.pl" in line and "mps" in line.lower()
    assert server.requests == [] and not (tmp_path / "annotations.jsonl").exists()


@pytest.mark.parametrize("overrides,needle", [
    (["trainer.pl.precision=bogus"], "trainer.pl: Precision 'bogus' is invalid"),
    (["+trainer.pl.no_such_option=1"], "trainer.pl: "),
    (["trainer.pl.devices=0"], "trainer.pl: "),
])
def test_lightning_trainer_arguments_are_tried_here(overrides, needle):
    from tailkd.training.trainer import check_trainer_kwargs

    with pytest.raises(ConfigError, match=needle):
        check_trainer_kwargs(_compose(*overrides).trainer.pl)


def test_an_accelerator_this_machine_lacks_is_named():
    import torch

    from tailkd.training.trainer import check_trainer_kwargs

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ConfigError, match="trainer.pl"):
        check_trainer_kwargs(_compose("trainer.pl.accelerator=gpu").trainer.pl)
    check_trainer_kwargs(_compose().trainer.pl)  # the defaults pass


# -- item 7: files that cannot be read ------------------------------------------------------------
def test_a_data_file_with_a_byte_that_is_not_utf8_names_file_and_line(tmp_path):
    from tailkd.jsonl import read_objects

    path = tmp_path / "train.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"a": 1}\n{"a": "caf\xe9"}\n')  # a BOM is fine; Latin-1 is not
    with pytest.raises(DataError, match=rf"{path} line 2: not UTF-8 text \(byte 0xe9 at byte 11 of the line\)"):
        list(read_objects(path))


def test_json_lines_from_a_file_or_from_text_are_read_alike(tmp_path):
    from tailkd.jsonl import parse_objects, read_rows

    path = tmp_path / "signals.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"a": 1}\n\n{"a": 2}\n')
    assert read_rows(path) == [{"a": 1}, {"a": 2}] and read_rows(tmp_path / "none.jsonl", missing_ok=True) == []
    text = '\ufeff{"a": 1}\n\n{"a": 2}'
    assert [(row, where) for row, where, _ in parse_objects(text.splitlines(), "batch file f")] == [
        ({"a": 1}, "batch file f line 1"), ({"a": 2}, "batch file f line 3")]
    with pytest.raises(DataError, match="batch file f line 2: expected a JSON object, got list"):
        list(parse_objects(['{"a": 1}', "[1]"], "batch file f"))


def test_a_recorded_file_for_other_questions_is_a_data_error_naming_it(tmp_path):
    from tailkd.methods.finetune import Finetune

    path = tmp_path / "other_task.jsonl"
    path.write_text(json.dumps({"question": "Is the sky green?", "text": "No. The answer is no."}) + "\n")
    cfg = _compose("experiment=smoke", "logger=csv", "teacher=recorded", f"teacher.path={path}",
                   f"paths.cache_dir={tmp_path / 'cache'}")
    with pytest.raises(DataError, match=f"{path} answers none of chain_sum's 48 training questions"):
        Finetune("finetune").run(cfg, tmp_path)


def test_a_cache_path_that_is_a_file_or_no_database_is_named(tmp_path):
    afile = tmp_path / "cache_file"
    afile.write_text("not a folder")
    with pytest.raises(ConfigError, match=f"paths.cache_dir={afile} is a file, not a folder"):
        validate(_compose(f"paths.cache_dir={afile}"))
    folder = tmp_path / "cache"
    folder.mkdir()
    (folder / "teacher_cache.sqlite").write_bytes(b"garbage " * 200)
    with pytest.raises(ConfigError, match="teacher_cache.sqlite is not a readable SQLite database"):
        config.validate_collect(_compose(f"paths.cache_dir={folder}", name="collect"))


def test_a_student_folder_with_an_empty_weights_file_is_named(tmp_path):
    folder = tmp_path / "student"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (folder / "model.safetensors").write_bytes(b"")
    with pytest.raises(ConfigError, match=f"{folder / 'model.safetensors'} is not a readable safetensors file"):
        validate(_compose("student=smollm2-135m", f"student.pretrained={folder}"))


# -- item 7 and 8: tailkd-report -----------------------------------------------------------------
def _result(folder: Path, **fields) -> None:
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps({"task": "chain_sum", "student": "tiny", "method": "finetune",
                                                     **fields}))


def test_report_skips_unreadable_and_non_numeric_runs_and_names_an_out_it_cannot_write(tmp_path, capsys):
    from tailkd.cli.report import main as report
    from tailkd.report import find_runs

    _result(tmp_path / "runs" / "0", seed=0, test_accuracy=0.5)
    _result(tmp_path / "runs" / "1", seed=1, test_accuracy="n/a")
    (tmp_path / "runs" / "2").mkdir()
    (tmp_path / "runs" / "2" / "results.json").write_bytes(b'{"test_accuracy": "caf\xe9"}')
    runs, skipped = find_runs([tmp_path / "runs"])
    assert [r.seed for r in runs] == [0]
    reasons = {s.path.parent.name: s.reason for s in skipped}
    assert reasons["1"] == "'test_accuracy' is \"n/a\", not a number" and "unreadable" in reasons["2"]
    assert report([str(tmp_path / "runs"), "--out", str(tmp_path / "rep")]) == 0
    blocked = tmp_path / "a_file"
    blocked.write_text("")
    capsys.readouterr()
    assert report([str(tmp_path / "runs"), "--out", str(blocked / "rep")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"tailkd-report: cannot write the report into {blocked / 'rep'}") and err.count("\n") == 1


# -- item 8: misleading messages -------------------------------------------------------------------
def test_eval_tells_a_collect_folder_and_an_unfinished_run_from_a_run_without_student(tmp_path):
    from tailkd.cli.eval import locate

    collect = tmp_path / "collect"
    collect.mkdir()
    (collect / "config_resolved.yaml").write_text(OmegaConf.to_yaml(_compose(name="collect")))
    (collect / "annotations.jsonl").write_text("")
    with pytest.raises(ConfigError, match="is a tailkd-collect folder: it holds teacher annotations, no model"):
        locate(str(collect))
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    config = _compose("experiment=smoke", "trainer.save_student=false")
    (unfinished / "config_resolved.yaml").write_text(OmegaConf.to_yaml(config))
    with pytest.raises(ConfigError, match="did not finish"):
        locate(str(unfinished))
    (unfinished / "results.json").write_text("{}")
    with pytest.raises(ConfigError, match="trainer.save_student=false"):
        locate(str(unfinished))


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_an_unreachable_server_stops_the_collection_with_one_line(api_key, tmp_path):
    base_url = f"http://127.0.0.1:{_closed_port()}/v1"
    (tmp_path / "run").mkdir()
    proc = collect_cli(tmp_path / "run", tmp_path / "cache", "teacher=openai", f"teacher.base_url={base_url}",
                       "teacher.model=gpt-4o-mini", *FAST_OVERRIDES)
    out, err = proc.communicate(timeout=180)
    proc.stdout, proc.stderr = out, err
    line = _error_line(proc, "tailkd-collect")
    assert f"the server at {base_url} is unreachable" in line and "teacher.base_url" in line
    ledger = (tmp_path / "run" / "ledger.jsonl").read_text().splitlines()
    assert len(ledger) <= 8  # the requests in flight when it gave up, not all 300


def test_a_server_that_answered_once_is_not_given_up_on_for_connection_errors(fake, api_key, tmp_path):
    """Unreachable means never reached: a server that answered and then drops connections is a fault
    to retry (and record), not a reason to stop the run."""
    from tailkd.tasks import load_task_data

    server = fake()
    data = load_task_data(task_cfg(train_size=8, test_size=2))
    collector = make_collector(server, tmp_path, data, {"max_queries": 8}, max_connection_failures=2,
                               max_concurrency=1)
    assert len(collector.collect(data.train[:2])) == 2
    server.stop()
    assert collector.collect(data.train[2:5]) == []  # failed, recorded, no ConfigError


def test_an_unknown_buying_order_is_named():
    from tailkd.teachers.collect import get_selector

    with pytest.raises(ConfigError, match=r"budget.order='hardest_first' is unknown; choose one of \['random'\]"):
        get_selector("hardest_first")
