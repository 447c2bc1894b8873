"""ARTE's one-shot answers (``one_shot_correct``, the greedy half of ``one_shot_scores``): batches of one
demonstration's prompts, whose shared prefix generation computes once, against batches that run across
demonstrations (ARTE's slicing at 81e39a8 and before) and the per-prompt loop.

Every demonstration x preference-question one-shot prompt is generated greedily; the batched variants
send up to ``--batch-size`` prompts per ``generate`` call, the per-prompt variant one. All run on the
same model in one process, interleaved, and must give the same answers up to bf16 rounding (printed)::

    python bench/preference_scoring.py [--demos 4] [--questions 20] [--max-new-tokens 16] [--batch-size 32]
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

from tailkd.models import generate_texts
from tailkd.signals.preference import Demonstration, one_shot_correct, one_shot_prompt

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import add_common_args, apply_threads, autocast, chain_sum, load_model, matmul_dtype  # noqa: E402
from roofline import Rounds  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demos", type=int, default=4, help="demonstrations (drafted rationales) to score")
    parser.add_argument("--questions", type=int, default=20, help="preference-set questions (the live study's 20)")
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

    variants = {
        "one demonstration a batch": lambda: one_shot_correct(student, task, demos, questions,
                                                              batch_size=args.batch_size, stop=task.until),
        "across demonstrations": lambda: _across(student, task, demos, questions, args.batch_size),
        "per-prompt": lambda: one_shot_correct(student, task, demos, questions, batch_size=1, stop=task.until),
    }
    rounds = Rounds(student.model, matmul_dtype(args.precision))
    results = {}
    with autocast(args.precision):
        one_shot_correct(student, task, demos[:1], questions[:2], batch_size=2, stop=task.until)  # warm-up
        for _ in range(args.repeats):  # interleaved: drifting machine load hits all alike
            for name, run in variants.items():
                results[name] = rounds.run(name, run)
            rounds.end_round()
    for name in variants:
        median = rounds.median(name)
        agree = sum(a == b for x, y in zip(results[name], results["per-prompt"]) for a, b in zip(x, y))
        print(f"{name:>25}: median {median:.2f} s ({prompts / median:.1f} prompts/s) over {args.repeats} repeats, "
              f"{rounds.describe(name)}; {agree}/{prompts} answers graded as per prompt")
    base = rounds.median("across demonstrations")
    print(f"one demonstration a batch is {base / rounds.median('one demonstration a batch'):.2f}x the speed of "
          f"batches across demonstrations, {rounds.median('per-prompt') / base:.1f}x theirs the per-prompt loop's")


def _across(student, task, demos, questions, batch_size):
    """The slicing before demonstrations had batches of their own: one batch may hold two of them."""
    prompts = [one_shot_prompt(task, d, q) for d in demos for q in questions]
    texts = [t for i in range(0, len(prompts), batch_size)
             for t in generate_texts(student, prompts[i:i + batch_size], task.max_new_tokens, stop=task.until)]
    n = len(questions)
    return [[task.extract_answer(texts[d * n + i], q) == q.answer for i, q in enumerate(questions)]
            for d in range(len(demos))]


if __name__ == "__main__":
    main()
