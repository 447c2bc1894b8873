"""One weighted optimisation step of ``DistillModule`` under a ``pl.Trainer`` vs a bare PyTorch loop, each as a
share of this machine's matmul roofline, on the same model, the same batch (chain-sum prompt/target pairs) and
the same optimiser, in the precision the runs use (bf16-mixed: float32 weights under bfloat16 autocast).

The bare loop is the reference: the model as loaded (sdpa attention), the full-vocabulary logits at every
position and ``per_example_token_loss``, as the module trained before it scored target positions only and
gave short CPU batches eager attention. Each step's matmuls are counted (every ``nn.Linear``, forward and
backward) and timed alone, shape by shape, in this process (``bench/roofline.py``): the roofline is the
time they take at this machine's throughput. "model" shares are of the whole model's matmuls over the whole
batch (6 x params x batch x length FLOPs, the LM head at every position: what the reference runs); "run"
shares are of the matmuls the variant ran.

Both run ``--warmup`` untimed steps (first calls build kernels, a fresh optimiser allocates its state) then
``--steps`` timed ones, ``--repeats`` times alternately, from the same initial weights (the first round also
counts the matmuls), the roofline measured again after each round. ``--batch-size 80`` is 80 x 55 = 4400
tokens. On a shared machine, ``--threads 1 --clock cpu`` gives steady figures::

    python bench/training_step.py [--batch-size 8] [--steps 2] [--warmup 1] [--repeats 2] [--precision 32-true]
        [--threads 1] [--clock cpu] [--model random|embedded|tiny] [--profile lightning|bare]

``--profile`` prints torch.profiler's table for one more run of that variant (after the timings).
"""

# ruff: noqa: E402
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse
import copy
import logging
import sys
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
from _common import add_common_args, apply_threads, autocast, chain_sum, load_model, matmul_dtype  # noqa: E402
from roofline import Rounds, now  # noqa: E402


class StepClock(pl.Callback):
    """Times between consecutive batch ends: a whole loop iteration, Lightning's hooks and batch fetch included."""

    def __init__(self):
        self.ends: list[float] = []
        self.first_loss: float | None = None

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if not self.ends:
            self.ends.append(now())  # the first step is timed from its start

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.ends.append(now())
        if self.first_loss is None:
            self.first_loss = float(outputs["loss"])


def lightning_steps(student, task, batch, steps: int, lr: float, precision: str) -> tuple[list[float], float]:
    module = DistillModule(student, task, lr=lr, weight_decay=0.0, warmup_ratio=0.0)
    clock = StepClock()
    trainer = pl.Trainer(max_steps=steps, accelerator="cpu", precision=precision, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         callbacks=[clock])  # gradient_clip_val left at None: no clipping
    trainer.fit(module, DataLoader([batch] * steps, batch_size=None))  # batch_size=None: yield the batch as is
    assert trainer.optimizers[0].defaults["fused"] and trainer.global_step == steps
    return [b - a for a, b in zip(clock.ends, clock.ends[1:])], clock.first_loss


def bare_steps(student, batch, steps: int, lr: float, precision: str) -> tuple[list[float], float]:
    model = student.model
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0, fused=True)  # as DistillModule builds it
    main = batch["main"]
    inputs = {k: v for k, v in main.items() if k != "labels"}
    times, first_loss = [], None
    for _ in range(steps):
        start = now()
        with autocast(precision):  # as Lightning's precision plugin: the forward only
            logits = model(**inputs).logits
            loss = weighted_mean(per_example_token_loss(logits, main["labels"], shift=True), batch["weight"])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        times.append(now() - start)
        first_loss = loss.item() if first_loss is None else first_loss
    return times, first_loss


def profile(run, steps: int) -> None:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        run(steps)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25, max_name_column_width=40))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2, help="timed steps per run")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps at the start of each run")
    parser.add_argument("--batch-size", type=int, default=8, help="chain_sum pairs per batch (8: the runs')")
    parser.add_argument("--lr", type=float, default=1e-5)
    parser.add_argument("--profile", choices=("lightning", "bare"), help="profile one more run of this variant")
    add_common_args(parser, repeats=2)
    args = parser.parse_args()
    apply_threads(args)
    logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)  # "GPU available: False" and the like
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*LeafSpec.*")  # Lightning's pytree use, deprecated by newer torch

    student = load_model(args)
    data = chain_sum(train_size=args.batch_size, test_size=1)
    records = [TrainRecord(e.id, data.task.prompt(e), data.task.target(e.rationale, e.answer), weight=0.5 + i / 8)
               for i, e in enumerate(data.train[: args.batch_size])]
    batch = Encoder(student.tokenizer, student.is_causal, max_length=256).collate_records(records)
    initial = copy.deepcopy(student.model.state_dict())

    params = sum(p.numel() for p in student.model.parameters())
    shape = tuple(batch["main"]["input_ids"].shape)
    targets = int((batch["main"]["labels"][:, 1:] != -100).sum())
    print(f"model {student.name} ({params / 1e6:.2f}M params, all trainable, float32 weights), {args.precision}, "
          f"batch {shape[0]} x {shape[1]} = {shape[0] * shape[1]} tokens ({targets} target tokens), "
          f"{args.warmup} warm-up + {args.steps} timed steps per run, {args.repeats} runs each")
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, pytorch_lightning {pl.__version__}, "
          f"{torch.get_num_threads()} threads, {args.clock} clock, {len(os.sched_getaffinity(0))} CPUs, "
          f"load average {os.getloadavg()[0]:.1f} at start")
    print(f"both: AdamW(fused=True, lr={args.lr:g}, weight_decay=0), no gradient clipping, same initial weights; "
          "Lightning also steps DistillModule's LR scheduler (cosine) and logs two metrics a step")

    runs = {"bare": lambda steps: bare_steps(student, batch, steps, args.lr, args.precision),
            "lightning": lambda steps: lightning_steps(student, data.task, batch, steps, args.lr, args.precision)}
    steps = args.warmup + args.steps
    rounds = Rounds(student.model, matmul_dtype(args.precision), backward=True)
    first_losses = {}
    for _ in range(args.repeats):
        for name, run in runs.items():
            student.model.load_state_dict(initial)
            with rounds.count(name, calls=steps):  # µs a layer, in the first round only
                times, first_losses[name] = run(steps)
            rounds.record(name, *times[args.warmup:])
        rounds.end_round()
    report(rounds, first_losses)
    if args.profile:
        student.model.load_state_dict(initial)
        profile(runs[args.profile], steps)


def report(rounds: Rounds, first_losses: dict[str, float]) -> None:
    """Median seconds a step; shares of the roofline of the whole model's matmuls (the reference runs them:
    every position's logits) and of the variant's own."""
    model = rounds.roofline("bare")
    print(f"roofline (model): {model.flops / 1e12:.3f} TFLOP, {model.dtype}, {model.flops_per_s / 1e12:.3f} TFLOP/s "
          f"(median of {', '.join(f'{r.flops_per_s / 1e12:.3f}' for r in rounds.rooflines['bare'])}), "
          f"{model.seconds:.3f} s")
    for name, times in rounds.seconds.items():
        median = rounds.median(name)
        print(f"  {name:<9s} {median:7.3f} s/step  {model.flops / median / 1e12:.3f} TFLOP/s  "
              f"{100 * rounds.share(name, of='bare'):5.1f}% of the roofline (model), "
              f"{100 * rounds.share(name):5.1f}% (run)  steps {', '.join(f'{x:.2f}' for x in times)}  "
              f"first-step loss {first_losses[name]:.6f}")
    ratio = rounds.median("lightning") / rounds.median("bare")
    print(f"Lightning / bare: {ratio:.3f}x ({rounds.median('lightning') - rounds.median('bare'):+.3f} s/step)")


if __name__ == "__main__":
    main()
