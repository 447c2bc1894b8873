"""Structured configs (Hydra's ConfigStore) for the config groups with one shape: ``trainer``, ``budget``,
``signals`` and ``paths``. Each group's YAML starts from its schema (``defaults: [/schema/<group>@_here_]``),
so a value of the wrong type (``trainer.lr=abc``) or a key the group does not have is refused while the
config is composed, before anything is loaded, by every CLI that uses the group.

The YAML files hold the defaults (the documented values a user reads); the schema holds each setting's
type, its range (``rule``, checked by :func:`tailkd.config.validate` where a type cannot say it, e.g.
``lr > 0``) and what it means (``help``). Groups whose keys depend on the option chosen (``method``,
``teacher``, ``ta``, ``student``, ``task``) are checked by what they build: a recipe's or a backend's
own arguments, ``tasks.registry``'s and ``teachers.settings``' rules."""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from tailkd.settings import OPTIONAL_POSITIVE_INT, POSITIVE, POSITIVE_INT, SHARE, Num


def setting(help: str, rule: Num | None = None) -> Any:  # noqa: A002 (TRL's and argparse's word)
    """A setting whose value the group's YAML gives: its range ``rule`` (if a type cannot say it) and
    its ``help``."""
    return field(default=MISSING, metadata={"help": help, "rule": rule})


def group(cls: type) -> Any:
    """A sub-group of settings (``signals.self_consistency``)."""
    return field(default_factory=cls, metadata={"group": cls})


@dataclass
class TrainerConfig:
    batch_size: int = setting("examples per optimiser step (per GPU with trainer=ddp)", POSITIVE_INT)
    eval_batch_size: int = setting("questions per generate call when scoring", POSITIVE_INT)
    lr: float = setting("peak learning rate of AdamW", POSITIVE)
    weight_decay: float = setting("AdamW's weight decay", Num(low=0))
    warmup_ratio: float = setting("share of each stage's optimiser steps with linear warm-up; cosine decay after", SHARE)
    checkpoint_every_n_steps: int | None = setting(
        "resumable checkpoints every N steps (null: only at the end of each stage)", OPTIONAL_POSITIVE_INT)
    eval_before: bool = setting("also score the untrained student (and TAiL's warmed-up one)")
    save_student: bool = setting("keep the distilled student in the run folder (student/)")
    num_threads: int | None = setting("torch CPU threads (null: torch's default)", OPTIONAL_POSITIVE_INT)
    # Lightning's keyword arguments, passed on as they are: Lightning owns their types
    # (tailkd.training.trainer.check_trainer_kwargs tries them before anything is bought)
    pl: dict[str, Any] = setting("keyword arguments of pytorch_lightning.Trainer")


@dataclass
class BudgetConfig:
    max_queries: int | None = setting("teacher requests a run may buy (null: no limit)")
    max_tokens: int | None = setting("teacher tokens a run may buy (null: no limit)")
    max_usd: float | None = setting("dollars a run may spend on the teacher (null: no limit)")
    order: str = setting("the order questions are bought in: random (the seed's shuffle)")


@dataclass
class SignalConfig:
    enabled: bool = setting("this signal takes part in the weight")
    value: str = setting("which way round the signal counts (tailkd.signals.settings.VALUES)")
    weight: float = setting("exponent in a product, coefficient in a mean")


@dataclass
class SelfConsistencyConfig(SignalConfig):
    k: int = setting("samples per question, in one batched generate call")
    temperature: float = setting("sampling temperature")


@dataclass
class OracleConfig:
    enabled: bool = setting("weight 1 where the teacher's answer is gold's, 0 elsewhere (a reference)")


@dataclass
class SignalsConfig:
    """Checked further, with the choices of each word, by :meth:`tailkd.signals.settings.SignalSettings.from_cfg`."""

    name: str = setting("the preset's name, shown in reports")
    use: str = setting("weight: loss weight | filter: drop the lowest | select: buy least self-consistent first")
    self_consistency: SelfConsistencyConfig = group(SelfConsistencyConfig)
    ta_student: SignalConfig = group(SignalConfig)
    ta_teacher: SignalConfig = group(SignalConfig)
    oracle: OracleConfig = group(OracleConfig)
    normalise: str = setting("rank | minmax | softmax | none")
    softmax_temperature: float = setting("temperature of normalise=softmax")
    combine: str = setting("product | mean")
    floor: float = setting("use=weight: the lowest combined score still weighs this much")
    filter_threshold: float = setting("use=filter: the share of annotations dropped")
    select_candidates: int | None = setting("use=select: how many unbought questions are sampled (null: all)")
    cache: bool = setting("reuse the raw signals (TAiL) and one-shot scores (ARTE) of an identical student")


@dataclass
class PathsConfig:
    cache_dir: str | None = setting("converted models, signals and the teacher cache")
    checkpoint_dir: str | None = setting("resumable training checkpoints")
    cache_url: str | None = setting("a PostgreSQL teacher cache shared by hosts")


SCHEMAS = {"trainer": TrainerConfig, "budget": BudgetConfig, "signals": SignalsConfig, "paths": PathsConfig}


def rules(schema: type, prefix: str = "") -> dict[str, Num]:
    """The range rule of every setting of ``schema`` that has one, by dotted key."""
    found: dict[str, Num] = {}
    for item in dataclasses.fields(schema):
        if item.metadata.get("rule") is not None:
            found[prefix + item.name] = item.metadata["rule"]
        if item.metadata.get("group") is not None:
            found |= rules(item.metadata["group"], f"{prefix}{item.name}.")
    return found


def expected(schema: type, dotted: str) -> str | None:
    """What the setting ``dotted`` of ``schema`` must hold, in the words of :meth:`Num.describe`, or
    None where the schema does not say (a key it lacks, Lightning's ``pl``)."""
    head, _, rest = dotted.partition(".")
    item = next((f for f in dataclasses.fields(schema) if f.name == head), None)
    if item is None:
        return None
    if rest:
        return expected(item.metadata["group"], rest) if item.metadata.get("group") else None
    if item.metadata.get("rule") is not None:
        return item.metadata["rule"].describe()
    hint = typing.get_type_hints(schema)[item.name]
    optional = typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in typing.get_args(hint)
    if optional:
        hint = next(arg for arg in typing.get_args(hint) if arg is not type(None))
    kind = _KINDS.get(hint)
    return kind and kind + (" or null" if optional else "")


_KINDS = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


def unknown(node: Mapping[str, Any], schema: type, prefix: str) -> str | None:
    """The first key of ``node`` (the group ``prefix``) its schema does not have, e.g. one added with
    ``+trainer.lrr=1``, named with the settings there are; None if every key is a setting."""
    names = [item.name for item in dataclasses.fields(schema)]
    for key in node:
        if key not in names:
            return f"{prefix}.{key} is not a setting of {prefix} (those are: {', '.join(names)})"
    for item in dataclasses.fields(schema):
        if item.metadata.get("group") is not None and isinstance(node.get(item.name), Mapping):
            found = unknown(node[item.name], item.metadata["group"], f"{prefix}.{item.name}")
            if found:
                return found
    return None


def register() -> None:
    """Store the schemas as ``schema/<group>``; idempotent (Hydra replaces an entry stored twice)."""
    store = ConfigStore.instance()
    for name, schema in SCHEMAS.items():
        store.store(group="schema", name=name, node=schema)


register()
