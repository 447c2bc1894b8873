"""Self-consistency sampling: k samples per prompt for N chain-sum prompts, our decoding loop against
transformers' ``generate``.

Three ways, on the same model, prompts and stop strings (chain_sum's ``until``), each timed and its speed
given in generated tokens a second: the tokens of the N x k samples up to their ends (EOS, a stop
string settled, or the limit), as the shared path drew them; every variant returns N x k samples of the
same distribution, so they are credited with the same count and the tokens/s ratios are ratios of speed:
- shared:     ``sample_texts(batch_size=N)``, the runs' path: each prompt computed once and its cache
              shared by its k samples, rows leaving the batch once their text is settled (``decode_causal``);
- generate:   one ``generate`` call of N prompts x ``num_return_sequences=k`` (the path before);
- per-prompt: N ``generate`` calls of one prompt x ``num_return_sequences=k``, the loop to beat.
``--per-sample`` adds N x k calls of one sample each, the naive baseline, on ``--naive-prompts`` prompts
with its time scaled to N.

    python bench/self_consistency_sampling.py [--n 8] [--k 8] [--max-new-tokens 16] [--repeats 2]
        [--precision 32-true] [--model random|embedded|tiny] [--per-sample]

Each variant's FLOP/s is printed as a share of this machine's matmul roofline at its own shapes
(``bench/roofline.py``), in the precision the runs use (bf16-mixed: bfloat16 autocast) unless told. With
random weights (the default) a sample rarely meets a stop string or EOS, so the gain shown is the shared
prompt's; ``--model embedded`` (the real SmolLM2-135M) also shows rows ending early.
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

from tailkd.models.generation import eval_mode, hf_generate_texts
from tailkd.signals.self_consistency import sample_texts

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import add_common_args, apply_threads, autocast, chain_sum, load_model, matmul_dtype  # noqa: E402
from roofline import Rounds  # noqa: E402


class Forwards:
    """The (rows, tokens) of each forward pass of the model: what a variant computed (prompt and
    decoding rows, padding and rows that had already ended included)."""

    def __init__(self, model: torch.nn.Module):
        self.shapes: list[tuple[int, int]] = []
        model.register_forward_pre_hook(self._hook, with_kwargs=True)

    def _hook(self, module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        self.shapes.append(tuple(ids.shape))

    def computed(self) -> int:
        return sum(rows * tokens for rows, tokens in self.shapes)

    def drawn(self) -> int:
        """Tokens drawn by ``decode_causal``: one per row after the prompts' pass, and one per row of
        each later pass (a row that ended leaves before the next)."""
        return self.shapes[0][0] + sum(rows for rows, tokens in self.shapes[1:] if tokens == 1)


def with_generate(student, prompts, max_new_tokens, *, k, temperature, stop, per_call, seed=0):
    """k samples of each prompt by ``generate``, ``per_call`` prompts x ``num_return_sequences=k`` a call
    (``per_call=0``: one sample a call)."""
    torch.manual_seed(seed)
    if per_call == 0:
        return [[hf_generate_texts(student, [p], max_new_tokens, stop=stop, do_sample=True, temperature=temperature)[0]
                 for _ in range(k)] for p in prompts]
    out = []
    for start in range(0, len(prompts), per_call):
        texts = hf_generate_texts(student, prompts[start:start + per_call], max_new_tokens, stop=stop,
                                  do_sample=True, temperature=temperature, num_return_sequences=k)
        out += [texts[i * k:(i + 1) * k] for i in range(len(texts) // k)]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=8, help="prompts")
    parser.add_argument("--k", type=int, default=8, help="samples per prompt")
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--per-sample", action="store_true", help="also the loop of one sample a generate call")
    parser.add_argument("--naive-prompts", type=int, default=1,
                        help="prompts the per-sample loop runs on, its time scaled to N (0: all N)")
    add_common_args(parser)
    args = parser.parse_args()
    apply_threads(args)

    student = load_model(args)
    data = chain_sum(train_size=args.n, test_size=1, max_new_tokens=args.max_new_tokens)
    task, examples = data.task, data.train[: args.n]
    prompts, stop, k, t = [task.prompt(e) for e in examples], list(task.until), args.k, args.temperature
    naive_n = min(args.naive_prompts or args.n, args.n)
    forwards = Forwards(student.model)
    variants = {  # name: (run, the prompts it runs on)
        "shared": (lambda ps: sample_texts(student, ps, args.max_new_tokens, k=k, temperature=t,
                                           batch_size=args.n, stop=stop), prompts),
        "generate": (lambda ps: with_generate(student, ps, args.max_new_tokens, k=k, temperature=t, stop=stop,
                                              per_call=args.n), prompts),
        "per-prompt": (lambda ps: with_generate(student, ps, args.max_new_tokens, k=k, temperature=t, stop=stop,
                                                per_call=1), prompts),
    }
    if args.per_sample:
        variants["per-sample"] = (lambda ps: with_generate(student, ps, args.max_new_tokens, k=k, temperature=t,
                                                           stop=stop, per_call=0), prompts[:naive_n])
    params = sum(p.numel() for p in student.model.parameters())
    print(f"model {student.name} ({params / 1e6:.2f}M params, float32 weights, eval mode), {args.precision}, "
          f"{args.n} prompts x k={k} samples, max_new_tokens={args.max_new_tokens}, "
          f"temperature={t}, stop {stop}, {args.repeats} repeats")
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, {torch.get_num_threads()} threads, "
          f"{args.clock} clock, {len(os.sched_getaffinity(0))} CPUs, load average {os.getloadavg()[0]:.1f} at start")

    rounds = Rounds(student.model, matmul_dtype(args.precision))
    computed, generated = {}, []
    with autocast(args.precision), eval_mode(student.model):
        for run, ps in variants.values():  # warm-up: one prompt each
            run(ps[:1])
        for _ in range(args.repeats):  # interleaved, so drifting machine load hits every variant alike
            for name, (run, ps) in variants.items():
                forwards.shapes.clear()
                samples = rounds.run(name, run, ps)
                assert len(samples) == len(ps) and all(len(s) == k for s in samples)
                computed[name] = forwards.computed()
                if name == "shared":
                    generated.append(forwards.drawn())
            rounds.end_round()

    tokens = statistics.mean(generated)  # for N prompts
    rate = {name: tokens / (rounds.median(name) * args.n / len(ps)) for name, (_, ps) in variants.items()}
    print(f"generated: {tokens:.0f} tokens for {args.n} x {k} samples ({tokens / (args.n * k):.1f} a sample)")
    for name, (_, ps) in variants.items():
        scaled = f"  [measured on {len(ps)} of {args.n} prompts, scaled]" if len(ps) != args.n else ""
        print(f"  {name:<11s} {rounds.median(name) * args.n / len(ps):8.2f} s  {rate[name]:7.1f} tokens/s  "
              f"{rate[name] / rate['per-prompt']:5.2f}x per-prompt  {rounds.describe(name)}  "
              f"(runs {', '.join(f'{x:.2f}' for x in rounds.seconds[name])} s; the model computed "
              f"{computed[name]} token rows){scaled}")
    print(f"generated tokens/s of shared: {rate['shared'] / rate['per-prompt']:.2f}x the per-prompt loop's, "
          f"{rate['shared'] / rate['generate']:.2f}x one generate call's")

if __name__ == "__main__":
    main()
