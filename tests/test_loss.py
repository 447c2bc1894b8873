"""Invariants of the per-example weighted loss."""

import pytest
import torch
import torch.nn.functional as F

from tailkd.training.loss import (
    IGNORE_INDEX,
    per_example_target_loss,
    per_example_token_loss,
    scored_positions,
    weighted_mean,
)
from tailkd.training.records import normalise_weights


def _batch(seed=0, batch=5, length=12, vocab=17):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch, length, vocab, generator=gen)
    labels = torch.randint(0, vocab, (batch, length), generator=gen)
    # prompts of different lengths are masked out, and right padding after targets of different lengths
    for row in range(batch):
        labels[row, : 2 + row] = IGNORE_INDEX
        labels[row, length - row:] = IGNORE_INDEX
    return logits, labels


def test_token_loss_is_averaged_within_each_example():
    logits, labels = _batch()
    got = per_example_token_loss(logits, labels, shift=True)
    for row in range(logits.size(0)):
        lg, lb = logits[row, :-1], labels[row, 1:]
        keep = lb != IGNORE_INDEX
        expected = F.cross_entropy(lg[keep], lb[keep])  # mean over this example's tokens only
        assert torch.allclose(got[row], expected, atol=1e-6)


def test_seq2seq_loss_is_not_shifted():
    # logits at position t score label t (an encoder-decoder's decoder already reads the shifted labels)
    logits, labels = _batch()
    got = per_example_token_loss(logits, labels, shift=False)
    for row in range(logits.size(0)):
        keep = labels[row] != IGNORE_INDEX
        expected = F.cross_entropy(logits[row][keep], labels[row][keep])
        assert torch.allclose(got[row], expected, atol=1e-6)


@pytest.mark.parametrize("value", [1.0, 0.25, 7.0, 1e-3])
def test_equal_weights_give_exactly_the_unweighted_loss(value):
    logits, labels = _batch()
    per_example = per_example_token_loss(logits, labels, shift=True)
    weights = torch.tensor(normalise_weights([value] * len(per_example)))
    assert torch.equal(weighted_mean(per_example, weights), per_example.mean())


def test_weights_change_the_loss_and_scale_does_not():
    logits, labels = _batch()
    per_example = per_example_token_loss(logits, labels, shift=True)
    raw = [0.1, 2.0, 1.0, 0.5, 3.0]
    weighted = weighted_mean(per_example, torch.tensor(normalise_weights(raw)))
    scaled = weighted_mean(per_example, torch.tensor(normalise_weights([10 * w for w in raw])))
    assert not torch.isclose(weighted, per_example.mean())
    assert torch.allclose(weighted, scaled)
    expected = sum(w * loss for w, loss in zip(raw, per_example.tolist())) / sum(raw)
    assert weighted.item() == pytest.approx(expected, rel=1e-6)


def test_zero_weight_removes_an_example():
    logits, labels = _batch()
    per_example = per_example_token_loss(logits, labels, shift=True)
    loss = weighted_mean(per_example, torch.tensor(normalise_weights([0, 1, 1, 1, 1])))
    assert loss.item() == pytest.approx(per_example[1:].mean().item(), rel=1e-6)


def test_bad_weights_are_refused():
    with pytest.raises(ValueError, match="non-negative"):
        normalise_weights([1.0, -0.5])
    with pytest.raises(ValueError, match="zero"):
        normalise_weights([0.0, 0.0])


def test_an_example_without_target_tokens_is_an_error():
    logits, labels = _batch()
    labels[0] = IGNORE_INDEX
    with pytest.raises(ValueError, match="max_length"):
        per_example_token_loss(logits, labels, shift=True)


def test_loss_from_the_scored_positions_alone_is_the_token_loss():
    # the training module computes logits only where the next token is a target (no prompt, no padding)
    logits, labels = _batch()
    scored = scored_positions(labels)
    assert scored.sum() == (labels != IGNORE_INDEX).sum() and not scored[:, -1].any()
    got = per_example_target_loss(logits[scored], labels, scored)
    assert torch.allclose(got, per_example_token_loss(logits, labels, shift=True), atol=1e-6)
    labels[0] = IGNORE_INDEX
    with pytest.raises(ValueError, match="max_length"):
        per_example_target_loss(logits[scored_positions(labels)], labels, scored_positions(labels))
