"""Numeric Max Difference and nearest neighbours on hand-made tables with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from defemb.analysis.neighbours import knn_overlap, nearest_neighbours
from defemb.analysis.numbers import max_difference, max_differences, numeric_tokens
from defemb.tokens import integer_value, surface


def test_surface_and_integer_value():
    assert surface("##02") == "02" and surface("Ġ102") == "102" and surface("▁7") == "7"
    assert integer_value("##02") == 2 and integer_value("Ġ1999") == 1999
    assert integer_value("1.5") is None and integer_value("-3") is None and integer_value("x1") is None
    assert integer_value("١٢") is None  # only ASCII digits count


def test_max_difference_on_a_line_of_numbers():
    # Values 1..6 laid out on a line in value order: the 3 nearest neighbours of the ends are 3 away.
    values = np.arange(1, 7, dtype=float)
    rows = np.stack([values, np.zeros(6)], axis=1)
    gaps = max_differences(rows, values, k=3)
    # 1 -> {2,3,4}: 3 ; 2 -> {1,3,4}: 2 ; 3 -> {2,4,1 or 5}: 2 ; 4 -> 2 ; 5 -> {4,6,3}: 2 ; 6 -> {5,4,3}: 3
    np.testing.assert_allclose(gaps, [3, 2, 2, 2, 2, 3])
    result = max_difference(rows, values)
    assert result == {"mean": pytest.approx(14 / 6), "median": 2.0, "n": 6}


def test_max_difference_scrambled_layout_is_worse():
    values = np.array([1.0, 1000.0, 2.0, 2000.0, 3.0, 3000.0])
    rows = np.stack([np.arange(6.0), np.zeros(6)], axis=1)  # 1 sits next to 1000, etc.
    ordered = np.stack([values, np.zeros(6)], axis=1)
    assert max_difference(rows, values)["mean"] > max_difference(ordered, values)["mean"]
    # the token at position 0 (value 1) has neighbours at positions 1,2,3 -> max gap |2000-1|
    assert max_differences(rows, values)[0] == 1999.0


def test_numeric_tokens_picks_integers():
    tokens = ["the", "12", "##3", "Ġ45", "4.5", "x"]
    ids, values = numeric_tokens(tokens, np.arange(6))
    assert ids.tolist() == [1, 2, 3] and values.tolist() == [12.0, 3.0, 45.0]


def _brute_neighbours(E, q, candidates, k):
    unit = E / np.linalg.norm(E, axis=1, keepdims=True)
    sims = {int(c): float(unit[q] @ unit[c]) for c in candidates if c != q}
    return sorted(sims, key=lambda c: -sims[c])[:k]


def test_nearest_neighbours_match_brute_force():
    rng = np.random.default_rng(0)
    E = rng.normal(size=(200, 8))
    candidates = np.arange(10, 200)
    queries = np.array([0, 15, 199])
    ids, cos = nearest_neighbours(E, queries, candidates, k=5, chunk=2)
    for row, q in zip(ids, queries, strict=True):
        assert row.tolist() == _brute_neighbours(E, q, candidates, 5)
        assert q not in row
    assert np.all(np.diff(cos, axis=1) <= 1e-12)


def test_knn_overlap_identity_and_rotation_and_noise():
    rng = np.random.default_rng(1)
    E = rng.normal(size=(300, 16))
    ids = np.arange(300)
    rotation, _ = np.linalg.qr(rng.normal(size=(16, 16)))
    assert knn_overlap(E, E, ids[:50], ids, 10) == 1.0
    assert knn_overlap(E, E @ rotation, ids[:50], ids, 10) == pytest.approx(1.0)  # cosine is rotation-invariant
    assert knn_overlap(E, rng.normal(size=(300, 16)), ids[:50], ids, 10) < 0.2
