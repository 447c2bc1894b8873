"""Raw signals on disk, so that a signal ablation samples the student and runs the TA once.

A TAiL sweep over signal presets trains the same warmed-up student in every job (same seed, same
warm-up annotations); its sampled answers, its greedy outputs and the TA's scores are then the same
too. Each is stored under a hash of everything that determines it: the weights themselves (a
fingerprint of the state dict, so a warm-up that differs in any way misses), the prompts, the
decoding settings and the precision. One JSON file per entry, written atomically: parallel jobs
never read half a file, at worst they compute the same entry twice. ARTE's one-shot scores
(:mod:`.preference`) are stored the same way: its ``align=dpo`` and ``align=select`` at one seed score
the same drafts with the same student.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)

VERSION = 1  # bump when a signal's computation changes, to leave old entries behind


def fingerprint(model: torch.nn.Module) -> str:
    """A digest of every parameter and buffer (name, dtype, shape, bytes)."""
    digest = hashlib.blake2b(digest_size=16)
    for name, tensor in model.state_dict().items():
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}".encode())
        digest.update(tensor.detach().contiguous().view(-1).view(torch.uint8).cpu().numpy().tobytes())
    return digest.hexdigest()


class SignalCache:
    def __init__(self, folder: Path | None, context: Mapping[str, Any] | None = None):
        """``folder=None`` computes everything afresh; ``context`` goes into every key (precision,
        device: anything that changes the numbers without being an argument)."""
        self.folder = Path(folder) if folder is not None else None
        self.context = dict(context or {})
        self.hits = 0
        self._fingerprints: dict[int, str] = {}
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)

    def model_id(self, model: torch.nn.Module) -> str:
        """The model's fingerprint, computed once per object (its weights do not change while signals
        are computed)."""
        if id(model) not in self._fingerprints:
            self._fingerprints[id(model)] = fingerprint(model)
        return self._fingerprints[id(model)]

    def fetch(self, kind: str, key: Mapping[str, Any], compute: Callable[[], Any]) -> Any:
        """The stored value for ``key``, or ``compute()``'s (JSON-serialisable), stored."""
        if self.folder is None:
            return compute()
        blob = json.dumps({"kind": kind, "version": VERSION, **self.context, **key}, sort_keys=True, default=str)
        path = self.folder / f"{kind}-{hashlib.sha256(blob.encode()).hexdigest()[:32]}.json"
        if path.exists():
            try:
                value = json.loads(path.read_text())
                self.hits += 1
                log.info("signals: %s from the cache (%s)", kind, path.name)
                return value
            except (OSError, json.JSONDecodeError):
                log.warning("signals: %s is unreadable; computing it again", path)
        value = compute()
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".tmp-", suffix=".json")
        with os.fdopen(fd, "w") as f:
            json.dump(value, f)
        os.replace(tmp, path)
        return value
