"""Teacher backends, by ``teacher.backend``."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tailkd.errors import ConfigError
from tailkd.teachers.backends.protocol import Backend, Bound, Completion, TeacherCallError, TeacherRequest

BACKENDS = ("openai", "hf_local", "recorded", "simulated")


def build_backend(cfg: Mapping[str, Any], cache_dir: Path) -> Backend:
    name = cfg.get("backend")
    if name == "openai":
        from tailkd.teachers.backends.openai_chat import OpenAIBackend

        return OpenAIBackend(cfg)
    if name == "hf_local":
        from tailkd.teachers.backends.hf_local import HFLocalBackend

        return HFLocalBackend(cfg, cache_dir=cache_dir)
    if name == "recorded":
        from tailkd.teachers.backends.recorded import RecordedBackend

        return RecordedBackend(cfg)
    if name == "simulated":
        from tailkd.teachers.backends.simulated import SimulatedBackend

        return SimulatedBackend(cfg)
    raise ConfigError(f"teacher.backend={name!r} is unknown; choose one of {list(BACKENDS)}")


__all__ = ["BACKENDS", "Backend", "Bound", "Completion", "TeacherCallError", "TeacherRequest", "build_backend"]
