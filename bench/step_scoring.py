"""Batched vs per-item step-prefix scoring for ELAD (``step_answers``): after every step prefix of
every explanation, the student's answer.

All prefix prompts of all questions go through ``generate`` ``--batch-size`` at a time, or one by one;
both run on the same model in one process, interleaved, and must read the same answers::

    python bench/step_scoring.py [--questions 8] [--batch-size 32] [--repeats 2] [--precision 32-true] [--tiny]

Each variant's FLOP/s is printed as a share of this machine's matmul roofline at its own shapes
(``bench/roofline.py``), in the precision the runs use (bf16-mixed: bfloat16 autocast) unless told.
"""

# ruff: noqa: E402
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse
import sys
from pathlib import Path

import torch

from tailkd.signals.explanations import split_steps, step_answers

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import add_common_args, apply_threads, autocast, chain_sum, load_model, matmul_dtype  # noqa: E402
from roofline import Rounds  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=8, help="explanations to score")
    parser.add_argument("--batch-size", type=int, default=32, help="prompts per generate call, batched variant")
    add_common_args(parser)
    args = parser.parse_args()
    apply_threads(args)

    student = load_model(args)
    data = chain_sum(train_size=args.questions, test_size=1, source={
        "kind": "reasoning_gym", "dataset": "chain_sum",
        "config": {"min_terms": 3, "max_terms": 5, "min_digits": 1, "max_digits": 2}})  # 2-4 steps each
    examples = data.train[: args.questions]
    steps = [split_steps(e.rationale) for e in examples]  # the gold worked steps stand in for explanations
    prompts = sum(len(s) + 1 for s in steps)
    print(f"model {student.name}, {args.precision}, {len(examples)} explanations, {prompts} prefix prompts, 8 new "
          f"tokens each; torch {torch.__version__}, {torch.get_num_threads()} threads, {args.clock} clock, "
          f"load average {os.getloadavg()[0]:.1f}")

    def run(size):
        return step_answers(student, data.task, examples, steps, variant="prefix", probe=" The answer is",
                            probe_tokens=8, batch_size=size)

    variants = {"batched": args.batch_size, "per-item": 1}
    rounds = Rounds(student.model, matmul_dtype(args.precision))
    answers = {}
    with autocast(args.precision):
        run(4)  # warm-up
        for _ in range(args.repeats):  # interleaved: drifting load hits both alike
            for name, size in variants.items():
                answers[name] = rounds.run(name, run, size)
            rounds.end_round()
    for name in variants:
        median = rounds.median(name)
        print(f"{name:>9}: median {median:.2f} s ({prompts / median:.1f} prompts/s) over {args.repeats} repeats, "
              f"{rounds.describe(name)}")
    ratio = rounds.median("per-item") / rounds.median("batched")
    print(f"batched is {ratio:.1f}x the per-item loop's speed; same answers: {answers['batched'] == answers['per-item']}")


if __name__ == "__main__":
    main()
