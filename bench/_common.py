"""What the benchmarks share: the model under test and the chain_sum data."""

from __future__ import annotations

import sys
from pathlib import Path

from omegaconf import OmegaConf

from tailkd.models import load_student
from tailkd.tasks import load_task_data

REPO = Path(__file__).resolve().parents[1]
SMOLLM2 = {"name": "smollm2", "arch": "causal", "source": "embedded", "pretrained": "smollm2-135m-instruct-q4_1",
           "dtype": "float32", "max_length": 256, "lora": {"enabled": False}}


def load_model(tiny: bool):
    """The embedded SmolLM2-135M, or with ``tiny`` the tests' tiny random student (a quick check)."""
    if tiny:
        sys.path.insert(0, str(REPO / "tests"))
        from helpers import tiny_student

        return tiny_student()
    return load_student(SMOLLM2, Path.home() / ".cache" / "tailkd")


def chain_sum(**sizes):
    """The embedded chain_sum task's data, with ``train_size`` / ``test_size`` / ... overridden."""
    cfg = OmegaConf.to_container(OmegaConf.load(REPO / "conf" / "task" / "chain_sum.yaml"), resolve=True)
    cfg.update(sizes)
    return load_task_data(cfg)


def add_common_args(parser, repeats: int = 3) -> None:
    parser.add_argument("--repeats", type=int, default=repeats, help="timed repeats per variant (median reported)")
    parser.add_argument("--tiny", action="store_true", help="tests/helpers.tiny_student instead of SmolLM2-135M")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")


def apply_threads(args) -> None:
    """On a shared 2-core machine two torch threads stall on each other: --threads 1 steadies timings."""
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
