"""ARTE's aligned teacher generating through PEFT's LoRA forward, against the same adapter served in place.

The embedded Qwen2.5-Coder as ``hf_local`` teacher in bfloat16 with ``teacher=qwen-1.5b-embedded-csqa-fewshot``'s
prompt on N CommonsenseQA questions, greedy, one batch of N, as the aligned teacher writes ARTE's tailored
data. Three variants of the same ``decode_causal`` call, each repeat on a freshly loaded teacher:
- base:     no adapter (what the unaligned teacher costs);
- peft:     a rank-16 LoRA on every linear layer through PEFT's forward, its weights in float32 as DPO
            trains them (what ``use_adapter`` ran before);
- in place: the same adapter through :func:`tailkd.models.lora.serve_in_place` (what it runs now).
Prints each variant's seconds (median over repeats), the ratios, and how many of the N texts differ from
PEFT's (both round in bfloat16; a differing text is a near-tie decided the other way).

    python bench/adapter_serving.py [--teacher qwen-1.5b|qwen-0.5b] [--adapter RUN/teacher_adapter] [--n 16]
        [--max-new-tokens 128] [--repeats 2] [--threads 1] [--data-dir ../shared/data/commonsense_qa]
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
from tailkd.models.lora import serve_in_place
from tailkd.teachers.align import LoraSettings

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import fewshot_teacher, teacher_args  # noqa: E402
from roofline import now  # noqa: E402


def with_adapter(model, adapter: str | None):
    """``model`` with the adapter saved at ``adapter``, or a random one shaped as ARTE's DPO trains it."""
    from peft import LoraConfig, PeftModel, get_peft_model

    if adapter:
        return PeftModel.from_pretrained(model, adapter).eval()
    lora = LoraSettings()  # ARTE's default adapter (method.dpo.lora)
    policy = get_peft_model(model, LoraConfig(r=lora.r, lora_alpha=lora.alpha, target_modules="all-linear",
                                              task_type="CAUSAL_LM"))
    with torch.no_grad():
        for name, weight in policy.named_parameters():
            if "lora_B" in name:  # PEFT starts B at zero; a trained adapter's is not
                weight.normal_(std=1e-3, generator=torch.Generator().manual_seed(0))
    return policy.eval()


def main() -> None:
    args = teacher_args(__doc__.splitlines()[0], add=lambda parser: parser.add_argument(
        "--adapter", help="a saved adapter folder (an ARTE run's teacher_adapter); default: random"))
    stop = ("\nQ:",)
    seconds: dict[str, list[float]] = {"base": [], "peft": [], "in place": []}
    texts: dict[str, list[str]] = {}
    for repeat in range(args.repeats):
        teacher, prompts = fewshot_teacher(args)
        if repeat == 0:
            print(f"{teacher.name} bfloat16, {args.n} prompts, max_new_tokens={args.max_new_tokens}, adapter "
                  f"{args.adapter or 'random, the shape ARTE trains by default'}, torch {torch.__version__}, "
                  f"{torch.get_num_threads()} threads, {args.clock} clock, load average {os.getloadavg()[0]:.1f}")
        for name in seconds:
            if name == "peft":
                teacher.model = with_adapter(teacher.model, args.adapter)
            elif name == "in place":
                teacher.model = serve_in_place(teacher.model)
            with eval_mode(teacher.model):
                start = now()
                ids = decode_causal(teacher, prompts, args.max_new_tokens, stop=stop)
                seconds[name].append(now() - start)
            texts[name] = _decoded(teacher.tokenizer, ids, stop)
            print(f"  repeat {repeat}: {name} {seconds[name][-1]:.1f} s", flush=True)
        del teacher
    median = {name: statistics.median(values) for name, values in seconds.items()}
    differ = sum(a != b for a, b in zip(texts["peft"], texts["in place"]))
    print(f"base {median['base']:.1f} s | peft {median['peft']:.1f} s ({median['peft'] / median['base']:.2f}x base) | "
          f"in place {median['in place']:.1f} s ({median['in place'] / median['base']:.2f}x base): "
          f"**{median['peft'] / median['in place']:.2f}x** PEFT's speed; {differ} of {args.n} texts differ from PEFT's")


if __name__ == "__main__":
    main()
