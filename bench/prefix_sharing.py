"""A few-shot teacher's shared prompt prefix computed once, against every row computing it.

The embedded Qwen2.5-Coder as ``hf_local`` teacher with ``teacher=qwen-1.5b-embedded-csqa-fewshot``'s
prompt (three exemplars, ~80 tokens each) on N CommonsenseQA questions, greedy, in bfloat16 as the
testbed runs it, one batch of N. Two variants of the same ``decode_causal`` call, interleaved:
- shared:   ``share_prefix=True`` (the default): the chat template's system turn, the instruction and the
            exemplars computed once and copied to every row;
- unshared: every row computes its whole prompt, as before.
Prints the seconds of each (median over repeats), the prompt tokens each computed, the ratio, and how
many of the N texts differ between them (the two passes round differently in bfloat16: a differing text
is a near-tie decided the other way, not a wrong row; the float32 tests hold them equal).

    python bench/prefix_sharing.py [--teacher qwen-1.5b|qwen-0.5b] [--n 16] [--max-new-tokens 128]
        [--repeats 2] [--threads 1] [--data-dir ../shared/data/commonsense_qa]
"""

# ruff: noqa: E402
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import statistics
import sys
from pathlib import Path

import torch

from tailkd.models.generation import _common_prefix, _decoded, decode_causal, eval_mode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import fewshot_teacher, teacher_args  # noqa: E402
from roofline import now  # noqa: E402


def main() -> None:
    args = teacher_args(__doc__.splitlines()[0])
    teacher, prompts = fewshot_teacher(args)
    stop = ("\nQ:",)  # the exemplars' next question: where an API would stop
    ids = teacher.tokenizer(prompts)["input_ids"]
    lengths = [len(row) for row in ids]
    shared = _common_prefix(ids)
    print(f"{teacher.name} bfloat16, {args.n} prompts of {min(lengths)}-{max(lengths)} tokens, {shared} shared by all, "
          f"max_new_tokens={args.max_new_tokens}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{args.clock} clock, load average {os.getloadavg()[0]:.1f} at start")

    seconds: dict[str, list[float]] = {"shared": [], "unshared": []}
    texts: dict[str, list[str]] = {}
    with eval_mode(teacher.model), torch.no_grad():
        decode_causal(teacher, prompts[:2], 2, stop=stop)  # warm-up
        for _ in range(args.repeats):  # interleaved: drifting machine load hits both alike
            for name in seconds:
                started = now()
                out = decode_causal(teacher, prompts, args.max_new_tokens, stop=stop, share_prefix=name == "shared")
                seconds[name].append(now() - started)
                texts[name] = _decoded(teacher.tokenizer, out, stop)
    width = max(map(len, ids))
    computed = {"shared": shared + args.n * (width - shared), "unshared": args.n * width}
    median = {name: statistics.median(s) for name, s in seconds.items()}
    for name in seconds:
        print(f"  {name:<9s} {median[name]:7.1f} s  (runs {', '.join(f'{s:.1f}' for s in seconds[name])}); "
              f"prompt tokens computed {computed[name]}")
    differ = sum(a != b for a, b in zip(texts["shared"], texts["unshared"]))
    print(f"shared: {median['unshared'] / median['shared']:.2f}x as fast as unshared; prompt tokens "
          f"{computed['shared'] / computed['unshared']:.2f}x; {differ} of {args.n} texts differ")


if __name__ == "__main__":
    main()
