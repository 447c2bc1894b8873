"""What the benchmarks share: the model under test, the chain_sum data and the precision the runs use."""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

import torch
from omegaconf import OmegaConf

from tailkd.models import load_student
from tailkd.models.student import Student
from tailkd.tasks import load_task_data

sys.path.insert(0, str(Path(__file__).resolve().parent))
from roofline import CLOCKS, use_clock  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SMOLLM2 = {"name": "smollm2", "arch": "causal", "source": "embedded", "pretrained": "smollm2-135m-instruct-q4_1",
           "dtype": "float32", "max_length": 256, "lora": {"enabled": False}}
PRECISIONS = ("bf16-mixed", "32-true")  # the runs' default (conf/trainer/default.yaml), and float32


def smollm2_config(vocab_size: int = 49152):
    """SmolLM2-135M's architecture (its config.json), built here: no hub access."""
    from transformers import LlamaConfig

    return LlamaConfig(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                       num_key_value_heads=3, vocab_size=vocab_size, max_position_embeddings=8192,
                       rms_norm_eps=1e-5, rope_theta=100000.0, tie_word_embeddings=True, hidden_act="silu",
                       bos_token_id=1, eos_token_id=2, pad_token_id=0)


def digit_tokenizer(texts):
    """A byte-level BPE trained on ``texts`` that splits numbers into digits as SmolLM2's tokenizer does, so
    chain_sum sequences come out as long as in the runs (8 x 56 tokens in the default run's batches)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                       pre_tokenizers.ByteLevel(add_prefix_space=False)])
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=4096, special_tokens=["<pad>", "<s>", "</s>"], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(list(texts), trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", bos_token="<s>", eos_token="</s>")


def smollm2_random(seed: int = 0) -> Student:
    """SmolLM2-135M's shapes with random weights (float32, as runs load it), and :func:`digit_tokenizer`."""
    from transformers import LlamaForCausalLM

    data = chain_sum(train_size=400, test_size=1)
    tokenizer = digit_tokenizer(data.task.prompt(e) + data.task.target(e.rationale, e.answer) for e in data.train)
    torch.manual_seed(seed)
    return Student(LlamaForCausalLM(smollm2_config()).eval(), tokenizer, "causal", "smollm2-135m-random")


def load_model(args) -> Student:
    """``--model``: SmolLM2-135M's shapes with random weights (default), the embedded SmolLM2-135M (its
    weights: fetched and converted once into ~/.cache/tailkd) or the tests' tiny random student."""
    if args.model == "tiny":
        sys.path.insert(0, str(REPO / "tests"))
        from helpers import tiny_student

        return tiny_student()
    if args.model == "embedded":
        return load_student(SMOLLM2, Path.home() / ".cache" / "tailkd")
    return smollm2_random()


def chain_sum(**sizes):
    """The embedded chain_sum task's data, with ``train_size`` / ``test_size`` / ... overridden."""
    cfg = OmegaConf.to_container(OmegaConf.load(REPO / "conf" / "task" / "chain_sum.yaml"), resolve=True)
    cfg.update(sizes)
    return load_task_data(cfg)


def add_common_args(parser, repeats: int = 2) -> None:
    parser.add_argument("--repeats", type=int, default=repeats, help="timed repeats per variant (median reported)")
    parser.add_argument("--model", choices=("random", "embedded", "tiny"), default="random",
                        help="SmolLM2-135M's shapes with random weights, its real weights, or the tests' tiny student")
    parser.add_argument("--tiny", dest="model", action="store_const", const="tiny", help="same as --model tiny")
    parser.add_argument("--precision", choices=PRECISIONS, default=PRECISIONS[0],
                        help="bf16-mixed (the runs' default: float32 weights, bfloat16 autocast) or 32-true")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                        help="wall seconds, or the process's CPU seconds (steadier on a shared machine, --threads 1)")


def apply_threads(args) -> None:
    """On a shared 2-core machine two torch threads stall on each other: --threads 1 steadies timings,
    and --clock cpu leaves out the time other jobs hold the core."""
    if args.threads:
        torch.set_num_threads(args.threads)
    use_clock(args.clock)


def autocast(precision: str):
    """What a run's inference outside Lightning runs under (tailkd.methods.pipeline.inference_precision)."""
    if precision.endswith("-mixed"):
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def matmul_dtype(precision: str) -> torch.dtype:
    return torch.bfloat16 if precision.startswith("bf16") else torch.float32


# the embedded teachers the few-shot teacher benches load (hf_local's generation, as the testbed runs them)
FEWSHOT_TEACHERS = {"qwen-1.5b": "qwen2.5-coder-1.5b-instruct-q4_k_m", "qwen-0.5b": "qwen2.5-coder-0.5b-instruct-q5"}


def teacher_args(description: str, max_new_tokens: int = 128, add=None) -> argparse.Namespace:
    """The few-shot teacher benches' command line (``add(parser)`` adds a bench's own options), parsed,
    its threads and clock applied."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--teacher", choices=sorted(FEWSHOT_TEACHERS), default="qwen-1.5b")
    parser.add_argument("--n", type=int, default=16, help="questions: one batch, as teacher.batch_size=16")
    parser.add_argument("--max-new-tokens", type=int, default=max_new_tokens)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall")
    parser.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data" / "commonsense_qa"))
    if add is not None:
        add(parser)
    args = parser.parse_args()
    apply_threads(args)
    return args


def fewshot_teacher(args, dtype: str = "bfloat16") -> tuple[Student, list[str]]:
    """``args.teacher`` loaded as ``hf_local`` loads it, and the texts it reads for ``args.n`` questions."""
    cfg = {"name": args.teacher, "arch": "causal", "source": "embedded", "pretrained": FEWSHOT_TEACHERS[args.teacher],
           "dtype": dtype, "max_length": 2048, "lora": {"enabled": False}}
    teacher = load_student(cfg, Path.home() / ".cache" / "tailkd")
    return teacher, teacher_prompts(teacher.tokenizer, args.data_dir, args.n)


def teacher_prompts(tokenizer, data_dir: str, n: int) -> list[str]:
    """The texts the few-shot teacher reads for the first ``n`` training questions: its prompt rendered
    with each question, in the model's chat template (as ``hf_local`` renders it)."""
    import jinja2

    fewshot = OmegaConf.load(REPO / "conf" / "teacher" / "qwen-1.5b-embedded-csqa-fewshot.yaml")
    template = jinja2.Template(fewshot.prompt)
    task_cfg = OmegaConf.to_container(OmegaConf.load(REPO / "conf" / "task" / "commonsense_qa.yaml"), resolve=True)
    task_cfg.update(data_dir=str(Path(data_dir).resolve()), train_size=n, test_size=1)
    questions = [e.question for e in load_task_data(task_cfg).train[:n]]
    return [tokenizer.apply_chat_template([{"role": "user", "content": template.render(question=q)}],
                                          add_generation_prompt=True, tokenize=False) for q in questions]
