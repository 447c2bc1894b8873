"""ARTE's answer likelihoods (``continuation_logprobs``, the tie-break half of ``one_shot_scores``): batches of
one demonstration's prompts whose demonstration is computed once, against the pass before (c65217c and
earlier: batches across demonstrations, every row computed whole).

Every demonstration x preference-question one-shot prompt is scored teacher-forced on its gold answer
sentence. The demonstrations are drafted-rationale long (``--rationale-words``: the live 1.5B teacher's
zero-shot rationales run ~200 tokens), the questions short, as in a live ARTE run. Both variants run on the
same model in one process, interleaved, and must give the same log-probabilities up to rounding (printed)::

    python bench/answer_likelihoods.py [--demos 4] [--questions 20] [--rationale-words 150] [--batch-size 32]
        [--repeats 2] [--precision bf16-mixed] [--model random|embedded|tiny]

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

from tailkd.signals.preference import Demonstration, continuation_logprobs, one_shot_prompt

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import add_common_args, apply_threads, autocast, chain_sum, load_model, matmul_dtype  # noqa: E402
from roofline import Rounds  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demos", type=int, default=4, help="demonstrations (drafted rationales) to score")
    parser.add_argument("--questions", type=int, default=20, help="preference-set questions (the live study's 20)")
    parser.add_argument("--rationale-words", type=int, default=150, help="words in each demonstration's rationale")
    parser.add_argument("--batch-size", type=int, default=32, help="prompts per pass (trainer.eval_batch_size)")
    add_common_args(parser)
    args = parser.parse_args()
    apply_threads(args)

    student = load_model(args)
    data = chain_sum(train_size=args.demos + args.questions, test_size=1)
    task = data.task
    demos = [Demonstration(e.question, task.target(_longer(e.rationale, args.rationale_words), e.answer))
             for e in data.train[: args.demos]]
    questions = data.train[args.demos: args.demos + args.questions]
    prompts = [one_shot_prompt(task, d, q) for d in demos for q in questions]
    answers = [" " + task.answer_target(q.answer).strip() for _ in demos for q in questions]
    tokens = sum(len(student.tokenizer(p)["input_ids"]) for p in prompts) / len(prompts)
    print(f"model {student.name}, {args.precision}, {len(demos)} demonstrations x {len(questions)} questions = "
          f"{len(prompts)} one-shot prompts of {tokens:.0f} tokens on average; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {args.clock} clock, load average {os.getloadavg()[0]:.1f} at start")

    n = len(questions)
    variants = {
        "demonstration computed once": lambda: continuation_logprobs(student, prompts, answers,
                                                                     batch_size=args.batch_size, group=n),
        "every row whole": lambda: continuation_logprobs(student, prompts, answers, batch_size=args.batch_size,
                                                         share_prefix=False),
    }
    rounds = Rounds(student.model, matmul_dtype(args.precision))
    results = {}
    with autocast(args.precision):
        continuation_logprobs(student, prompts[:2], answers[:2], batch_size=2)  # warm-up
        for _ in range(args.repeats):  # interleaved: drifting machine load hits all alike
            for name, run in variants.items():
                results[name] = rounds.run(name, run)
            rounds.end_round()
    base = results["every row whole"]
    for name in variants:
        median = rounds.median(name)
        gap = max(abs(a - b) for a, b in zip(results[name], base))
        print(f"{name:>28}: median {median:.2f} s ({len(prompts) / median:.1f} prompts/s) over {args.repeats} "
              f"repeats, {rounds.describe(name)}; largest difference from every row whole {gap:.2e} nats")
    print(f"computing the demonstration once is {rounds.median('every row whole') / rounds.median('demonstration computed once'):.2f}x "
          f"the speed of computing every row whole")


def _longer(rationale: str, words: int) -> str:
    """``rationale`` repeated to about ``words`` words: a drafted rationale's length with the task's vocabulary."""
    pieces = rationale.split()
    return " ".join(pieces[i % len(pieces)] for i in range(max(words, len(pieces))))


if __name__ == "__main__":
    main()
