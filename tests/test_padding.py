"""Rows of different lengths as one batch tensor."""

import torch

from tailkd.models.padding import attention_mask, padded


def test_rows_are_padded_after_or_before_their_tokens():
    rows = [[5, 6, 7], [8], []]
    assert padded(rows, 0).tolist() == [[5, 6, 7], [8, 0, 0], [0, 0, 0]]
    assert padded(rows, -1, left=True).tolist() == [[5, 6, 7], [-1, -1, 8], [-1, -1, -1]]
    assert attention_mask(rows, left=True).tolist() == [[1, 1, 1], [0, 0, 1], [0, 0, 0]]
    marks = padded([[True], [False, True]], False, dtype=torch.bool)
    assert marks.dtype == torch.bool and marks.tolist() == [[True, False], [False, True]]
