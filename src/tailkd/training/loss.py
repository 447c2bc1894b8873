"""The per-example weighted loss every method trains with.

Token losses are averaged within each example, so a long rationale counts as much as a short one;
then each example's loss is multiplied by its weight and the products are averaged over the batch.

Weights are normalised to mean 1 over the training set (``tailkd.training.records``), not per batch: a
per-batch normaliser would make the loss depend on how examples fall into (micro-)batches, so
gradient accumulation would change the result. With mean-one weights, equal weights give exactly
the unweighted loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100


def per_example_token_loss(logits: torch.Tensor, labels: torch.Tensor, shift: bool) -> torch.Tensor:
    """Mean cross-entropy over each example's target tokens, shape ``[batch]``.

    ``shift``: decoder-only logits at position t predict token t+1; seq2seq logits align with labels.
    """
    if shift:
        logits, labels = logits[:, :-1], labels[:, 1:]
    token_loss = F.cross_entropy(
        logits.reshape(-1, logits.size(-1)).float(),
        labels.reshape(-1),
        ignore_index=IGNORE_INDEX,
        reduction="none",
    ).view(labels.shape)
    mask = labels != IGNORE_INDEX
    counts = mask.sum(dim=1)
    if (counts == 0).any():
        raise ValueError("an example has no target tokens (truncated away?): raise student.max_length")
    return (token_loss * mask).sum(dim=1) / counts


def scored_positions(labels: torch.Tensor) -> torch.Tensor:
    """``[batch, length]`` bool: the positions whose logits a decoder-only loss reads (the next token is a
    target). Prompt and padding positions are left out: their logits are most of the full-vocabulary work."""
    scored = torch.zeros_like(labels, dtype=torch.bool)
    scored[:, :-1] = labels[:, 1:] != IGNORE_INDEX
    return scored


def per_example_target_loss(logits: torch.Tensor, labels: torch.Tensor, scored: torch.Tensor) -> torch.Tensor:
    """:func:`per_example_token_loss` (decoder-only) from the logits at the ``scored`` positions only,
    ``[scored.sum(), vocab]`` in row-major order (as ``hidden[scored]`` selects them), shape ``[batch]``."""
    counts = scored.sum(dim=1)
    if (counts == 0).any():
        raise ValueError("an example has no target tokens (truncated away?): raise student.max_length")
    targets = labels[:, 1:][scored[:, :-1]]
    token_loss = F.cross_entropy(logits.float(), targets, reduction="none")
    rows = torch.arange(len(counts), device=counts.device).repeat_interleave(counts)
    sums = torch.zeros(len(counts), dtype=token_loss.dtype, device=token_loss.device).index_add(0, rows, token_loss)
    return sums / counts


def weighted_mean(per_example: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    return (per_example * weights.to(per_example.dtype)).mean()
