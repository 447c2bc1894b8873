"""Find finished runs under one or more folders and describe each by the settings that define it.

A run is a folder with a ``results.json``. Its *setting* is what was swept: the Hydra overrides of the
job (``.hydra/overrides.yaml``, written by every Hydra run) without ``seed``, plus task, student and
method as the run recorded them (so ``task=chain_sum`` given or left to the default is one setting).
Runs without Hydra's record fall back to the fields of ``results.json``.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

log = logging.getLogger(__name__)

# always part of a setting, read from results.json
CORE = ("task", "student", "method")
# overrides that change how a run is recorded or run, not what it measures
IGNORED = ("seed", "logger", "paths", "trainer.num_threads", "trainer.pl.enable_progress_bar", "trainer.pl.accelerator",
           "trainer.pl.devices", "trainer.pl.strategy", "trainer.pl.num_nodes")
# config groups a method without signals ignores (finetune runs swept together with signal presets)
SIGNAL_GROUPS = ("signals", "ta")
# a multirun records its jobs' overrides with the grammar's special characters backslash-escaped
# (`${seed}` as `$\{seed\}`), a single run as given: read both as given
_HYDRA_ESCAPE = re.compile(r"\\([\\()\[\]{}:=, \t])")
# used when a run has no Hydra overrides
FALLBACK = {"budget.max_queries": "budget_max_queries", "budget.max_usd": "budget_max_usd",
            "teacher.corruption.rate": "teacher_error_rate", "signals": "signals_preset"}


@dataclass
class Run:
    path: Path
    results: dict[str, Any]
    setting: dict[str, str] = field(default_factory=dict)

    @property
    def seed(self) -> Any:
        return self.results.get("seed")


@dataclass
class Skipped:
    path: Path
    reason: str


def find_runs(folders: list[Path], metric: str = "test_accuracy",
              ignore: Sequence[str] = ()) -> tuple[list[Run], list[Skipped]]:
    """Every ``results.json`` below ``folders`` that reports ``metric``; unreadable ones are skipped
    with the reason (a report over a half-finished sweep should still be written). ``ignore``: overrides
    left out of every setting, for one that differs by seed by design (each seed replaying its own
    collection: ``teacher.path``)."""
    runs, skipped = [], []
    seen: set[Path] = set()
    for folder in folders:
        for path in sorted(Path(folder).rglob("results.json")):
            hidden = any(part.startswith(".") for part in path.relative_to(folder).parts[:-1])
            if hidden or path.resolve() in seen:  # .submitit/, Lightning's per-rank .pl_hydra folders
                continue
            seen.add(path.resolve())
            results, reason = _read(path, metric)
            if reason:
                skipped.append(Skipped(path, reason))
            else:
                runs.append(Run(path.parent, results, setting_of(path.parent, results, ignore)))
    return runs, skipped


def _read(path: Path, metric: str) -> tuple[dict[str, Any], str | None]:
    """A results.json and, if it is no finished run with a number for ``metric``, why it is skipped (a
    run that reports ``"n/a"`` is not one more seed)."""
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:  # not JSON, or not UTF-8 text
        return {}, f"unreadable: {err}"
    if not isinstance(results, dict) or metric not in results:
        return {}, f"no {metric!r} (a tailkd-collect run or an unfinished one)"
    if not is_number(results[metric]):
        return {}, f"{metric!r} is {json.dumps(results[metric])}, not a number"
    return results, None


def is_number(value: Any) -> bool:
    """A number, or text that reads as one, and not NaN (``"n/a"``, None and booleans are none)."""
    if isinstance(value, bool) or value is None:
        return False
    try:
        return not math.isnan(float(value))
    except (TypeError, ValueError):
        return False


def setting_of(run_dir: Path, results: dict[str, Any], ignore: Sequence[str] = ()) -> dict[str, str]:
    setting = {key: _text(results.get(key)) for key in CORE}
    overrides = overrides_of(run_dir)
    if overrides is None:
        for key, field_name in FALLBACK.items():
            if results.get(field_name) is not None:
                setting[key] = _text(results[field_name])
    else:
        for key, value in overrides.items():
            if key in CORE or key.startswith("hydra") or any(within(key, i) for i in (*IGNORED, *ignore)):
                continue
            setting[key] = value
    if "signals_preset" not in results and not results.get("signals"):  # a method that computes no signals
        setting = {k: v for k, v in setting.items() if not is_signal_key(k)}
    return setting


def within(key: str, group: str) -> bool:
    """``key`` is ``group`` or one of its sub-keys (``teacher.path`` is within ``teacher``)."""
    return key == group or key.startswith(group + ".")


def overridden(key: str, runs: Sequence[Run]) -> bool:
    """Some run was given ``key`` (or a sub-key of it) as a Hydra override."""
    return any(within(k, key) for run in runs for k in (overrides_of(run.path) or {}))


def baseline_setting(setting: dict[str, str], baseline: str = "finetune") -> dict[str, str]:
    """The setting of the baseline at the same task, student, budget and teacher. ``baseline`` is a
    method, optionally with settings of its own: ``"tail signals=none"`` is TAiL's schedule alone."""
    method, wanted = _parse_baseline(baseline)
    out = {k: v for k, v in setting.items() if not is_signal_key(k) and not is_method_key(k)}
    return {**out, "method": method, **wanted}


def find_baseline(setting: dict[str, str], baseline: str, candidates: list[dict[str, str]]) -> dict[str, str] | None:
    """Among ``candidates``, the baseline's setting at the same task, student, budget and teacher.

    A baseline with signals of its own (``tail signals=none``) carries whatever signal settings its sweep
    gave every tail job (``ta=...``, ``signals.self_consistency.k=...``): of the matching candidates the
    one sharing most of ``setting``'s signal settings wins; a tie between several is no baseline, never
    a guess."""
    method, wanted = _parse_baseline(baseline)
    # a baseline of the row's own method must share its method.* settings (tail at warmup_fraction=0.1
    # is not tail none at 0.2); another method's baseline ignores them
    same_method = setting.get("method") == method

    def core(s: dict[str, str]) -> dict[str, str]:
        return {k: v for k, v in s.items() if k != "method" and k not in wanted and not is_signal_key(k)
                and (same_method or not is_method_key(k))}

    matches = [c for c in candidates if c.get("method") == method and all(c.get(k) == v for k, v in wanted.items())
               and core(c) == core(setting)]
    if setting in matches:
        return setting
    shared = [sum(setting.get(k) == v for k, v in c.items() if is_signal_key(k) and k not in wanted) for c in matches]
    best = [c for c, n in zip(matches, shared) if n == max(shared)]
    return best[0] if len(best) == 1 else None


def is_baseline(setting: dict[str, str], baseline: str = "finetune") -> bool:
    method, wanted = _parse_baseline(baseline)
    return setting.get("method") == method and all(setting.get(k) == v for k, v in wanted.items())


def _parse_baseline(baseline: str) -> tuple[str, dict[str, str]]:
    method, *extra = baseline.split()
    return method, {key: canonical(value) for key, _, value in (item.partition("=") for item in extra)}


def is_signal_key(key: str) -> bool:
    """``signals``, ``ta`` and their sub-keys: settings a method without signals ignores."""
    return key.split(".", 1)[0].split("/", 1)[0] in SIGNAL_GROUPS


def is_method_key(key: str) -> bool:
    """A method's own parameters (``method.selection``, ``method.align``, ...): part of its setting,
    left out when looking for the baseline at the same task, student, budget and teacher."""
    return key.startswith("method.")


def overrides_of(run_dir: Path) -> dict[str, str] | None:
    """The Hydra overrides a run was given, as key -> value (None: the run has no Hydra record)."""
    path = run_dir / ".hydra" / "overrides.yaml"
    if not path.exists():
        return None
    try:
        items = yaml.safe_load(path.read_text()) or []
    except yaml.YAMLError:
        log.warning("%s is not YAML; describing the run by its results.json", path)
        return None
    overrides = {}
    for item in items:
        key, sep, value = str(item).partition("=")
        if sep:
            overrides[key.lstrip("+~")] = canonical(_HYDRA_ESCAPE.sub(r"\1", value))
    return overrides


def canonical(value: str) -> str:
    """A setting's value as users type it: a Hydra multirun records ``method.revision=false`` as
    ``False``, and a ``--baseline`` or ``--oracle`` written as on the command line must still match it."""
    return value.lower() if value.lower() in ("true", "false") else value


def _text(value: Any) -> str:
    return "" if value is None else str(value)
