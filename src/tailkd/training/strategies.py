"""Lightning strategies that need Python objects a YAML file cannot hold (``trainer=fsdp``)."""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn as nn

from tailkd.errors import ConfigError

# where transformers defines the blocks named in conf/trainer/fsdp.yaml
_MODULES = {
    "LlamaDecoderLayer": "transformers.models.llama.modeling_llama",
    "Qwen2DecoderLayer": "transformers.models.qwen2.modeling_qwen2",
    "T5Block": "transformers.models.t5.modeling_t5",
    "MistralDecoderLayer": "transformers.models.mistral.modeling_mistral",
    "GPT2Block": "transformers.models.gpt2.modeling_gpt2",
}


def layer_classes(names: Sequence[str]) -> set[type[nn.Module]]:
    """Block classes by name: a known short name, or a dotted path ``package.module.Class``."""
    import importlib

    classes = set()
    for name in names:
        module_name, _, cls = name.rpartition(".") if "." in name else (_MODULES.get(name, ""), "", name)
        if not module_name:
            raise ConfigError(f"trainer.pl.strategy.layers: {name!r} is unknown; give its dotted path, "
                              f"e.g. transformers.models.llama.modeling_llama.LlamaDecoderLayer")
        try:
            classes.add(getattr(importlib.import_module(module_name), cls))
        except (ImportError, AttributeError) as err:
            raise ConfigError(f"trainer.pl.strategy.layers: cannot import {name!r} ({err})") from err
    return classes


def fsdp(layers: Sequence[str] = (), sharding_strategy: str = "FULL_SHARD", activation_checkpointing: bool = False,
         **kwargs):
    from pytorch_lightning.strategies import FSDPStrategy

    blocks = layer_classes(layers)
    return FSDPStrategy(
        auto_wrap_policy=blocks or None,
        activation_checkpointing_policy=blocks if activation_checkpointing else None,
        sharding_strategy=sharding_strategy,
        **kwargs,
    )
