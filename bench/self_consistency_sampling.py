"""Batched vs looped self-consistency sampling: k samples per prompt for N chain-sum prompts.

Three ways, on the same model and prompts:
- batched:    ``self_consistency(batch_size=N)``, one ``generate`` call of N prompts x ``num_return_sequences=k``;
- per-prompt: ``self_consistency(batch_size=1)``, N calls with ``num_return_sequences=k``;
- per-sample: N x k calls with ``num_return_sequences=1``, the naive baseline. It is by far the slowest, so
  by default it runs on the first ``--naive-prompts`` prompts only and its time is scaled to N.

    python bench/self_consistency_sampling.py [--n 8] [--k 8] [--max-new-tokens 16] [--repeats 2]
        [--precision 32-true] [--tiny]

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
import transformers

from tailkd.models import generate_texts
from tailkd.signals.self_consistency import self_consistency, summarise

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import add_common_args, apply_threads, autocast, chain_sum, load_model, matmul_dtype  # noqa: E402
from roofline import Rounds  # noqa: E402


class ForwardCounter:
    """Counts the model's forward passes: ``generate`` stops early once every row has ended, so the
    variants need not run the same number of decoding steps."""

    def __init__(self, model: torch.nn.Module):
        self.calls = 0
        model.register_forward_hook(self._hook)

    def _hook(self, *_):
        self.calls += 1


def per_sample(student, task, examples, k: int, temperature: float, seed: int = 0):
    """What ``self_consistency`` does, one ``generate`` call per sample."""
    student.model.eval()
    torch.manual_seed(seed)
    out = {}
    for example in examples:
        prompt = [task.prompt(example)]
        texts = [generate_texts(student, prompt, task.max_new_tokens, do_sample=True, temperature=temperature)[0]
                 for _ in range(k)]
        out[example.id] = summarise([task.extract_answer(t, example) for t in texts])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=8, help="prompts")
    parser.add_argument("--k", type=int, default=8, help="samples per prompt")
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--naive-prompts", type=int, default=1,
                        help="prompts the per-sample loop runs on, its time scaled to N (0: all N)")
    add_common_args(parser)
    args = parser.parse_args()
    apply_threads(args)

    student = load_model(args)
    data = chain_sum(train_size=args.n, test_size=1, max_new_tokens=args.max_new_tokens)
    task, examples = data.task, data.train[: args.n]
    naive_n = min(args.naive_prompts or args.n, args.n)
    counter = ForwardCounter(student.model)

    def sc(batch_size):
        return lambda exs: self_consistency(student, task, exs, k=args.k, temperature=args.temperature,
                                            batch_size=batch_size)

    variants = {  # name: (run, the prompts it runs on)
        "batched": (sc(args.n), examples),
        "per-prompt": (sc(1), examples),
        "per-sample": (lambda exs: per_sample(student, task, exs, args.k, args.temperature), examples[:naive_n]),
    }
    params = sum(p.numel() for p in student.model.parameters())
    print(f"model {student.name} ({params / 1e6:.2f}M params, float32 weights, eval mode), {args.precision}, "
          f"{args.n} prompts x k={args.k} samples, max_new_tokens={args.max_new_tokens}, "
          f"temperature={args.temperature}, {args.repeats} repeats")
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, {torch.get_num_threads()} threads, "
          f"{args.clock} clock, {len(os.sched_getaffinity(0))} CPUs, load average {os.getloadavg()[0]:.1f} at start")

    rounds = Rounds(student.model, matmul_dtype(args.precision))
    forwards = {}
    with autocast(args.precision):
        for run, exs in variants.values():  # warm-up: one prompt each
            run(exs[:1])
        for _ in range(args.repeats):  # interleaved, so drifting machine load hits every variant alike
            for name, (run, exs) in variants.items():
                counter.calls = 0
                result = rounds.run(name, run, exs)
                forwards[name] = counter.calls
                assert len(result) == len(exs)
            rounds.end_round()

    medians = {name: rounds.median(name) * args.n / len(exs) for name, (_, exs) in variants.items()}
    for name, (_, exs) in variants.items():
        scaled = f"  [measured on {len(exs)} of {args.n} prompts, time scaled x{args.n / len(exs):g}]" \
            if len(exs) != args.n else ""
        print(f"  {name:<11s} {medians[name]:8.2f} s  {medians[name] / medians['batched']:6.2f}x batched  "
              f"{rounds.describe(name)}  (runs {', '.join(f'{t:.2f}' for t in rounds.seconds[name])} s, "
              f"{forwards[name]} forward passes each){scaled}")
    print(f"speed-up of batched: {medians['per-prompt'] / medians['batched']:.2f}x over per-prompt, "
          f"{medians['per-sample'] / medians['batched']:.2f}x over per-sample")


if __name__ == "__main__":
    main()
