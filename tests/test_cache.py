"""Which teacher cache a run gets: SQLite in the cache folder on one host (refused on a network file
system), PostgreSQL from ``paths.cache_url`` for sweeps across hosts."""

from __future__ import annotations

import sys

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from tailkd.config import config_dir
from tailkd.errors import ConfigError
from tailkd.methods.annotate import make_collector
from tailkd.tasks import load_task_data
from tailkd.teachers import CACHE_FILE, CompletionCache
from tailkd.teachers.cache import open_cache


def _mounts(*entries: tuple[str, str]) -> str:
    """/proc/mounts text with (mount point, file system type) entries."""
    return "".join(f"dev{i} {point} {fstype} rw,relatime 0 0\n" for i, (point, fstype) in enumerate(entries))


@pytest.mark.parametrize("fstype", ["nfs", "nfs4", "cifs", "smb3", "fuse.sshfs", "lustre", "gpfs", "beegfs", "ceph"])
def test_a_sqlite_cache_on_a_network_file_system_is_refused_in_one_line(tmp_path, fstype):
    shared = tmp_path / "shared"
    mounts = _mounts(("/", "ext4"), (str(shared), fstype))
    with pytest.raises(ConfigError) as err:
        CompletionCache(shared / "cache" / CACHE_FILE, mounts=mounts)
    message = str(err.value)
    assert "\n" not in message and fstype in message and str(shared / "cache") in message
    assert "paths.cache_url=postgresql://" in message
    assert not (shared / "cache" / CACHE_FILE).exists()


def test_the_longest_mount_point_decides(tmp_path):
    """A local disk mounted inside a network share, and a share whose name only starts like the path."""
    mounts = _mounts(("/", "ext4"), (str(tmp_path), "nfs4"), (str(tmp_path / "local"), "xfs"),
                     (str(tmp_path / "loc"), "nfs"))
    cache = CompletionCache(tmp_path / "local" / "cache" / CACHE_FILE, mounts=mounts)
    assert len(cache) == 0


def test_a_mount_point_with_a_space_is_read_as_the_kernel_writes_it(tmp_path):
    shared = tmp_path / "my share"
    mounts = _mounts(("/", "ext4"), (str(shared).replace(" ", "\\040"), "cifs"))
    with pytest.raises(ConfigError, match="cifs"):
        CompletionCache(shared / CACHE_FILE, mounts=mounts)


def test_the_machines_own_mounts_are_read(tmp_path):
    assert len(CompletionCache(tmp_path / CACHE_FILE)) == 0  # pytest's tmp_path is on a local disk


def test_no_url_is_sqlite_in_the_cache_folder(tmp_path):
    cache = open_cache(tmp_path, None)
    assert isinstance(cache, CompletionCache) and cache.path == tmp_path / CACHE_FILE


def test_the_network_file_system_check_applies_to_the_default_cache(tmp_path):
    with pytest.raises(ConfigError, match="network file system"):
        open_cache(tmp_path, None, mounts=_mounts(("/", "nfs4")))


@pytest.mark.parametrize("url, message", [
    ("mysql://db/tailkd", "paths.cache_url='mysql://db/tailkd' is not a postgresql:// URL"),
    ("postgresql://me:secret@db/tailkd", "carries a password"),
])
def test_a_url_we_cannot_use_is_one_clear_error(tmp_path, url, message):
    with pytest.raises(ConfigError, match=message) as err:
        open_cache(tmp_path, url)
    assert "\n" not in str(err.value) and "secret" not in str(err.value)


def test_without_psycopg_the_error_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "psycopg", None)  # import psycopg raises ImportError
    with pytest.raises(ConfigError, match=r"pip install 'tailkd\[postgres\]'"):
        open_cache(tmp_path, "postgresql://db.example/tailkd")


def _compose(*overrides: str):
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose("collect", overrides=list(overrides))


def test_paths_cache_url_defaults_to_none_and_reads_the_environment(monkeypatch):
    monkeypatch.delenv("TAILKD_CACHE_URL", raising=False)
    assert _compose().paths.cache_url is None
    monkeypatch.setenv("TAILKD_CACHE_URL", "postgresql://db.example/tailkd")
    assert _compose().paths.cache_url == "postgresql://db.example/tailkd"
    assert _compose("paths.cache_url=postgresql://me@db.example:5432/tailkd").paths.cache_url == (
        "postgresql://me@db.example:5432/tailkd")


def test_a_runs_collector_opens_the_cache_paths_cache_url_names(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    cfg = _compose("teacher=openai", "paths.cache_url=mysql://db/tailkd", f"paths.cache_dir={tmp_path}")
    data = load_task_data({**OmegaConf.to_container(cfg.task, resolve=True), "train_size": 4, "test_size": 2})
    with pytest.raises(ConfigError, match="is not a postgresql:// URL"):
        make_collector(cfg, data, tmp_path)
