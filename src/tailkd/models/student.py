"""Load a student (decoder-only or encoder-decoder) from the hub, a local folder, an embedded package
or as a tiny random model, with optional LoRA adapters."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from tailkd.errors import ConfigError
from tailkd.models.embedded import embedded_model_dir
from tailkd.models.tiny import build_tiny_model, train_tiny_tokenizer

log = logging.getLogger(__name__)

ARCHS = ("causal", "seq2seq")
SOURCES = ("hub", "embedded", "tiny")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class Student:
    model: torch.nn.Module
    tokenizer: Any
    arch: str
    name: str

    @property
    def is_causal(self) -> bool:
        return self.arch == "causal"


def check_student_cfg(cfg: Mapping[str, Any]) -> None:
    if cfg.get("arch") not in ARCHS:
        raise ConfigError(f"student.arch={cfg.get('arch')!r} is unknown; choose one of {list(ARCHS)}")
    if cfg.get("source") not in SOURCES:
        raise ConfigError(f"student.source={cfg.get('source')!r} is unknown; choose one of {list(SOURCES)}")
    if cfg.get("dtype", "float32") not in DTYPES:
        raise ConfigError(f"student.dtype={cfg.get('dtype')!r} is unknown; choose one of {sorted(DTYPES)}")
    if cfg.get("source") == "hub" and cfg.get("pretrained"):
        check_local_weights(Path(str(cfg["pretrained"])).expanduser())


def check_local_weights(folder: Path) -> None:
    """Every safetensors file of a local model folder opens (its header is read, nothing loaded): an empty
    or cut-short file, from a copy or a save that was interrupted, is named now, not by a deserialiser's
    traceback after the teacher was paid. A hub id is no folder and is not checked."""
    if not folder.is_dir():
        return
    from safetensors import safe_open

    for path in sorted(folder.glob("*.safetensors")):
        try:
            with safe_open(str(path), framework="pt"):
                pass
        except Exception as err:  # safetensors raises its own error type, and OSError for unreadable files
            raise ConfigError(f"{path} is not a readable safetensors file ({err}); the model folder is damaged "
                              f"or was not fully written") from err


def load_student(cfg: Mapping[str, Any], cache_dir: Path, tokenizer_texts: Iterable[str] = ()) -> Student:
    """``tokenizer_texts`` trains the tiny student's tokenizer and is ignored otherwise."""
    check_student_cfg(cfg)
    arch, source = cfg["arch"], cfg["source"]
    if source == "tiny":
        tokenizer = train_tiny_tokenizer(tokenizer_texts, int(cfg.get("vocab_size", 512)))
        torch.manual_seed(int(cfg.get("init_seed", 0)))
        model = build_tiny_model(arch, tokenizer, cfg.get("size") or {})
    else:
        location = str(cfg["pretrained"])
        if source == "embedded":
            location = str(embedded_model_dir(location, cache_dir))
        model, tokenizer = _from_pretrained(arch, location, DTYPES[cfg.get("dtype", "float32")])
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    head = model.get_output_embeddings()
    if head is not None:
        head.register_forward_pre_hook(_contiguous_input)
    if cfg.get("lora", {}).get("enabled"):
        model = _with_lora(model, arch, cfg["lora"])
    return Student(model, tokenizer, arch, cfg["name"])


def _contiguous_input(module, args):
    """The output layer gets the last position of each row (``logits_to_keep``), a strided (rows, 1,
    hidden) slice. torch's matmul folds that into one matrix product only while the weight requires grad;
    once it is frozen (PEFT's base model: a LoRA student, the aligned teacher) it takes a batched product
    over the weight expanded per row, which on a CPU copies it once per row in bfloat16 (7.5 GB and 23 s a
    batch of 16 for the 1.5B teacher) and takes 5x the time in float32 (pytorch/pytorch#186148). A
    contiguous input folds whatever the weight."""
    return (args[0].contiguous(), *args[1:])


def _from_pretrained(arch: str, location: str, dtype: torch.dtype):
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    auto = AutoModelForCausalLM if arch == "causal" else AutoModelForSeq2SeqLM
    try:
        tokenizer = AutoTokenizer.from_pretrained(location)
        model = auto.from_pretrained(location, dtype=dtype)
    except OSError as err:
        raise ConfigError(
            f"cannot load student {location!r} ({err}). Offline? Set student.pretrained to a local folder "
            f"holding the model, or use student=smollm2-135m-embedded."
        ) from err
    return model, tokenizer


def _with_lora(model, arch: str, lora: Mapping[str, Any]):
    from peft import LoraConfig, TaskType, get_peft_model

    target_modules = lora.get("target_modules")
    config = LoraConfig(
        task_type=TaskType.CAUSAL_LM if arch == "causal" else TaskType.SEQ_2_SEQ_LM,
        r=int(lora.get("r", 8)),
        lora_alpha=int(lora.get("alpha", 16)),
        lora_dropout=float(lora.get("dropout", 0.0)),
        target_modules=list(target_modules) if target_modules else "all-linear",
    )
    model = get_peft_model(model, config)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    log.info("LoRA: %d of %d parameters trainable (%.2f%%)", trainable, total, 100 * trainable / total)
    return model
