"""Lightning overhead: one weighted optimisation step of ``DistillModule`` under a ``pl.Trainer`` vs a bare
PyTorch loop, on the same model, the same batch (8 chain-sum prompt/target pairs) and the same optimiser.

After a warm-up run of each, both run ``--warmup`` untimed steps (a fresh optimiser allocates its state on its
first step) then ``--steps`` timed ones, ``--repeats`` times alternately, from the same initial weights; the
median seconds per step is reported::

    python bench/training_step.py [--steps 5] [--warmup 1] [--repeats 2] [--batch-size 8] [--tiny]
"""

# ruff: noqa: E402
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse
import copy
import logging
import statistics
import sys
import time
import warnings
from pathlib import Path

import pytorch_lightning as pl
import torch
import transformers
from torch.utils.data import DataLoader

from tailkd.training.data import Encoder, TrainRecord
from tailkd.training.loss import per_example_token_loss, weighted_mean
from tailkd.training.module import DistillModule

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import add_common_args, apply_threads, chain_sum, load_model  # noqa: E402


class StepClock(pl.Callback):
    """Times between consecutive batch ends: a whole loop iteration, Lightning's hooks and batch fetch included."""

    def __init__(self):
        self.ends: list[float] = []
        self.first_loss: float | None = None

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if not self.ends:
            self.ends.append(time.perf_counter())  # the first step is timed from its start

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.ends.append(time.perf_counter())
        if self.first_loss is None:
            self.first_loss = float(outputs["loss"])


def lightning_steps(student, task, batch, steps: int, lr: float) -> tuple[list[float], float]:
    module = DistillModule(student, task, lr=lr, weight_decay=0.0, warmup_ratio=0.0)
    clock = StepClock()
    trainer = pl.Trainer(max_steps=steps, accelerator="cpu", precision="32-true", logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         callbacks=[clock])  # gradient_clip_val left at None: no clipping
    trainer.fit(module, DataLoader([batch] * steps, batch_size=None))  # batch_size=None: yield the batch as is
    assert trainer.optimizers[0].defaults["fused"] and trainer.global_step == steps
    return [b - a for a, b in zip(clock.ends, clock.ends[1:])], clock.first_loss


def bare_steps(student, batch, steps: int, lr: float) -> tuple[list[float], float]:
    model = student.model
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0, fused=True)  # as DistillModule builds it
    main = batch["main"]
    inputs = {k: v for k, v in main.items() if k != "labels"}
    times, first_loss = [], None
    for _ in range(steps):
        start = time.perf_counter()
        logits = model(**inputs).logits
        loss = weighted_mean(per_example_token_loss(logits, main["labels"], shift=True), batch["weight"])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        times.append(time.perf_counter() - start)
        first_loss = loss.item() if first_loss is None else first_loss
    return times, first_loss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5, help="timed steps per run")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps at the start of each run")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-5)
    add_common_args(parser, repeats=2)
    args = parser.parse_args()
    apply_threads(args)
    logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)  # "GPU available: False" and the like
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*LeafSpec.*")  # Lightning's pytree use, deprecated by newer torch

    student = load_model(args.tiny)
    data = chain_sum(train_size=args.batch_size, test_size=1)
    records = [TrainRecord(e.id, data.task.prompt(e), data.task.target(e.rationale, e.answer), weight=0.5 + i / 8)
               for i, e in enumerate(data.train[: args.batch_size])]
    batch = Encoder(student.tokenizer, student.is_causal, max_length=256).collate_records(records)
    initial = copy.deepcopy(student.model.state_dict())

    params = sum(p.numel() for p in student.model.parameters())
    shape = tuple(batch["main"]["input_ids"].shape)
    print(f"model {student.name} ({params / 1e6:.2f}M params, all trainable, float32), batch {shape} "
          f"(examples x tokens), {args.warmup} warm-up + {args.steps} timed steps per run, {args.repeats} runs each")
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, pytorch_lightning {pl.__version__}, "
          f"{torch.get_num_threads()} threads, {len(os.sched_getaffinity(0))} CPUs, "
          f"load average {os.getloadavg()[0]:.1f} at start")
    print(f"both: AdamW(fused=True, lr={args.lr:g}, weight_decay=0), no gradient clipping, same initial weights; "
          "Lightning also steps DistillModule's LR scheduler (cosine) and logs two metrics a step")

    runs = {"lightning": lambda steps: lightning_steps(student, data.task, batch, steps, args.lr),
            "bare": lambda steps: bare_steps(student, batch, steps, args.lr)}
    for run in runs.values():  # warm-up run
        run(max(1, args.warmup))
    per_step = {name: [] for name in runs}
    first_losses = {}
    for _ in range(args.repeats):
        for name, run in runs.items():
            student.model.load_state_dict(initial)
            times, first_losses[name] = run(args.warmup + args.steps)
            per_step[name] += times[args.warmup:]

    medians = {name: statistics.median(t) for name, t in per_step.items()}
    for name, t in per_step.items():
        print(f"  {name:<9s} {medians[name]:7.3f} s/step  (timed steps: {', '.join(f'{x:.2f}' for x in t)})  "
              f"first-step loss {first_losses[name]:.6f}")
    print(f"Lightning / bare: {medians['lightning'] / medians['bare']:.3f}x "
          f"({medians['lightning'] - medians['bare']:+.3f} s/step Lightning overhead)")


if __name__ == "__main__":
    main()
