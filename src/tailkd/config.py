"""Where the Hydra configs live, and the checks every CLI runs before anything is loaded or paid for:
a value of the wrong type for a group's schema (``tailkd.schema``) refused while Hydra composes, each
numeric setting's range (a word or a 0 where a number belongs is named with its value, not met as a
traceback mid-run), and settings that need more than one config group to make sense; each is one line
with exit 2."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable
from pathlib import Path

from hydra.errors import ConfigCompositionException, OverrideParseException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException, ValidationError

from tailkd.errors import ConfigError
from tailkd.schema import SCHEMAS, TrainerConfig, expected, rules, unknown  # importing it registers them
from tailkd.settings import INT, OPTIONAL_POSITIVE_INT, POSITIVE_INT, SHARE, Num, check_numbers, require
from tailkd.tasks.registry import TASK_NUMBERS


def config_dir() -> Path:
    """The repository's ``conf/`` in a source checkout (editable install), else the copy packaged in
    the wheel."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parents[1] / "conf", here / "conf"):
        if (candidate / "train.yaml").is_file():
            return candidate
    raise ConfigError(f"tailkd's configs are missing: neither {here.parents[1] / 'conf'} nor {here / 'conf'} exists")


TRAINER_NUMBERS = {
    **rules(TrainerConfig),
    # Lightning's own keyword arguments: those it would only refuse in the middle of a run
    "pl.max_epochs": Num(integer=True, low=-1, null=True), "pl.max_steps": Num(integer=True, low=-1),
    "pl.min_epochs": Num(integer=True, low=0, null=True), "pl.accumulate_grad_batches": POSITIVE_INT,
    "pl.log_every_n_steps": OPTIONAL_POSITIVE_INT, "pl.gradient_clip_val": Num(low=0, null=True),
    "pl.num_sanity_val_steps": Num(integer=True, low=-1, null=True),
}
METHOD_NUMBERS = {"warmup_fraction": SHARE, "steps_of_tail": Num(low=0, high=1, open_high=True, null=True),
                  "steps_of_elad": OPTIONAL_POSITIVE_INT, "rationale_max_tokens": OPTIONAL_POSITIVE_INT}


def run_hydra_cli(name: str, main: Callable[[], object]) -> None:
    """Run the ``@hydra.main`` function ``main`` of the CLI ``name`` so that a config Hydra cannot compose
    (a value of the wrong type for its schema, a key or an option that does not exist) is one line
    naming it, with exit 2, like every setting tailkd refuses; Hydra itself prints several lines and
    exits 1. Anything else raised keeps its traceback."""
    if os.environ.get("HYDRA_FULL_ERROR") == "1":  # the user asked for Hydra's traceback
        main()
        return
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra then raises what it cannot compose instead of exiting
    try:
        main()
    except (ConfigCompositionException, OverrideParseException) as err:
        print(f"{name}: {composition_error(err)}", file=sys.stderr)
        sys.exit(2)
    finally:
        del os.environ["HYDRA_FULL_ERROR"]


def composition_error(err: Exception) -> str:
    """One line for what Hydra could not compose: a value of the wrong type or a key a group does not
    have is named as :func:`validate` names a value out of range, anything else is Hydra's message on
    one line."""
    cause = err.__cause__
    group, _, key = str(getattr(cause, "full_key", None) or "").partition(".")
    if group in SCHEMAS and key:
        if isinstance(cause, ValidationError) and (kind := expected(SCHEMAS[group], key)):
            return f"{cause.full_key} must be {kind} (got {cause.value!r})"
        if isinstance(cause, (ConfigAttributeError, ConfigKeyError)):
            nested: object = None
            for part in reversed(key.split(".")):
                nested = {part: nested}
            if found := unknown(nested, SCHEMAS[group], group):
                return found
    lines = str(err).splitlines()
    if isinstance(cause, OmegaConfBaseException):
        lines += str(cause.msg).splitlines()[:1]
    text, listing = "", False
    for line in lines:
        if line.startswith("Config search path"):  # where Hydra looked: not the user's mistake
            break
        if line.strip():
            item = line.startswith(("\t", " "))  # Hydra lists the options of a group one per line
            text += (", " if item and listing else " ") + line.strip()
            listing = item
    return text.strip()


def check_schema_keys(cfg: DictConfig) -> None:
    """A key added to a group with a schema (``+trainer.lrr=1``, which Hydra allows) is a typo to name,
    not a setting to ignore."""
    for group, schema in SCHEMAS.items():
        if group in cfg and (found := unknown(cfg[group], schema, group)):
            raise ConfigError(found)


def validate(cfg: DictConfig) -> None:
    """Impossible settings of a ``tailkd-train`` run, named before anything is loaded or paid for."""
    check_schema_keys(cfg)
    check_numbers(cfg, "", {"seed": INT})
    check_numbers(cfg.task, "task", TASK_NUMBERS)
    check_numbers(cfg.trainer, "trainer", TRAINER_NUMBERS)
    check_numbers(cfg.method, "method", METHOD_NUMBERS)
    checks = [
        (str(cfg.student.max_length) == "auto" or (isinstance(cfg.student.max_length, int) and cfg.student.max_length >= 16),
         f"student.max_length must be auto or a number >= 16 (got {cfg.student.max_length})"),
        (cfg.student.get("truncation", "keep_answer") in ("keep_answer", "drop"),
         f"student.truncation must be keep_answer or drop (got {cfg.student.get('truncation')})"),
    ]
    require(checks)
    check_spending(cfg)
    if cfg.paths.get("checkpoint_dir"):
        check_folder(Path(str(cfg.paths.checkpoint_dir)).expanduser(), "paths.checkpoint_dir", "TAILKD_CHECKPOINT_DIR")
    from tailkd.models.student import check_student_cfg  # imports torch: only when training

    check_student_cfg(cfg.student)


def validate_collect(cfg: DictConfig) -> None:
    """Impossible settings of a ``tailkd-collect`` run, named before anything is loaded or sent."""
    check_schema_keys(cfg)
    check_numbers(cfg, "", {"seed": INT})
    check_numbers(cfg.task, "task", TASK_NUMBERS)
    check_spending(cfg)


EVAL_NUMBERS = {"maj_at_k": Num(integer=True, low=2, null=True), "temperature": Num(low=0), "seed": INT}


def validate_eval(cfg: DictConfig, scored: DictConfig) -> None:
    """Impossible settings of a ``tailkd-eval`` run: its own, and those of the task and trainer it scores
    with (``scored``: a run's, or the command line's), named before a model or data is loaded."""
    check_schema_keys(cfg)
    check_numbers(cfg.eval, "eval", EVAL_NUMBERS)
    check_numbers(scored.task, "task", TASK_NUMBERS)
    check_numbers(scored.trainer, "trainer", TRAINER_NUMBERS)


def check_spending(cfg: DictConfig) -> None:
    """The teacher, the budget and the cache: what decides what is bought, before the first request."""
    from tailkd.teachers import Budget
    from tailkd.teachers.settings import check_teacher_cfg

    teacher = OmegaConf.to_container(cfg.teacher, resolve=True)
    check_teacher_cfg(teacher)
    Budget.from_cfg(OmegaConf.to_container(cfg.budget, resolve=True))
    check_cache_dir(cfg)


def check_cache_dir(cfg: DictConfig) -> None:
    """``paths.cache_dir`` is a folder this process can use, and the SQLite teacher cache in it, if there
    is one and no ``paths.cache_url`` replaces it, a database: found out now, not when the first paid
    answer is to be stored."""
    import sqlite3

    from tailkd.methods.annotate import cache_dir
    from tailkd.teachers import CACHE_FILE

    folder = cache_dir(cfg)
    check_folder(folder, "paths.cache_dir", "TAILKD_CACHE_DIR")
    database = folder / CACHE_FILE
    if cfg.paths.get("cache_url") or not database.exists():  # answers kept in PostgreSQL, or none yet
        return
    try:
        with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
            db.execute("PRAGMA schema_version").fetchone()
    except sqlite3.Error as err:
        raise ConfigError(f"{database} is not a readable SQLite database ({err}); move it away to start an "
                          f"empty teacher cache, or set paths.cache_dir") from err


def check_folder(folder: Path, key: str, env: str) -> None:
    """``folder`` exists (created if missing) and this user can read and write it."""
    import os

    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{key}={folder} is a file, not a folder (set {key} or {env})")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"{key}={folder} cannot be created ({err.strerror})") from err
    if not os.access(folder, os.R_OK | os.W_OK | os.X_OK):
        raise ConfigError(f"{key}={folder} is not readable and writable by this user")
