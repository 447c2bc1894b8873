"""Where a result came from: the source's commit, the libraries, the hardware and precision."""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import subprocess
from pathlib import Path
from typing import Any

from tailkd import __version__

LIBRARIES = ("torch", "transformers", "pytorch-lightning", "peft")


def git_state(source: Path | None = None) -> tuple[str | None, bool | None]:
    """(commit, dirty) of the git checkout holding tailkd's source; (None, None) for an installed wheel.
    Dirty means tracked files differ from the commit: results from such code cannot be rebuilt from it."""
    source = source or Path(__file__).resolve().parent

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(source), *args], capture_output=True, text=True, timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return None, None
    status = git("status", "--porcelain", "--untracked-files=no")
    return commit, (bool(status) if status is not None else None)


def versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {"tailkd": __version__}
    for name in LIBRARIES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


def device_name(device: Any) -> str:
    """``cuda:0 (NVIDIA H200)``, or ``cpu``."""
    import torch

    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.is_available():
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)


def provenance(*, device: Any, precision: str, started: float) -> dict[str, Any]:
    """The ``results.json`` fields that say how to reproduce a result."""
    import torch

    commit, dirty = git_state()
    return {
        "git_commit": commit,
        "git_dirty": dirty,
        "versions": versions(),
        "device": device_name(device),
        "precision": precision,
        "num_threads": torch.get_num_threads(),
        "started_at": dt.datetime.fromtimestamp(started, dt.timezone.utc).isoformat(timespec="seconds"),
    }
