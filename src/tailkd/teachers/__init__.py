"""Teachers: backends behind one annotation record, the budget, the ledger and the collector."""

from collections.abc import Mapping
from typing import Any

from tailkd.errors import ConfigError
from tailkd.teachers.base import Annotation, Teacher
from tailkd.teachers.budget import Budget, Ledger
from tailkd.teachers.collect import collect_annotations
from tailkd.teachers.simulated import SimulatedTeacher

BACKENDS = {"simulated": SimulatedTeacher}


def build_teacher(cfg: Mapping[str, Any]) -> Teacher:
    backend = cfg.get("backend")
    if backend not in BACKENDS:
        raise ConfigError(f"teacher.backend={backend!r} is unknown; choose one of {sorted(BACKENDS)}")
    return BACKENDS[backend](cfg)


__all__ = ["Annotation", "Budget", "Ledger", "Teacher", "build_teacher", "collect_annotations"]
