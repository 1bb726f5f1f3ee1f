"""The contrast term of `defemb train --contrast` (`defemb.method.train.contrast_loss`)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from defemb.method.train import CONTRAST_TEMPERATURE, contrast_loss, own_row_in_top


def _slow(prediction: np.ndarray, own: int, table: np.ndarray) -> float:
    """−log softmax at ``own`` of cos(p − μ, t_v − μ) / τ over every row, with loops and math.exp."""
    mean = table.mean(axis=0)

    def cosine(a, b):
        return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))

    logits = [cosine(prediction - mean, row - mean) / CONTRAST_TEMPERATURE for row in table]
    top = max(logits)
    return -(logits[own] - top - math.log(sum(math.exp(x - top) for x in logits)))


def test_contrast_loss_matches_a_slow_count():
    rng = np.random.default_rng(0)
    table = rng.normal(size=(40, 6)) + 3.0  # a shared offset, as real tables have: the cosine is read around it
    predictions = table[[3, 17, 17, 39]] + rng.normal(scale=0.5, size=(4, 6))
    ids = [3, 17, 5, 39]  # the third prediction is near row 17 but must pick row 5: a large loss
    got = contrast_loss(torch.from_numpy(predictions), torch.tensor(ids), torch.from_numpy(table)).numpy()
    want = [_slow(p, i, table) for p, i in zip(predictions, ids, strict=True)]
    assert got == pytest.approx(want, rel=1e-9)
    assert got[2] > 5 * max(got[0], got[1], got[3])


def test_contrast_loss_known_case_and_scale_invariance():
    """Rows ±e_k around a zero mean: a prediction along its own row has cosine 1 with it, −1 with its opposite and
    0 with the 2(h − 1) others; the loss ignores the prediction's length (squared error keeps that)."""
    h = 5
    table = torch.cat([torch.eye(h), -torch.eye(h)]).double()
    want = -math.log(math.exp(20) / (math.exp(20) + math.exp(-20) + 2 * (h - 1)))
    for length in (0.1, 1.0, 7.0):
        got = contrast_loss(length * table[[2]], torch.tensor([2]), table)
        assert float(got) == pytest.approx(want, rel=1e-9)
    assert 1 / CONTRAST_TEMPERATURE == 20


def test_own_row_in_top_matches_a_slow_count():
    """Ranks by centred cosine with loops; a tie with another row counts against the prediction."""
    rng = np.random.default_rng(1)
    table = rng.normal(size=(30, 4)) + 2.0
    table[7] = table[6]  # a duplicate row: a prediction of 6 ties with 7
    predictions = np.concatenate([table[[6]], table[[1, 2, 3]] + rng.normal(scale=0.8, size=(3, 4))])
    ids = [6, 1, 2, 3]
    mean = table.mean(axis=0)

    def cosine(a, b):
        return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))

    for k in (1, 2, 3, 10):
        want = []
        for p, own in zip(predictions, ids, strict=True):
            scores = [cosine(p - mean, row - mean) for row in table]
            want.append(1.0 if sum(s >= scores[own] - 1e-12 for s in scores) <= k else 0.0)
        got = own_row_in_top(torch.from_numpy(predictions), torch.tensor(ids), torch.from_numpy(table), k).tolist()
        assert got == want, k
    assert own_row_in_top(torch.from_numpy(table[[6]]), torch.tensor([6]), torch.from_numpy(table), 1).item() == 0.0
