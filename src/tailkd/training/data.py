"""Training records, their tokenisation, and the LightningDataModule."""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Sequence
from typing import Any

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Sampler

from tailkd.models.padding import attention_mask, padded
from tailkd.tasks import Example
from tailkd.training.loss import IGNORE_INDEX
from tailkd.training.records import TrainRecord, normalise_weights

log = logging.getLogger(__name__)


TRUNCATIONS = ("keep_answer", "drop")
MIN_PROMPT_TOKENS = 16  # what a decoder keeps of a prompt cut to fit: its end, where the question is


class Encoder:
    """Tokenises (prompt, target) pairs: loss on the target only.

    A pair longer than ``max_length`` (``truncation=keep_answer``) loses the start of its prompt first
    (down to its last :data:`MIN_PROMPT_TOKENS` tokens, where the question is), then the middle of its
    target: the target's beginning and its answer sentence and end-of-sequence token always stay, so a
    student is never taught a rationale that stops before its answer. ``truncation=drop`` leaves such
    pairs out of training instead (the data module counts them). ``max_length=None`` is chosen by the
    data module from the training set (``student.max_length=auto``)."""

    def __init__(self, tokenizer, is_causal: bool, max_length: int | None, truncation: str = "keep_answer"):
        if truncation not in TRUNCATIONS:
            raise ValueError(f"student.truncation={truncation!r} is unknown; choose one of {list(TRUNCATIONS)}")
        self.tokenizer = tokenizer
        self.is_causal = is_causal
        self.max_length = int(max_length) if max_length is not None else None
        self.truncation = truncation

    def _ids(self, text: str, special: bool) -> list[int]:
        return self.tokenizer(text, add_special_tokens=special)["input_ids"]

    def _target(self, target: str, keep_tail: int) -> tuple[list[int], int]:
        """The target's ids with EOS, and how many ids at its end must survive a cut (answer and EOS)."""
        encoded = self.tokenizer(target, add_special_tokens=False, return_offsets_mapping=bool(keep_tail))
        ids = list(encoded["input_ids"])
        cut = len(target) - keep_tail
        tail = sum(1 for _, end in encoded["offset_mapping"] if end > cut) if keep_tail else 0
        eos = self.tokenizer.eos_token_id
        if not ids or ids[-1] != eos:
            ids.append(eos)
            tail += 1
        return ids, max(tail, 1)

    def length(self, prompt: str, target: str) -> int:
        """Tokens the pair needs: prompt + target for a decoder, the longer side for an encoder-decoder."""
        p, t = len(self._ids(prompt, special=True)), len(self._target(target, 0)[0])
        return p + t if self.is_causal else max(p, t)

    def encode(self, prompt: str, target: str, keep_tail: int = 0) -> tuple[list[int], list[int]]:
        """(input_ids, labels); decoder-only: one sequence with the prompt masked out of the labels."""
        assert self.max_length is not None, "the data module sets max_length before encoding"
        prompt_ids = self._ids(prompt, special=True)
        target_ids, tail = self._target(target, keep_tail)
        limit = self.max_length
        if not self.is_causal:
            return prompt_ids[-limit:], _head_and_tail(target_ids, tail, limit)
        if len(prompt_ids) + len(target_ids) > limit:
            keep = max(min(len(prompt_ids), MIN_PROMPT_TOKENS), limit - len(target_ids))
            prompt_ids = prompt_ids[len(prompt_ids) - keep:]
            target_ids = _head_and_tail(target_ids, tail, limit - len(prompt_ids))
        ids = prompt_ids + target_ids
        return ids, [IGNORE_INDEX] * len(prompt_ids) + target_ids

    def collate(self, pairs: Sequence[tuple[str, str, int]]) -> dict[str, torch.Tensor]:
        # right padding: a causal row's positions stay 0..n-1
        encoded = [self.encode(*pair) for pair in pairs]
        ids, labels = [ids for ids, _ in encoded], [lab for _, lab in encoded]
        return {"input_ids": padded(ids, self.tokenizer.pad_token_id), "attention_mask": attention_mask(ids),
                "labels": padded(labels, IGNORE_INDEX)}

    def collate_records(self, records: Sequence[TrainRecord]) -> dict[str, Any]:
        batch: dict[str, Any] = {
            "ids": [r.id for r in records],
            "weight": torch.tensor([r.weight for r in records], dtype=torch.float32),
            "main": self.collate([(r.prompt, r.target, r.keep_tail) for r in records]),
        }
        if records[0].aux_target is not None:
            batch["aux"] = self.collate([(r.aux_prompt, r.aux_target, r.aux_keep_tail) for r in records])
        return batch


def _head_and_tail(ids: list[int], tail: int, room: int) -> list[int]:
    """``ids`` cut to ``room``: its beginning and its last ``tail`` ids (the middle goes)."""
    if len(ids) <= room:
        return ids
    tail = min(tail, room)
    return ids[: room - tail] + ids[len(ids) - tail:]


def fit_lengths(records: Sequence[TrainRecord], encoder: Encoder, cap: int) -> dict[str, Any]:
    """Sets ``encoder.max_length`` when it is ``auto`` (the longest training pair, rounded up to a
    multiple of 8, at most ``cap``: batches pad to their own longest, so a generous limit costs
    nothing) and says which records exceed it: ``{"max_length", "too_long": [bool per record]}``."""
    lengths = [max(encoder.length(p, t) for p, t, _ in r.pairs()) for r in records]
    if encoder.max_length is None:
        encoder.max_length = min(int(cap), -(-max(lengths, default=16) // 8) * 8)
    return {"max_length": encoder.max_length, "too_long": [n > encoder.max_length for n in lengths]}


class ExampleBatch:
    """Test questions for generation. Not a list or dataclass on purpose: Lightning would try to move
    their fields to the device; generation tokenises and moves what it needs."""

    __slots__ = ("examples",)

    def __init__(self, examples: Sequence[Example]):
        self.examples = list(examples)


class ResumableSampler(Sampler[int]):
    """A fresh order of the training records each epoch, decided by (seed, epoch) alone, so that a run
    resumed part-way into an epoch (:meth:`resume_at`) sees exactly the batches an uninterrupted run
    would. Lightning calls :meth:`set_epoch` at each epoch's start."""

    def __init__(self, size: int, seed: int):
        self.size, self.seed = int(size), int(seed)
        self.epoch, self._skip = 0, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def resume_at(self, epoch: int, examples_done: int) -> None:
        """The next iteration starts in ``epoch`` after its first ``examples_done`` examples."""
        self.epoch, self._skip = int(epoch), int(examples_done)

    def order(self, epoch: int) -> list[int]:
        digest = hashlib.sha256(f"tailkd-order:{self.seed}:{epoch}".encode()).digest()
        generator = torch.Generator().manual_seed(int.from_bytes(digest[:8], "big") & (2**63 - 1))
        return torch.randperm(self.size, generator=generator).tolist()

    def __iter__(self):
        skip, self._skip = self._skip, 0
        yield from self.order(self.epoch)[skip:]

    def __len__(self) -> int:
        return self.size


class DistillDataModule(pl.LightningDataModule):
    """Train batches of :class:`TrainRecord` (weights normalised to mean 1), test batches of examples.

    ``window_examples(batch_idx, accumulate)`` says how many examples the optimiser step that batch
    belongs to averages over, so that the loss can be the mean over the whole accumulation window:
    then 1 x 8, 2 x 4 and 4 x 2 give the same update even for the last, partial window of an epoch."""

    def __init__(
        self,
        records: Sequence[TrainRecord],
        test_examples: Sequence[Example],
        encoder: Encoder,
        batch_size: int,
        eval_batch_size: int,
        seed: int = 0,
        max_length_cap: int = 1024,
    ):
        super().__init__()
        if not records:
            raise ValueError("no training records: the teacher budget bought nothing usable")
        fitted = fit_lengths(records, encoder, max_length_cap)
        too_long = fitted["too_long"]
        self.lengths = {"max_length": fitted["max_length"], "truncated_examples": sum(too_long),
                        "truncated_share": round(sum(too_long) / len(records), 4), "dropped_too_long": 0}
        if any(too_long):
            verb = "are left out" if encoder.truncation == "drop" else "lose prompt and rationale tokens, never their answer"
            log.warning("%d of %d training sequences exceed student.max_length=%d and %s", sum(too_long),
                        len(records), encoder.max_length, verb)
        if encoder.truncation == "drop":
            records = [r for r, long in zip(records, too_long) if not long]
            self.lengths["dropped_too_long"] = sum(too_long)
            if not records:
                raise ValueError(f"every training sequence exceeds student.max_length={encoder.max_length}")
        weights = normalise_weights([r.weight for r in records])
        self.records = [TrainRecord(**{**r.__dict__, "weight": w}) for r, w in zip(records, weights)]
        self.test_examples = list(test_examples)
        self.encoder = encoder
        self.batch_size = int(batch_size)
        self.eval_batch_size = int(eval_batch_size)
        self.seed = int(seed)
        self.sampler = ResumableSampler(len(self.records), self.seed)

    def train_dataloader(self) -> DataLoader:
        # a generator of its own: a DataLoader draws a base seed per epoch, which must not come from the
        # global RNG that dropout uses (a resumed run would draw it at another moment)
        return DataLoader(self.records, batch_size=self.batch_size, sampler=self.sampler,
                          collate_fn=self.encoder.collate_records, generator=torch.Generator().manual_seed(self.seed))

    def window_examples(self, batch_idx: int, accumulate: int, world_size: int = 1) -> int:
        """Examples in the accumulation window of ``batch_idx`` (0-based within the epoch) on this rank;
        a distributed sampler gives each rank ceil(n / world) of them."""
        per_rank = math.ceil(len(self.records) / world_size)
        start = (batch_idx // accumulate) * accumulate * self.batch_size
        return min(per_rank, start + accumulate * self.batch_size) - start

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.test_examples, batch_size=self.eval_batch_size, shuffle=False, collate_fn=ExampleBatch)


class EvalDataModule(pl.LightningDataModule):
    """Test batches only: evaluating a saved model needs no training records."""

    def __init__(self, test_examples: Sequence[Example], eval_batch_size: int):
        super().__init__()
        self.test_examples = list(test_examples)
        self.eval_batch_size = int(eval_batch_size)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.test_examples, batch_size=self.eval_batch_size, shuffle=False, collate_fn=ExampleBatch)
