"""Small builders shared by tests: a tiny task, tiny students, training records."""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import OmegaConf

from tailkd.models import load_student
from tailkd.tasks import Task
from tailkd.training import TrainRecord

REPO = Path(__file__).resolve().parents[1]


def task_cfg(name: str = "chain_sum", **overrides) -> dict:
    cfg = OmegaConf.to_container(OmegaConf.load(REPO / "conf" / "task" / f"{name}.yaml"), resolve=True)
    cfg.update(overrides)
    return cfg


def chain_task() -> Task:
    return Task(task_cfg())


TEXTS = [
    "Question: What is 12 + 7 - 3?\nAnswer: 12 + 7 = 19. 19 - 3 = 16. The answer is 16.",
    "Question: What is 5 + 9?\nAnswer: 5 + 9 = 14. The answer is 14.",
    "Question: What is 40 - 11 + 2?\nAnswer: 40 - 11 = 29. 29 + 2 = 31. The answer is 31.",
]


def tiny_student(arch: str = "causal", lora: bool = False, init_seed: int = 0):
    cfg = {
        "name": f"tiny-{arch}", "arch": arch, "source": "tiny", "pretrained": None, "vocab_size": 300,
        "init_seed": init_seed, "size": {"hidden_size": 32, "num_layers": 2, "num_heads": 4},
        "dtype": "float32", "max_length": 128,
        "lora": {"enabled": lora, "r": 4, "alpha": 8, "dropout": 0.0, "target_modules": None},
    }
    return load_student(cfg, Path("/nonexistent-cache"), TEXTS * 4)


def records(n: int = 8, weights=None) -> list[TrainRecord]:
    out = []
    for i in range(n):
        a, b, c = 3 + i, 10 + 2 * i, i % 4
        prompt = f"Question: What is {a} + {b} - {c}?\nAnswer:"
        target = f" {a} + {b} = {a + b}. {a + b} - {c} = {a + b - c}. The answer is {a + b - c}." + " ok" * (i % 3)
        out.append(TrainRecord(f"r{i}", prompt, target, weight=1.0 if weights is None else weights[i]))
    return out


def allocated_bytes(fn):
    """(the bytes ``fn()`` allocates on the CPU, every op's own allocations summed; what it returns):
    a measure of the activation-sized tensors a code path creates that, unlike time, does not vary."""
    with torch.no_grad(), torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU],
                                                 profile_memory=True) as prof:
        out = fn()
    return sum(e.self_cpu_memory_usage for e in prof.key_averages() if e.self_cpu_memory_usage > 0), out


def trained_lora(model, **config):
    """``model`` under a LoRA adapter on every linear layer (``config``: LoraConfig's other fields), in eval
    mode, whose update is not zero: PEFT starts B at zero, a trained adapter's is not."""
    from peft import LoraConfig, get_peft_model

    policy = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", **config)).eval()
    with torch.no_grad():
        for name, weight in policy.named_parameters():
            if "lora_B" in name:
                weight.normal_(std=0.3, generator=torch.Generator().manual_seed(1))
    return policy
