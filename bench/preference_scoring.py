"""Batched vs per-prompt scoring of ARTE's student preferences (``one_shot_scores``).

Every demonstration x preference-question one-shot prompt is generated greedily; the batched variant
sends ``--batch-size`` prompts per ``generate`` call, the per-prompt variant one. Both run on the same
model in one process, interleaved, and must give the same accuracies::

    python bench/preference_scoring.py [--demos 8] [--questions 8] [--batch-size 32] [--repeats 3] [--tiny]
"""

# ruff: noqa: E402
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

from tailkd.signals.preference import Demonstration, one_shot_scores

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import add_common_args, apply_threads, chain_sum, load_model  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demos", type=int, default=8, help="demonstrations (drafted rationales) to score")
    parser.add_argument("--questions", type=int, default=8, help="preference-set questions")
    parser.add_argument("--batch-size", type=int, default=32, help="prompts per generate call, batched variant")
    add_common_args(parser)
    args = parser.parse_args()
    apply_threads(args)

    student = load_model(args.tiny)
    data = chain_sum(train_size=args.demos + args.questions, test_size=1, max_new_tokens=32)
    task = data.task
    demos = [Demonstration(e.question, task.target(e.rationale, e.answer)) for e in data.train[: args.demos]]
    questions = data.train[args.demos: args.demos + args.questions]
    prompts = len(demos) * len(questions)
    print(f"model {student.name}, {len(demos)} demonstrations x {len(questions)} questions = {prompts} one-shot prompts, "
          f"{task.max_new_tokens} new tokens; torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"load average {os.getloadavg()[0]:.1f} at start")

    variants = {"batched": args.batch_size, "per-prompt": 1}
    one_shot_scores(student, task, demos[:1], questions[:2], batch_size=2, stop=task.until)  # warm-up
    times = {name: [] for name in variants}
    results = {}
    for _ in range(args.repeats):  # interleaved: drifting machine load hits both alike
        for name, size in variants.items():
            start = time.perf_counter()
            results[name] = one_shot_scores(student, task, demos, questions, batch_size=size, stop=task.until)
            times[name].append(time.perf_counter() - start)
    same = [a.accuracy for a in results["batched"]] == [a.accuracy for a in results["per-prompt"]]
    for name in variants:
        median = statistics.median(times[name])
        print(f"{name:>10}: median {median:.2f} s ({prompts / median:.1f} prompts/s) over {args.repeats} repeats")
    ratio = statistics.median(times["per-prompt"]) / statistics.median(times["batched"])
    print(f"batched is {ratio:.1f}x the per-prompt loop's speed; same accuracies: {same}")


if __name__ == "__main__":
    main()
