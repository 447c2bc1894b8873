"""Teacher-forced scoring by the teaching assistant (``LanguageModelTA.score``): batched vs one item at a
time, and against the way it scored before (batches in the order given, the LM head and a float32
log-softmax at every position, padding and prompt included).

Scores N chain-sum (question, gold rationale, gold answer) items with ``batch_size=1`` and with larger
batches, on the same model, and checks that batching leaves the scores unchanged::

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
import torch.nn.functional as F
import transformers

from tailkd.models.generation import eval_mode
from tailkd.progress import batches
from tailkd.signals.ta import IGNORE_INDEX, LanguageModelTA, Scored

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import add_common_args, apply_threads, autocast, chain_sum, load_model, matmul_dtype  # noqa: E402
from roofline import Rounds  # noqa: E402


class BeforeTA(LanguageModelTA):
    """``LanguageModelTA`` as it scored before: batches in the order given, every position's logits."""

    def score(self, items, desc="TA: scoring (before)"):
        out = []
        with eval_mode(self.model.model):
            for batch in batches(items, self.batch_size, desc, unit="output"):
                out += self._score_batch(batch, [self._pieces(item) for item in batch])
        return out

    def _target_logprobs(self, input_ids, attention, labels, answer):
        logits = self.model.model(input_ids=input_ids, attention_mask=attention).logits.float()
        logits, labels, answer = logits[:, :-1], labels[:, 1:], answer[:, 1:]
        logprob = -F.cross_entropy(logits.transpose(1, 2), labels.clamp(min=0), reduction="none")
        return logprob * (labels != IGNORE_INDEX), labels, answer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=32, help="items to score")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[16, 32], help="batched variants")
    parser.add_argument("--before-batch-size", type=int, default=16, help="the way it scored before, at this batch")
    add_common_args(parser)
    args = parser.parse_args()
    apply_threads(args)

    student = load_model(args)
    data = chain_sum(train_size=args.n, test_size=1)
    items = [Scored(e, e.rationale, e.answer) for e in data.train[: args.n]]
    tas = {str(size): LanguageModelTA(student, data.task, batch_size=size) for size in [1, *args.batch_sizes]}
    tas[f"before {args.before_batch_size}"] = BeforeTA(student, data.task, batch_size=args.before_batch_size)
    tas["before 1"] = BeforeTA(student, data.task, batch_size=1)

    params = sum(p.numel() for p in student.model.parameters())
    lengths = [len(prompt) + len(target) for prompt, target, _ in map(tas["1"]._pieces, items)]  # tokens per item
    print(f"model {student.name} ({params / 1e6:.2f}M params, float32 weights), {args.precision}, "
          f"{len(items)} chain_sum items ({min(lengths)}-{max(lengths)} tokens, mean {statistics.mean(lengths):.0f}), "
          f"batch sizes {[1, *args.batch_sizes]}, {args.repeats} repeats")
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, {torch.get_num_threads()} threads, "
          f"{args.clock} clock, {len(os.sched_getaffinity(0))} CPUs, load average {os.getloadavg()[0]:.1f} at start")

    with autocast(args.precision):
        for ta in tas.values():  # warm-up
            ta.score(items[: ta.batch_size])
        rounds = Rounds(student.model, matmul_dtype(args.precision))
        scores = {}
        for _ in range(args.repeats):  # interleaved, so drifting machine load hits every variant alike
            for name, ta in tas.items():
                scores[name] = rounds.run(name, ta.score, items)
            rounds.end_round()

    one = rounds.median("1")
    for name in tas:
        median = rounds.median(name)
        drift = max(abs(a.confidence - b.confidence) for a, b in zip(scores[name], scores["1"]))
        print(f"  batch_size={name:<10s} {median:7.2f} s  {len(items) / median:6.1f} items/s  "
              f"{one / median:5.2f}x batch_size=1  {rounds.describe(name)}  max |confidence - "
              f"batch_size=1's| {drift:.1e}  runs {', '.join(f'{x:.2f}' for x in rounds.seconds[name])} s")
    best = min(map(str, args.batch_sizes), key=rounds.median)
    print(f"ratio batch_size=1 / batched: {one / rounds.median(best):.2f}x (best batch_size={best}); "
          f"before: {rounds.median('before 1') / rounds.median(best):.2f}x over its batch_size=1, "
          f"{rounds.median(f'before {args.before_batch_size}') / rounds.median(best):.2f}x over its "
          f"batch_size={args.before_batch_size}")


if __name__ == "__main__":
    main()
