"""Student loading: tiny, local folders through the hub path, LoRA, and clear errors."""

from pathlib import Path

import pytest
import torch

from tailkd.errors import ConfigError
from tailkd.models import generate_texts, load_student
from tailkd.models.embedded import embedded_model_dir

from helpers import TEXTS, tiny_student, trained_lora


def _hub_cfg(location, arch="causal", lora=False):
    return {
        "name": "local", "arch": arch, "source": "hub", "pretrained": str(location), "dtype": "float32",
        "max_length": 64, "lora": {"enabled": lora, "r": 4, "alpha": 8, "dropout": 0.0, "target_modules": None},
    }


@pytest.mark.parametrize("arch", ["causal", "seq2seq"])
def test_a_saved_student_loads_back_from_a_local_folder(tmp_path, arch):
    student = tiny_student(arch, init_seed=4)
    student.model.save_pretrained(tmp_path)
    student.tokenizer.save_pretrained(tmp_path)
    loaded = load_student(_hub_cfg(tmp_path, arch), Path("/nonexistent-cache"))
    assert loaded.arch == arch and type(loaded.model) is type(student.model)
    student.model.eval()
    loaded.model.eval()
    prompts = ["Q: 12 + 7 - 3?", "Question: What is 1 + 2?"]
    assert generate_texts(loaded, prompts, 6) == generate_texts(student, prompts, 6)


def test_lora_trains_only_the_adapters(tmp_path):
    student = tiny_student(lora=True)
    trainable = [n for n, p in student.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    frozen = sum(p.numel() for p in student.model.parameters() if not p.requires_grad)
    assert frozen > sum(p.numel() for p in student.model.parameters() if p.requires_grad)


def test_missing_model_names_the_way_out():
    with pytest.raises(ConfigError, match="local folder"):
        load_student(_hub_cfg("/no/such/model/folder"), Path("/nonexistent-cache"))


@pytest.mark.parametrize("field,value", [("arch", "rnn"), ("source", "ftp"), ("dtype", "int3")])
def test_bad_student_settings(field, value):
    cfg = _hub_cfg("/x")
    cfg[field] = value
    with pytest.raises(ConfigError, match=f"student.{field}"):
        load_student(cfg, Path("/nonexistent-cache"))


def test_unknown_embedded_model(tmp_path):
    with pytest.raises(ConfigError, match="not an embedded model"):
        embedded_model_dir("gpt-5-nano", tmp_path)


def test_greedy_generation_runs_without_dropout_and_restores_the_mode():
    # a LoRA student with adapter dropout, left in train mode as Lightning leaves it after fit
    cfg = {"name": "tiny", "arch": "causal", "source": "tiny", "vocab_size": 300, "init_seed": 0,
           "size": {"hidden_size": 32, "num_layers": 2, "num_heads": 4}, "dtype": "float32",
           "lora": {"enabled": True, "r": 4, "alpha": 8, "dropout": 0.9, "target_modules": None}}
    student = load_student(cfg, Path("/nonexistent-cache"), TEXTS * 4)
    with torch.no_grad():  # make the adapters matter, so that dropping parts of them changes the output
        for name, param in student.model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 1.0)
    student.model.train()
    prompts = ["Question: What is 12 + 7 - 3?\nAnswer:", "Question: What is 5 + 9?\nAnswer:"]
    first = generate_texts(student, prompts, 12)
    assert student.model.training  # the caller's mode comes back
    assert all(generate_texts(student, prompts, 12) == first for _ in range(3))
    student.model.eval()
    assert generate_texts(student, prompts, 12) == first


def test_generation_syncs_the_ranks_only_under_several_processes(monkeypatch):
    """Sharded weights need every rank in every forward pass: under a process group of more than one
    process, ``generate`` with ``synced_gpus`` (our own loop drops ended rows, and stops when they all
    have); in one process, not ``generate`` at all (read from torch.distributed: models do not import
    training)."""
    student = tiny_student("causal")
    seen = []
    monkeypatch.setattr(student.model, "generate", lambda **kwargs: seen.append(kwargs.get("synced_gpus")) or
                        kwargs["input_ids"])
    generate_texts(student, ["1 + 2 ="], 2)
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda group=None: 2)
    generate_texts(student, ["1 + 2 ="], 2)
    assert seen == [True]


def test_an_adapter_that_cannot_be_served_in_place_is_left_to_peft():
    from tailkd.models.lora import serve_in_place

    ids = torch.randint(0, 200, (2, 16), generator=torch.Generator().manual_seed(0))
    model = trained_lora(tiny_student(init_seed=2).model, use_dora=True)
    with torch.no_grad():
        before = model(input_ids=ids).logits
        assert serve_in_place(model) is model
        assert torch.equal(model(input_ids=ids).logits, before)
        with model.disable_adapter():
            assert not torch.allclose(model(input_ids=ids).logits, before)  # the adapter is still in use


def test_an_adapter_served_in_place_runs_under_autocast_as_peft_does():
    """A float32 model under bfloat16 autocast (how students infer) gets bfloat16 outputs from its linear
    layers: the update is added out of place there, not into a tensor of another dtype."""
    from tailkd.models.lora import serve_in_place

    ids = torch.randint(0, 200, (2, 16), generator=torch.Generator().manual_seed(0))
    model = trained_lora(tiny_student(init_seed=2).model)
    with torch.no_grad():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            peft = model(input_ids=ids).logits.float()
            served = serve_in_place(model)
            assert served is not model
            mixed = served(input_ids=ids).logits.float()
        exact = served(input_ids=ids).logits
    assert (mixed - exact).norm() <= 1.5 * (peft - exact).norm()
