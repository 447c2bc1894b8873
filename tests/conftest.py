import os

# Tests never wait on a model hub or W&B: both would hang for minutes without a network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Under pytest-xdist the cores are shared among the workers: torch threads of workers sharing cores stall
# each other (the rule hydra/launcher=parallel follows). Set before torch is imported; subprocesses inherit it.
_workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _workers > 1:
    _cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, _cores // _workers)))
# a test's runs never resume checkpoints an earlier test session left behind under the shared cache
import tempfile  # noqa: E402

os.environ["TAILKD_CHECKPOINT_DIR"] = tempfile.mkdtemp(prefix="tailkd-test-checkpoints-")

import secrets  # noqa: E402
import string  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from fake_openai import FakeOpenAI  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
KEY_ENV = "OPENAI_API_KEY"


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data samples not found at {SHARED_DATA} (../shared/data beside the checkout)")
    return SHARED_DATA


@pytest.fixture
def api_key(monkeypatch) -> str:
    """A random key in the environment, for tests that check it is sent and never written."""
    key = "sk-test-" + "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(32))
    monkeypatch.setenv(KEY_ENV, key)
    return key


@pytest.fixture
def fake():
    """fake(**options) -> a started FakeOpenAI (tests/fake_openai.py), stopped after the test."""
    servers: list[FakeOpenAI] = []

    def start(**options) -> FakeOpenAI:
        servers.append(FakeOpenAI(**options).start())
        return servers[-1]

    yield start
    for server in servers:
        server.stop()
