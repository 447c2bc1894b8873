"""Token rows of different lengths as one batch tensor."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.nn.utils.rnn import pad_sequence


def padded(rows: Sequence[Sequence[int | bool]], value: int | bool, *, left: bool = False,
           dtype: torch.dtype = torch.long) -> torch.Tensor:
    """``rows`` as one ``[len(rows), longest]`` tensor, filled with ``value`` after each row (before it
    with ``left``: a decoder continues from the last position)."""
    tensors = [torch.tensor(list(row[::-1] if left else row), dtype=dtype) for row in rows]
    batch = pad_sequence(tensors, batch_first=True, padding_value=value)
    return batch.flip(1) if left else batch


def attention_mask(rows: Sequence[Sequence[int]], *, left: bool = False) -> torch.Tensor:
    """1 over each row's tokens, 0 over the padding :func:`padded` adds."""
    return padded([[1] * len(row) for row in rows], 0, left=left)
