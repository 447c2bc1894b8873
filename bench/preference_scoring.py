"""Batched vs per-prompt scoring of ARTE's student preferences (``one_shot_scores``).

Every demonstration x preference-question one-shot prompt is generated greedily; the batched variant
sends ``--batch-size`` prompts per ``generate`` call, the per-prompt variant one. Both run on the same
model in one process, interleaved, and must give the same accuracies::

    python bench/preference_scoring.py [--demos 4] [--questions 4] [--max-new-tokens 16] [--batch-size 32]
        [--repeats 2] [--precision 32-true] [--tiny]

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

from tailkd.signals.preference import Demonstration, one_shot_scores

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import add_common_args, apply_threads, autocast, chain_sum, load_model, matmul_dtype  # noqa: E402
from roofline import Rounds  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demos", type=int, default=4, help="demonstrations (drafted rationales) to score")
    parser.add_argument("--questions", type=int, default=4, help="preference-set questions")
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=32, help="prompts per generate call, batched variant")
    add_common_args(parser)
    args = parser.parse_args()
    apply_threads(args)

    student = load_model(args)
    data = chain_sum(train_size=args.demos + args.questions, test_size=1, max_new_tokens=args.max_new_tokens)
    task = data.task
    demos = [Demonstration(e.question, task.target(e.rationale, e.answer)) for e in data.train[: args.demos]]
    questions = data.train[args.demos: args.demos + args.questions]
    prompts = len(demos) * len(questions)
    print(f"model {student.name}, {args.precision}, {len(demos)} demonstrations x {len(questions)} questions = "
          f"{prompts} one-shot prompts, {task.max_new_tokens} new tokens; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {args.clock} clock, load average {os.getloadavg()[0]:.1f} at start")

    variants = {"batched": args.batch_size, "per-prompt": 1}
    rounds = Rounds(student.model, matmul_dtype(args.precision))
    results = {}
    with autocast(args.precision):
        one_shot_scores(student, task, demos[:1], questions[:2], batch_size=2, stop=task.until)  # warm-up
        for _ in range(args.repeats):  # interleaved: drifting machine load hits both alike
            for name, size in variants.items():
                results[name] = rounds.run(name, one_shot_scores, student, task, demos, questions, batch_size=size,
                                           stop=task.until)
            rounds.end_round()
    same = [a.accuracy for a in results["batched"]] == [a.accuracy for a in results["per-prompt"]]
    for name in variants:
        median = rounds.median(name)
        print(f"{name:>10}: median {median:.2f} s ({prompts / median:.1f} prompts/s) over {args.repeats} repeats, "
              f"{rounds.describe(name)}")
    ratio = rounds.median("per-prompt") / rounds.median("batched")
    print(f"batched is {ratio:.1f}x the per-prompt loop's speed; same accuracies: {same}")


if __name__ == "__main__":
    main()
