"""Batched generation for decoder-only and encoder-decoder students."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch

from tailkd.models.student import Student


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """Everything before the first stop string: a student that has not learnt to end its answer
    goes on with a new question, which must not be scored."""
    cut = len(text)
    for s in stop:
        index = text.find(s)
        if index != -1:
            cut = min(cut, index)
    return text[:cut]


@contextlib.contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[None]:
    """Dropout off for the block (T5 and LoRA students have it), the model's mode restored after:
    a generation in train mode is neither greedy nor reproducible."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


@torch.no_grad()
def generate_texts(
    student: Student,
    prompts: Sequence[str],
    max_new_tokens: int,
    *,
    stop: Sequence[str] = (),
    do_sample: bool = False,
    temperature: float = 1.0,
    num_return_sequences: int = 1,
) -> list[str]:
    """Continuations of ``prompts`` (``num_return_sequences`` per prompt, prompt-major order), in one
    ``generate`` call: callers batch, this function does not split."""
    tokenizer, model = student.tokenizer, student.model
    # decoder-only models continue from the last position of each row, so pad on the left
    tokenizer.padding_side = "left" if student.is_causal else "right"
    encoded = tokenizer(list(prompts), return_tensors="pt", padding=True).to(model.device)
    kwargs = dict(
        max_new_tokens=max_new_tokens,
        do_sample=do_sample,
        num_return_sequences=num_return_sequences,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    if do_sample:
        kwargs.update(temperature=temperature, top_p=1.0, top_k=0)
    if _world_size() > 1:  # sharded weights (FSDP) need every rank in every forward pass, even one whose rows ended
        kwargs["synced_gpus"] = True
    with eval_mode(model):
        output = model.generate(**encoded, **kwargs)
    if student.is_causal:
        output = output[:, encoded["input_ids"].shape[1]:]
    texts = tokenizer.batch_decode(output, skip_special_tokens=True)
    return [cut_at_stop(t, stop).strip() for t in texts]


def _world_size() -> int:
    """Processes in the initialised process group, else 1 (``tailkd.training.distributed.world``'s second
    half: models sit below training and do not import it)."""
    dist = torch.distributed
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
