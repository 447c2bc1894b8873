"""What the ``signals`` config group asks for, checked once."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tailkd.errors import ConfigError
from tailkd.settings import require
from tailkd.signals.combine import COMBINERS, NORMALISERS

# ``oracle`` is no signal a method could have: it reads gold (1 where the teacher's answer is right),
# the reference that tells how much any signal could gain (conf/signals/oracle.yaml)
SIGNALS = ("self_consistency", "ta_student", "ta_teacher", "oracle")
VALUES = {
    "self_consistency": ("uncertainty", "consistency", "teacher_agreement"),
    "ta_student": ("doubt", "confidence"),
    "ta_teacher": ("confidence", "doubt"),
    "oracle": ("correct",),
}
USES = ("weight", "filter", "select")


@dataclass(frozen=True)
class SignalSettings:
    """What the ``signals`` group asks for. The defaults are conf/signals/all.yaml's (a test holds them
    equal): a signals config that leaves a setting out gets the documented one, not another."""

    enabled: tuple[str, ...] = ()  # a signal left out of the config is off
    values: Mapping[str, str] = field(default_factory=lambda: {name: VALUES[name][0] for name in SIGNALS})
    weights: Mapping[str, float] = field(default_factory=lambda: {name: 1.0 for name in SIGNALS})
    use: str = "weight"
    normalise: str = "rank"
    softmax_temperature: float = 1.0
    combine: str = "product"
    floor: float = 0.1
    filter_threshold: float = 0.2
    k: int = 8
    temperature: float = 0.7
    select_candidates: int | None = None  # use=select: how many unbought questions are sampled (None: all)

    @classmethod
    def from_cfg(cls, cfg: Mapping[str, Any]) -> SignalSettings:
        default = cls()
        enabled, values, weights = [], {}, {}
        for name in SIGNALS:
            node = cfg.get(name) or {}
            value = node.get("value", default.values[name])
            if value not in VALUES[name]:
                raise ConfigError(f"signals.{name}.value={value!r} is unknown; choose one of {list(VALUES[name])}")
            values[name], weights[name] = value, float(node.get("weight", default.weights[name]))
            if node.get("enabled", False):
                enabled.append(name)
        sampling = cfg.get("self_consistency") or {}
        select_candidates = cfg.get("select_candidates", default.select_candidates)
        settings = cls(
            tuple(enabled), values, weights, cfg.get("use", default.use), cfg.get("normalise", default.normalise),
            float(cfg.get("softmax_temperature", default.softmax_temperature)), cfg.get("combine", default.combine),
            float(cfg.get("floor", default.floor)), float(cfg.get("filter_threshold", default.filter_threshold)),
            int(sampling.get("k", default.k)), float(sampling.get("temperature", default.temperature)),
            None if select_candidates is None else int(select_candidates),
        )
        checks = [
            (settings.use in USES, f"signals.use={settings.use!r} is unknown; choose one of {list(USES)}"),
            (settings.normalise in NORMALISERS, f"signals.normalise={settings.normalise!r} is unknown; choose one of {list(NORMALISERS)}"),
            (settings.combine in COMBINERS, f"signals.combine={settings.combine!r} is unknown; choose one of {list(COMBINERS)}"),
            (0.0 <= settings.floor < 1.0, f"signals.floor must be in [0, 1) (got {settings.floor})"),
            (0.0 <= settings.filter_threshold < 1.0, f"signals.filter_threshold must be in [0, 1) (got {settings.filter_threshold})"),
            (settings.k >= 2, f"signals.self_consistency.k must be >= 2 (got {settings.k})"),
            (settings.temperature > 0, f"signals.self_consistency.temperature must be > 0 (got {settings.temperature})"),
            (settings.select_candidates is None or settings.select_candidates >= 1,
             f"signals.select_candidates must be >= 1 or null for every question (got {settings.select_candidates})"),
            (settings.use != "select" or "self_consistency" in enabled,
             "signals.use=select orders questions by self-consistency: enable signals.self_consistency"),
        ]
        require(checks)
        return settings
