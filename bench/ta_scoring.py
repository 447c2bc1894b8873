"""Batched vs per-example teacher-forced scoring by the teaching assistant (``LanguageModelTA.score``).

Scores N chain-sum (question, gold rationale, gold answer) items with ``batch_size=1`` and with larger
batches, on the same model, and checks that batching leaves the scores unchanged (right padding)::

    python bench/ta_scoring.py [--n 32] [--batch-sizes 16 32] [--repeats 2] [--precision 32-true] [--tiny]

Each variant's FLOP/s is printed as a share of this machine's matmul roofline at its own shapes
(``bench/roofline.py``), in the precision the runs use (bf16-mixed: bfloat16 autocast) unless told.
"""

# ruff: noqa: E402
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse
import statistics
import sys
from pathlib import Path

import torch
import transformers

from tailkd.signals.ta import LanguageModelTA, Scored

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import add_common_args, apply_threads, autocast, chain_sum, load_model, matmul_dtype  # noqa: E402
from roofline import Rounds  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=32, help="items to score")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[16, 32], help="batched variants")
    add_common_args(parser)
    args = parser.parse_args()
    apply_threads(args)

    student = load_model(args)
    data = chain_sum(train_size=args.n, test_size=1)
    items = [Scored(e, e.rationale, e.answer) for e in data.train[: args.n]]
    tas = {size: LanguageModelTA(student, data.task, batch_size=size) for size in [1, *args.batch_sizes]}

    params = sum(p.numel() for p in student.model.parameters())
    lengths = [len(prompt) + len(target) for prompt, target, _ in map(tas[1]._pieces, items)]  # tokens per item
    print(f"model {student.name} ({params / 1e6:.2f}M params, float32 weights), {args.precision}, "
          f"{len(items)} chain_sum items ({min(lengths)}-{max(lengths)} tokens, mean {statistics.mean(lengths):.0f}), "
          f"batch sizes {list(tas)}, {args.repeats} repeats")
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, {torch.get_num_threads()} threads, "
          f"{args.clock} clock, {len(os.sched_getaffinity(0))} CPUs, load average {os.getloadavg()[0]:.1f} at start")

    with autocast(args.precision):
        for ta in tas.values():  # warm-up
            ta.score(items[: ta.batch_size])
        rounds = Rounds(student.model, matmul_dtype(args.precision))
        scores = {}
        for _ in range(args.repeats):  # interleaved, so drifting machine load hits every variant alike
            for size, ta in tas.items():
                scores[size] = rounds.run(size, ta.score, items)
            rounds.end_round()

    per_example = rounds.median(1)
    for size in tas:
        median = rounds.median(size)
        drift = max(abs(a.confidence - b.confidence) for a, b in zip(scores[size], scores[1]))
        print(f"  batch_size={size:<3d} {median:7.2f} s  {len(items) / median:6.1f} items/s  "
              f"{per_example / median:5.2f}x faster than batch_size=1  {rounds.describe(size)}  max |confidence - "
              f"batch_size=1's| {drift:.1e}  runs {', '.join(f'{x:.2f}' for x in rounds.seconds[size])} s")
    best = min(args.batch_sizes, key=rounds.median)
    print(f"ratio per-example / batched: {per_example / rounds.median(best):.2f}x (best batch_size={best})")


if __name__ == "__main__":
    main()
