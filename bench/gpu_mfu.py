"""Model FLOPs utilisation on a GPU: the weighted training step, the signals' sampling and the TA's scoring, on
random-initialised models of the real shapes (SmolLM2-135M, Qwen2.5-0.5B, Qwen2.5-1.5B; configs built here, no
hub), each as a share of the GPU's dense bfloat16 peak.

- train: ``DistillModule``'s step under a ``pl.Trainer`` (bf16-mixed, fused AdamW), as the runs train, on
  ``--train-batch`` x ``--train-length`` random tokens (16 x 1024 = 16k by default; the first quarter of each row
  is prompt, the rest target);
- sample: ``sample_texts`` (each prompt computed once for its k samples) vs a loop of one ``generate`` call per
  prompt (``num_return_sequences=k``), ``--prompts`` chain-sum prompts, k = 8, in generated tokens a second;
- ta: ``LanguageModelTA.score`` at ``--ta-batch`` vs batch size 1, ``--ta-items`` chain-sum items.

The FLOPs counted are those the step executes: 2 (forward) or 6 (forward and backward) x the body's parameters
(embeddings and LM head out) per token row computed, the same x hidden x vocabulary per row the LM head reads,
and causal attention's two matmuls (2 x layers x length x query width per token forward, x3 with backward; left
out for sampling and scoring, whose rows are short). The peak comes from a table by device name (``--peak-tflops``
overrides it); a large bfloat16 matmul measured here is printed beside it as the reachable roofline::

    python bench/gpu_mfu.py [--device cuda] [--models smollm2-135m qwen2.5-0.5b qwen2.5-1.5b] [--only train sample ta]

``--device cpu --models tiny --train-batch 2 --train-length 32 ...`` runs the same code on the tests' tiny shapes
(what can be checked without a GPU). ``bench/gpu.sh`` runs it after ``tests/test_device.py``.
"""

# ruff: noqa: E402
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse
import logging
import statistics
import sys
import time
import warnings
from pathlib import Path

import pytorch_lightning as pl
import torch
import transformers
from torch.utils.data import DataLoader

from tailkd.models.student import Student
from tailkd.signals.self_consistency import sample_texts
from tailkd.signals.ta import LanguageModelTA, Scored
from tailkd.training.loss import IGNORE_INDEX
from tailkd.training.module import DistillModule

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import chain_sum, digit_tokenizer, smollm2_config  # noqa: E402
from self_consistency_sampling import Forwards, with_generate  # noqa: E402

# dense bfloat16 tensor-core peaks (no sparsity), TFLOP/s; the first name found in the device's name counts
PEAK_TFLOPS = [("H200", 989.0), ("GH200", 989.0), ("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H100", 989.0),
               ("H800", 989.0), ("B200", 2250.0), ("A100", 312.0), ("A800", 312.0), ("L40S", 362.0), ("L40", 181.0),
               ("L4", 121.0), ("A10G", 70.0), ("A10", 125.0), ("RTX 4090", 165.0), ("RTX 3090", 71.0)]


def qwen2_config(hidden: int, intermediate: int, layers: int, heads: int):
    """A Qwen2.5 model's architecture (its config.json: two KV heads, QKV bias, tied embeddings)."""
    from transformers import Qwen2Config

    return Qwen2Config(hidden_size=hidden, intermediate_size=intermediate, num_hidden_layers=layers,
                       num_attention_heads=heads, num_key_value_heads=2, vocab_size=151936,
                       max_position_embeddings=32768, rope_theta=1000000.0, rms_norm_eps=1e-6,
                       tie_word_embeddings=True, use_sliding_window=False, bos_token_id=1, eos_token_id=2,
                       pad_token_id=0)


def tiny_config():
    from transformers import LlamaConfig

    return LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                       num_key_value_heads=4, vocab_size=4096, max_position_embeddings=2048, tie_word_embeddings=True,
                       bos_token_id=1, eos_token_id=2, pad_token_id=0)


MODELS = {
    "smollm2-135m": smollm2_config,
    "qwen2.5-0.5b": lambda: qwen2_config(896, 4864, 24, 14),
    "qwen2.5-1.5b": lambda: qwen2_config(1536, 8960, 28, 12),
    "tiny": tiny_config,
}


def build(name: str, device: str, tokenizer) -> Student:
    """``name``'s shapes with random float32 weights (as runs load a student) on ``device``."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(MODELS[name](), attn_implementation="sdpa")
    return Student(model.eval(), tokenizer, "causal", name)


class Shape:
    """What the FLOP counts read of a model: body parameters, LM head size, layers, attention width."""

    def __init__(self, model: torch.nn.Module):
        config = model.config
        head = model.get_output_embeddings().weight
        embed = model.get_input_embeddings().weight
        self.params = sum(p.numel() for p in model.parameters())  # a tied weight is counted once
        self.head = head.numel()
        self.body = self.params - self.head - (0 if embed is head else embed.numel())
        self.layers = config.num_hidden_layers
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        self.query_width = config.num_attention_heads * head_dim

    def train_flops(self, rows: int, length: int, scored: int) -> float:
        """Forward and backward (x3 the forward's 2 a multiply-add); causal attention's scores and values
        are 2 x length x query width a token and layer forward (half the square is masked)."""
        tokens = rows * length
        return 6.0 * (self.body * tokens + self.head * scored) + 6.0 * self.layers * length * self.query_width * tokens

    def inference_flops(self, token_rows: int, head_rows: int) -> float:
        return 2.0 * (self.body * token_rows + self.head * head_rows)


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def peak(device: str, override: float | None) -> tuple[str, float | None]:
    """The device's name and its dense bf16 peak (FLOP/s) from the table, or None off the table."""
    if override:
        return (torch.cuda.get_device_name() if device.startswith("cuda") else "cpu"), override * 1e12
    if not device.startswith("cuda"):
        return "cpu", None
    name = torch.cuda.get_device_name()
    return name, next((tflops * 1e12 for key, tflops in PEAK_TFLOPS if key in name), None)


def matmul_roofline(device: str, size: int) -> float:
    """FLOP/s of a ``size``-square bfloat16 matmul here: what this device reaches, beside its nominal peak."""
    a, b = (torch.randn(size, size, device=device, dtype=torch.bfloat16) for _ in range(2))
    out = torch.empty(size, size, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        torch.mm(a, b, out=out)
    synchronize(device)
    calls, start = 0, time.perf_counter()
    while calls < 5 or time.perf_counter() - start < 1.0:
        torch.mm(a, b, out=out)
        calls += 1
        if calls % 5 == 0:
            synchronize(device)
    synchronize(device)
    return 2.0 * size**3 * calls / (time.perf_counter() - start)


class StepTimes(pl.Callback):
    def __init__(self, device: str):
        self.device, self.ends = device, []

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if not self.ends:
            synchronize(self.device)
            self.ends.append(time.perf_counter())

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        synchronize(self.device)
        self.ends.append(time.perf_counter())


def train_batch(vocab: int, rows: int, length: int) -> dict:
    """Random tokens; the first quarter of each row is prompt (no loss), the rest target."""
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(3, vocab, (rows, length), generator=generator)
    labels = ids.clone()
    labels[:, : length // 4] = IGNORE_INDEX
    return {"ids": [f"r{i}" for i in range(rows)], "weight": torch.linspace(0.5, 1.5, rows),
            "main": {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}}


def train(student: Student, task, args, shape: Shape) -> tuple[float, float]:
    """Median seconds a step and the FLOPs of one."""
    batch = train_batch(len(student.tokenizer), args.train_batch, args.train_length)
    steps = args.warmup + args.steps
    clock = StepTimes(args.device)
    module = DistillModule(student, task, lr=1e-5)
    trainer = pl.Trainer(max_steps=steps, accelerator="gpu" if args.device.startswith("cuda") else "cpu", devices=1,
                         precision="bf16-mixed", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, callbacks=[clock])
    trainer.fit(module, DataLoader([batch] * steps, batch_size=None))
    times = [b - a for a, b in zip(clock.ends, clock.ends[1:])][args.warmup:]
    scored = int((batch["main"]["labels"][:, 1:] != IGNORE_INDEX).sum())
    return statistics.median(times), shape.train_flops(args.train_batch, args.train_length, scored)


def timed(device: str, run, *args):
    synchronize(device)
    start = time.perf_counter()
    out = run(*args)
    synchronize(device)
    return time.perf_counter() - start, out


def sample(student: Student, task, examples, args, forwards: Forwards, shape: Shape) -> dict[str, tuple[float, float]]:
    """Seconds and FLOPs of each way, and the tokens the shared way drew (``generated`` key: count, 0)."""
    prompts = [task.prompt(e) for e in examples[: args.prompts]]
    k, t, stop = 8, 0.7, list(task.until)
    ways = {"shared": lambda: sample_texts(student, prompts, args.new_tokens, k=k, temperature=t,
                                           batch_size=len(prompts), stop=stop),
            "per-prompt": lambda: with_generate(student, prompts, args.new_tokens, k=k, temperature=t, stop=stop,
                                                per_call=1)}
    out = {}
    with torch.autocast(args.device.split(":")[0], dtype=torch.bfloat16):
        for name, run in ways.items():
            run()  # warm-up
            forwards.shapes.clear()
            seconds, _ = timed(args.device, run)
            token_rows = forwards.computed()
            head_rows = sum(rows for rows, _ in forwards.shapes)
            out[name] = (seconds, shape.inference_flops(token_rows, head_rows))
            if name == "shared":
                out["generated"] = (forwards.drawn(), 0.0)
    return out


def score(student: Student, task, examples, args, forwards: Forwards, shape: Shape) -> dict[str, tuple[float, float]]:
    """Seconds and FLOPs of scoring at the batch size asked and at 1."""
    items = [Scored(e, e.rationale, e.answer) for e in examples[: args.ta_items]]
    out = {}
    with torch.autocast(args.device.split(":")[0], dtype=torch.bfloat16):
        for size in (args.ta_batch, 1):
            ta = LanguageModelTA(student, task, batch_size=size)
            ta.score(items[:size])  # warm-up
            forwards.shapes.clear()
            seconds, _ = timed(args.device, ta.score, items)
            targets = sum(len(target) for _, target, _ in map(ta._pieces, items))
            out[str(size)] = (seconds, shape.inference_flops(forwards.computed(), targets))
    return out


def mfu(flops: float, seconds: float, peak_flops: float | None, roofline: float) -> str:
    achieved = flops / seconds
    share = f"MFU {100 * achieved / peak_flops:5.1f}% of the peak, " if peak_flops else "MFU ? (no peak known), "
    return f"{achieved / 1e12:8.2f} TFLOP/s  {share}{100 * achieved / roofline:5.1f}% of the measured matmul"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS), default=["smollm2-135m", "qwen2.5-0.5b",
                                                                                  "qwen2.5-1.5b"])
    parser.add_argument("--only", nargs="+", choices=("train", "sample", "ta"), default=["train", "sample", "ta"])
    parser.add_argument("--train-batch", type=int, default=16)
    parser.add_argument("--train-length", type=int, default=1024)
    parser.add_argument("--warmup", type=int, default=2, help="untimed training steps")
    parser.add_argument("--steps", type=int, default=5, help="timed training steps")
    parser.add_argument("--prompts", type=int, default=32, help="sampling: prompts (k = 8 each)")
    parser.add_argument("--new-tokens", type=int, default=48, help="sampling: max new tokens (chain_sum's)")
    parser.add_argument("--ta-items", type=int, default=128)
    parser.add_argument("--ta-batch", type=int, default=32)
    parser.add_argument("--matmul-size", type=int, default=8192, help="the measured roofline's matmul")
    parser.add_argument("--peak-tflops", type=float, help="the device's dense bf16 peak, if not in the table")
    parser.add_argument("--goal", type=float, default=40.0, help="the training step's MFU goal, percent")
    args = parser.parse_args()
    logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*LeafSpec.*")

    data = chain_sum(train_size=max(args.prompts, args.ta_items), test_size=1, max_new_tokens=args.new_tokens)
    tokenizer = digit_tokenizer(data.task.prompt(e) + data.task.target(e.rationale, e.answer) for e in data.train)
    name, peak_flops = peak(args.device, args.peak_tflops)
    roofline = matmul_roofline(args.device, args.matmul_size)
    print(f"device {name}: dense bf16 peak {peak_flops / 1e12 if peak_flops else float('nan'):.0f} TFLOP/s (table), "
          f"measured {args.matmul_size}-square bf16 matmul {roofline / 1e12:.1f} TFLOP/s; torch {torch.__version__}, "
          f"transformers {transformers.__version__}, pytorch_lightning {pl.__version__}")
    verdicts = []
    for model_name in args.models:
        student = build(model_name, args.device, tokenizer)
        shape = Shape(student.model)
        print(f"{model_name}: {shape.params / 1e6:.0f}M params ({shape.body / 1e6:.0f}M body), random weights, "
              f"float32 weights under bf16 autocast")
        forwards = Forwards(student.model)
        if "train" in args.only:
            seconds, flops = train(student, data.task, args, shape)
            achieved = flops / seconds / (peak_flops or roofline)
            verdicts.append(f"{model_name} train {100 * achieved:.1f}% ({'meets' if 100 * achieved >= args.goal else 'misses'} "
                            f"the {args.goal:g}% goal{'' if peak_flops else ', against the measured matmul'})")
            print(f"  train   {args.train_batch} x {args.train_length} tokens: {seconds:.3f} s/step  "
                  f"{mfu(flops, seconds, peak_flops, roofline)}")
        if "sample" in args.only:
            ways = sample(student, data.task, data.train, args, forwards, shape)
            drawn = ways.pop("generated")[0]
            rate = {way: drawn / seconds for way, (seconds, _) in ways.items()}
            for way, (seconds, flops) in ways.items():
                print(f"  sample  {way:<10s} {args.prompts} prompts x k=8, {args.new_tokens} new tokens: {seconds:.2f} s  "
                      f"{rate[way]:8.0f} tokens/s  {mfu(flops, seconds, peak_flops, roofline)}")
            print(f"  sample  shared: {rate['shared'] / rate['per-prompt']:.2f}x the per-prompt loop's tokens/s")
        if "ta" in args.only:
            sizes = score(student, data.task, data.train, args, forwards, shape)
            for size, (seconds, flops) in sizes.items():
                print(f"  ta      batch_size={size:<4s} {args.ta_items} items: {seconds:.2f} s  "
                      f"{mfu(flops, seconds, peak_flops, roofline)}")
            print(f"  ta      batch_size={args.ta_batch}: {sizes['1'][0] / sizes[str(args.ta_batch)][0]:.2f}x batch_size=1")
        del student, forwards
        if args.device.startswith("cuda"):
            torch.cuda.empty_cache()
    print("training step MFU: " + "; ".join(verdicts) if verdicts else "")


if __name__ == "__main__":
    main()
