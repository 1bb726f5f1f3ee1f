"""Isotropy, IsoScore, mean cosine and band statistics against slow references and known cases."""

from __future__ import annotations

import numpy as np
import pytest

from defemb.analysis.geometry import (
    band_statistics,
    gram,
    isoscore,
    isotropy,
    log_partition,
    mean_pairwise_cosine,
)
from defemb.analysis.reference import isotropy_naive


@pytest.mark.parametrize("shape", [(50, 4), (200, 16), (333, 7)])
def test_isotropy_matches_slow_reference(shape):
    rng = np.random.default_rng(1)
    E = rng.normal(size=shape) * 0.5 + rng.normal(size=shape[1])
    # small chunks so the streaming log-sum-exp really streams
    assert isotropy(E, chunk_rows=17) == pytest.approx(isotropy_naive(E), abs=1e-6)


def test_isotropic_gaussian_scores_near_one():
    E = np.random.default_rng(0).normal(size=(20_000, 16)) * 0.1
    assert isotropy(E) > 0.95


def test_narrow_cone_scores_near_zero():
    rng = np.random.default_rng(0)
    direction = rng.normal(size=32)
    direction /= np.linalg.norm(direction)
    E = 5.0 * direction + 0.01 * rng.normal(size=(5000, 32))
    assert isotropy(E) < 0.01


def test_large_norms_stay_finite():
    rng = np.random.default_rng(0)
    E = rng.normal(size=(1000, 8)) + 0.3
    E = E / np.linalg.norm(E, axis=1, keepdims=True)
    score_100 = isotropy(100.0 * E)
    assert np.isfinite(score_100) and 0.0 <= score_100 <= 1.0
    assert score_100 == pytest.approx(isotropy_naive(100.0 * E), abs=1e-6)  # exp(100) still fits float64
    with np.errstate(over="ignore", invalid="ignore"):
        assert not np.isfinite(isotropy_naive(1000.0 * E))  # the direct exp overflows: inf / inf
    score_1000 = isotropy(1000.0 * E)
    assert np.isfinite(score_1000) and 0.0 <= score_1000 <= 1.0


def test_log_partition_equals_direct_log_sum_exp():
    rng = np.random.default_rng(2)
    E = 100.0 * rng.normal(size=(500, 6))
    _, C = np.linalg.eigh(gram(E))
    P = np.concatenate([E @ C, -(E @ C)], axis=1)
    direct = np.log(np.exp(P - P.max(axis=0)).sum(axis=0)) + P.max(axis=0)
    np.testing.assert_allclose(log_partition(E, C, chunk_rows=64), direct, rtol=1e-12, atol=1e-9)


def test_float32_products_close_to_float64():
    rng = np.random.default_rng(3)
    E = (rng.normal(size=(4000, 64)) * 0.05 + 0.03).astype(np.float32)
    assert abs(isotropy(E) - isotropy(E.astype(np.float64))) < 1e-5


def test_rows_subset_equals_isotropy_of_the_subset():
    rng = np.random.default_rng(4)
    E = rng.normal(size=(300, 6))
    rows = np.array([5, 9, 100, 7, 250, 31, 42, 77, 1, 2, 3])
    assert isotropy(E, rows=rows, chunk_rows=4) == pytest.approx(isotropy(E[rows]), abs=1e-12)


def test_isoscore_matches_the_isoscore_package():
    iso_package = pytest.importorskip("IsoScore.IsoScore")
    rng = np.random.default_rng(5)
    for E in (rng.normal(size=(500, 10)), rng.normal(size=(500, 10)) * np.linspace(0.1, 3, 10)):
        expected = float(iso_package.IsoScore(E))
        assert isoscore(E) == pytest.approx(expected, abs=1e-6)


def test_isoscore_known_cases():
    rng = np.random.default_rng(6)
    assert isoscore(rng.normal(size=(50_000, 8))) > 0.99
    line = np.outer(rng.normal(size=2000), rng.normal(size=8))
    assert isoscore(line) < 1e-3


def test_mean_pairwise_cosine_matches_brute_force():
    rng = np.random.default_rng(7)
    E = rng.normal(size=(60, 5)) + 0.5
    E[3] = 0.0  # zero rows are left out of the pairs
    unit = E[np.linalg.norm(E, axis=1) > 0]
    unit = unit / np.linalg.norm(unit, axis=1, keepdims=True)
    cos = unit @ unit.T
    brute = (cos.sum() - np.trace(cos)) / (len(unit) * (len(unit) - 1))
    assert mean_pairwise_cosine(E) == pytest.approx(brute, abs=1e-12)


def test_band_statistics_agree_with_separate_calls():
    rng = np.random.default_rng(8)
    E = rng.normal(size=(400, 12)).astype(np.float64) + rng.normal(size=12)
    order = rng.permutation(400)
    bands = {"frequent": order[:120], "medium": order[120:320], "rare": order[320:]}
    stats = band_statistics(E, bands, chunk_rows=33)
    for name, ids in {**bands, "all": order}.items():
        assert stats[name]["n"] == len(ids)
        assert stats[name]["isotropy"] == pytest.approx(isotropy(E[ids]), abs=1e-10)
        assert stats[name]["isoscore"] == pytest.approx(isoscore(E[ids]), abs=1e-9)
        assert stats[name]["mean_cosine"] == pytest.approx(mean_pairwise_cosine(E[ids]), abs=1e-10)
        assert stats[name]["mean_norm"] == pytest.approx(np.linalg.norm(E[ids], axis=1).mean(), abs=1e-10)
