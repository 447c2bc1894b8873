"""A frozen model's prompt pass with its output layer fed a contiguous input, against the strided slice it got.

The embedded Qwen2.5-Coder as ``hf_local`` teacher with its weights frozen (as PEFT leaves a base model: the
aligned teacher, a LoRA student), ``teacher=qwen-1.5b-embedded-csqa-fewshot``'s prompt on N CommonsenseQA
questions, greedy, one batch of N, in the teacher's bfloat16 or in float32. Two variants of the same
``decode_causal`` call, interleaved:
- contiguous: what ``load_student`` does since 4c91da3 (a pre-hook on the output layer);
- strided:    the hook removed: the (rows, 1, hidden) last-position slice as ``logits_to_keep`` leaves it,
              which torch's matmul runs as a product over the weight expanded per row.
Prints each variant's seconds (median over repeats), the ratio, and whether the texts are equal.

    python bench/frozen_head.py [--teacher qwen-1.5b|qwen-0.5b] [--dtype bfloat16|float32] [--n 16]
        [--max-new-tokens 32] [--repeats 2] [--threads 1] [--data-dir ../shared/data/commonsense_qa]
"""

# ruff: noqa: E402
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import statistics
import sys
from pathlib import Path

import torch

from tailkd.models.generation import _decoded, decode_causal, eval_mode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import fewshot_teacher, teacher_args  # noqa: E402
from roofline import now  # noqa: E402


def main() -> None:
    args = teacher_args(__doc__.splitlines()[0], max_new_tokens=32, add=lambda parser: parser.add_argument(
        "--dtype", choices=("bfloat16", "float32"), default="bfloat16"))
    teacher, prompts = fewshot_teacher(args, args.dtype)
    teacher.model.requires_grad_(False)
    head = teacher.model.get_output_embeddings()
    hooks = dict(head._forward_pre_hooks)
    print(f"{teacher.name} {args.dtype}, frozen, {args.n} prompts, max_new_tokens={args.max_new_tokens}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.clock} clock, "
          f"load average {os.getloadavg()[0]:.1f}")
    seconds: dict[str, list[float]] = {"contiguous": [], "strided": []}
    texts: dict[str, list[str]] = {}
    for repeat in range(args.repeats):
        for name in seconds:
            head._forward_pre_hooks.clear()
            if name == "contiguous":
                head._forward_pre_hooks.update(hooks)
            with eval_mode(teacher.model):
                start = now()
                ids = decode_causal(teacher, prompts, args.max_new_tokens, stop=("\nQ:",))
                seconds[name].append(now() - start)
            texts[name] = _decoded(teacher.tokenizer, ids, ("\nQ:",))
            print(f"  repeat {repeat}: {name} {seconds[name][-1]:.1f} s", flush=True)
    median = {name: statistics.median(values) for name, values in seconds.items()}
    print(f"contiguous {median['contiguous']:.1f} s | strided {median['strided']:.1f} s: "
          f"**{median['strided'] / median['contiguous']:.2f}x**; texts equal: {texts['contiguous'] == texts['strided']}")


if __name__ == "__main__":
    main()
