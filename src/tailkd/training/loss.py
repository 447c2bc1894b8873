"""The per-example weighted loss every method trains with.

Token losses are averaged within each example, so a long rationale counts as much as a short one;
then each example's loss is multiplied by its weight and the products are averaged over the batch.

Weights are normalised to mean 1 over the training set (:func:`normalise_weights`), not per batch: a
per-batch normaliser would make the loss depend on how examples fall into (micro-)batches, so
gradient accumulation would change the result. With mean-one weights, equal weights give exactly
the unweighted loss.
"""

from __future__ import annotations

from collections.abc import Sequence

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


def weighted_mean(per_example: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    return (per_example * weights.to(per_example.dtype)).mean()


def normalise_weights(weights: Sequence[float]) -> list[float]:
    """Scale non-negative weights to mean 1 over the training set."""
    if not weights:
        return []
    if any(w < 0 for w in weights):
        raise ValueError("example weights must be non-negative")
    mean = sum(weights) / len(weights)
    if mean == 0:
        raise ValueError("all example weights are zero: nothing to learn from")
    return [w / mean for w in weights]
