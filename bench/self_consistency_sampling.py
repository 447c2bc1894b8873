"""Batched vs looped self-consistency sampling: k samples per prompt for N chain-sum prompts.

Three ways, on the same model and prompts:
- batched:    ``self_consistency(batch_size=N)``, one ``generate`` call of N prompts x ``num_return_sequences=k``;
- per-prompt: ``self_consistency(batch_size=1)``, N calls with ``num_return_sequences=k``;
- per-sample: N x k calls with ``num_return_sequences=1``, the naive baseline. It is by far the slowest, so
  by default it runs on the first ``--naive-prompts`` prompts only and its time is scaled to N.

    python bench/self_consistency_sampling.py [--n 16] [--k 8] [--max-new-tokens 32] [--repeats 3] [--tiny]
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
import transformers

from tailkd.models import generate_texts
from tailkd.signals.self_consistency import self_consistency, summarise

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import add_common_args, apply_threads, chain_sum, load_model  # noqa: E402


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
    parser.add_argument("--n", type=int, default=16, help="prompts")
    parser.add_argument("--k", type=int, default=8, help="samples per prompt")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--naive-prompts", type=int, default=2,
                        help="prompts the per-sample loop runs on, its time scaled to N (0: all N)")
    add_common_args(parser)
    args = parser.parse_args()
    apply_threads(args)

    student = load_model(args.tiny)
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
    print(f"model {student.name} ({params / 1e6:.2f}M params, float32, eval mode), {args.n} prompts x k={args.k} "
          f"samples, max_new_tokens={args.max_new_tokens}, temperature={args.temperature}, {args.repeats} repeats")
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, {torch.get_num_threads()} threads, "
          f"{len(os.sched_getaffinity(0))} CPUs, load average {os.getloadavg()[0]:.1f} at start")

    for run, exs in variants.values():  # warm-up: one prompt each
        run(exs[:1])
    times = {name: [] for name in variants}
    forwards = {}
    for _ in range(args.repeats):  # interleaved, so drifting machine load hits every variant alike
        for name, (run, exs) in variants.items():
            counter.calls = 0
            start = time.perf_counter()
            result = run(exs)
            times[name].append(time.perf_counter() - start)
            forwards[name] = counter.calls
            assert len(result) == len(exs)

    medians = {name: statistics.median(t) * args.n / len(variants[name][1]) for name, t in times.items()}
    for name, (_, exs) in variants.items():
        scaled = f"  [measured on {len(exs)} of {args.n} prompts, time scaled x{args.n / len(exs):g}]" \
            if len(exs) != args.n else ""
        print(f"  {name:<11s} {medians[name]:8.2f} s  {medians[name] / medians['batched']:6.2f}x batched  "
              f"(runs {', '.join(f'{t:.2f}' for t in times[name])} s, {forwards[name]} forward passes each){scaled}")
    print(f"speed-up of batched: {medians['per-prompt'] / medians['batched']:.2f}x over per-prompt, "
          f"{medians['per-sample'] / medians['batched']:.2f}x over per-sample")


if __name__ == "__main__":
    main()
