"""Randomly initialised tiny students for fast tests and smoke runs.

Their tokenizer is a byte-level BPE trained in milliseconds on the task's own texts, so nothing is
downloaded and every byte still has a token.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

SPECIAL_TOKENS = ["<pad>", "<s>", "</s>"]


def train_tiny_tokenizer(texts: Iterable[str], vocab_size: int = 512) -> PreTrainedTokenizerFast:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(list(texts), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token="<pad>", bos_token="<s>", eos_token="</s>"
    )


def build_tiny_model(arch: str, tokenizer: PreTrainedTokenizerFast, size: Mapping[str, Any]):
    hidden = int(size.get("hidden_size", 64))
    layers = int(size.get("num_layers", 2))
    heads = int(size.get("num_heads", 4))
    common = dict(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    if arch == "causal":
        from transformers import LlamaConfig, LlamaForCausalLM

        config = LlamaConfig(
            hidden_size=hidden, intermediate_size=hidden * 2, num_hidden_layers=layers,
            num_attention_heads=heads, num_key_value_heads=heads, max_position_embeddings=1024,
            bos_token_id=tokenizer.bos_token_id, tie_word_embeddings=True, **common,
        )
        return LlamaForCausalLM(config)
    from transformers import T5Config, T5ForConditionalGeneration

    config = T5Config(
        d_model=hidden, d_ff=hidden * 2, d_kv=hidden // heads, num_layers=layers, num_heads=heads,
        dropout_rate=0.0, decoder_start_token_id=tokenizer.pad_token_id, **common,
    )
    return T5ForConditionalGeneration(config)
