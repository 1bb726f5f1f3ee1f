"""The maths of calibrated rows (defemb.calibrate): refit, spread, per-row λ and degeneracy, against slow versions."""

from __future__ import annotations

import numpy as np
import pytest

from defemb.calibrate import (
    DEGENERATE_K,
    calibrate,
    calibrate_bands,
    degeneracy,
    fit_spread,
    is_placeholder,
    refit_rows,
    reliability_blend,
    rms_spread,
    token_script,
)
from defemb.errors import DefembError


def slow_scale(old: np.ndarray, new: np.ndarray) -> np.ndarray:
    """One factor per set with Python loops: c = √(Σ‖o − ō‖² / Σ‖p − p̄‖²), rows p̄ + c·(p − p̄)."""
    n, h = old.shape
    mean_o = [sum(old[i][j] for i in range(n)) / n for j in range(h)]
    mean_p = [sum(new[i][j] for i in range(n)) / n for j in range(h)]
    ss_o = sum((old[i][j] - mean_o[j]) ** 2 for i in range(n) for j in range(h))
    ss_p = sum((new[i][j] - mean_p[j]) ** 2 for i in range(n) for j in range(h))
    c = (ss_o / ss_p) ** 0.5
    return np.array([[mean_p[j] + c * (new[i][j] - mean_p[j]) for j in range(h)] for i in range(n)])


def slow_directions(old: np.ndarray, new: np.ndarray) -> np.ndarray:
    """Eigenvectors of the definition rows' covariance (eigh, not SVD); each coordinate rescaled in a loop."""
    p_mean, o_mean = new.mean(axis=0), old.mean(axis=0)
    values, vectors = np.linalg.eigh(np.cov(new, rowvar=False, bias=True))
    out = new.copy()
    for value, v in zip(values, vectors.T, strict=True):
        if value <= 1e-10 * values.max():
            continue
        target = np.sqrt(np.mean(((old - o_mean) @ v) ** 2))
        coordinate = (new - p_mean) @ v
        out += np.outer(coordinate * (target / np.sqrt(value) - 1.0), v)
    return out


def orthonormal_rows(n: int, h: int, seed: int) -> np.ndarray:
    """n centred rows whose covariance is the identity (exactly, up to rounding). # (n, h)"""
    rng = np.random.default_rng(seed)
    Z = rng.normal(size=(n, h))
    q, _ = np.linalg.qr(Z - Z.mean(axis=0))
    return q * np.sqrt(n)


@pytest.mark.parametrize("mode", ["scale", "directions"])
def test_rows_shrunk_toward_their_mean_come_back(mode):
    rng = np.random.default_rng(0)
    n, h = 200, 8
    rotation, _ = np.linalg.qr(rng.normal(size=(h, h)))
    stds = np.linspace(3.0, 0.5, h)
    old = 5.0 + orthonormal_rows(n, h, 1) * stds @ rotation.T  # principal directions: rotation's columns
    shrink = 0.3 if mode == "scale" else np.linspace(0.1, 0.9, h)  # per direction: unpredictable ones shrink most
    center = rng.normal(size=h)
    new = center + orthonormal_rows(n, h, 1) * (stds * shrink) @ rotation.T
    calibrated = fit_spread(old, new, mode)(new)
    np.testing.assert_allclose(calibrated, old - old.mean(axis=0) + center, atol=1e-9)
    assert rms_spread(calibrated) == pytest.approx(rms_spread(old))
    np.testing.assert_allclose(calibrated.mean(axis=0), center, atol=1e-9)  # the predictor's mean is kept


@pytest.mark.parametrize("mode", ["scale", "directions"])
def test_a_band_that_already_matches_is_left_unchanged(mode):
    rng = np.random.default_rng(1)
    old = rng.normal(size=(50, 6)) * np.arange(1, 7)
    new = old + rng.normal(size=6)  # same spread in every direction, shifted
    np.testing.assert_allclose(fit_spread(old, new, mode)(new), new, atol=1e-9)
    if mode == "scale":  # other rows of equal total spread: factor 1 too
        other = rng.normal(size=(50, 6))
        other *= rms_spread(old) / rms_spread(other)
        np.testing.assert_allclose(fit_spread(old, other, mode)(other), other, atol=1e-9)


@pytest.mark.parametrize(("mode", "slow"), [("scale", slow_scale), ("directions", slow_directions)])
@pytest.mark.parametrize("n", [40, 5])  # more rows than dimensions, and fewer (rank-deficient)
def test_per_band_calibration_matches_a_slow_version(mode, slow, n):
    rng = np.random.default_rng(n)
    h = 10
    bands = np.array(["frequent", "medium", "rare"] * n)
    old = rng.normal(size=(3 * n, h)) * rng.uniform(0.2, 3.0, size=h)
    new = 0.5 * old + 0.2 * rng.normal(size=(3 * n, h)) + 1.0
    out = calibrate_bands(old.astype(np.float32), new.astype(np.float32), bands, mode)
    assert out.dtype == np.float32
    for band in ("frequent", "medium", "rare"):
        rows = bands == band
        expected = slow(*(rows_.astype(np.float32).astype(np.float64) for rows_ in (old[rows], new[rows])))
        np.testing.assert_allclose(out[rows], expected, rtol=1e-4, atol=1e-4)
        if mode == "scale":
            assert rms_spread(out[rows]) == pytest.approx(rms_spread(old[rows]), rel=1e-5)


def test_degenerate_inputs_keep_the_rows():
    row = np.ones((1, 4), dtype=np.float32)
    np.testing.assert_array_equal(fit_spread(row * 2, row, "scale")(row), row)  # one row: no spread to measure
    same = np.ones((3, 4))
    np.testing.assert_array_equal(fit_spread(np.eye(3, 4), same, "directions")(same), same)  # no spread at all
    with pytest.raises(ValueError, match="unknown"):
        fit_spread(same, same, "whiten")


def test_reliability_blend_is_the_inverse_variance_weight():
    u = np.array([0.5, 1.0, 2.0, 4.0, np.nan, np.inf])
    np.testing.assert_allclose(reliability_blend(u, 1.0), [0.0, 0.0, 0.5, 0.75, 0.0, 1.0])
    # σ_o² = u − ref, σ_p² = ref: λ = σ_o² / (σ_o² + σ_p²)
    ref, sigma_o2 = 0.8, np.array([0.0, 0.2, 1.6, 7.2])
    np.testing.assert_allclose(reliability_blend(sigma_o2 + ref, ref), sigma_o2 / (sigma_o2 + ref))


def test_calibrate_takes_the_reference_from_the_frequent_band():
    rng = np.random.default_rng(3)
    bands = np.array(["frequent"] * 30 + ["rare"] * 30)
    old = rng.normal(size=(60, 5))
    new = old + rng.normal(size=(60, 5)) * np.where(bands == "rare", 2.0, 0.5)[:, None]
    rows, blend, notes = calibrate(old, new, bands, "none", None)
    np.testing.assert_array_equal(rows, new)
    u = np.empty(60)
    for band in ("frequent", "rare"):  # written out: ‖o − p‖² over the band's mean squared distance to its mean
        b = bands == band
        u[b] = ((old[b] - new[b]) ** 2).sum(axis=1) / ((old[b] - old[b].mean(axis=0)) ** 2).sum(axis=1).mean()
    reference = np.median(u[bands == "frequent"])
    assert notes["blend_reference"] == pytest.approx(reference)
    np.testing.assert_allclose(blend, np.clip(1 - reference / u, 0, 1))
    assert blend[bands == "rare"].mean() > 0.8 > 0.3 > blend[bands == "frequent"].mean()  # far rows are replaced
    _, fixed, _ = calibrate(old, new, bands, "scale", 0.25)
    np.testing.assert_array_equal(fixed, np.full(60, 0.25))
    with pytest.raises(DefembError, match="frequent"):
        calibrate(old[bands == "rare"], new[bands == "rare"], bands[bands == "rare"], "none", None)


def test_scripts_and_placeholders():
    assert [token_script(t) for t in ["acheron", "##ing", "Ġthe", "▁été", "##辶", "ᅴ", "молоко", "102", "##₍", "."]] == [
        "LATIN", "LATIN", "LATIN", "LATIN", "CJK", "HANGUL", "CYRILLIC", "digits", "symbols", "symbols"]
    assert all(is_placeholder(t) for t in ["[unused217]", "<unused3>", "<extra_id_0>"])
    assert not any(is_placeholder(t) for t in ["[UNK]", "unused", "[unused]", "<s>"])


def slow_degeneracy(E: np.ndarray, query: int, candidates: list[int], tokens: list[str], k: int) -> float:
    cosine = {j: float(E[query] @ E[j] / np.linalg.norm(E[query]) / np.linalg.norm(E[j]))
              for j in candidates if j != query}
    nearest = sorted(cosine, key=lambda j: -cosine[j])[:k]
    scripts = [(token_script(tokens[query]), token_script(tokens[j])) for j in nearest]
    junk = [tokens[j].startswith("[unused") or ("digits" not in pair and pair[0] != pair[1])
            for j, pair in zip(nearest, scripts, strict=True)]
    return sum(junk) / k


def test_degeneracy_counts_placeholder_and_foreign_neighbours():
    rng = np.random.default_rng(4)
    words = [f"word{chr(97 + i % 26)}{i}" for i in range(40)]
    junk = [f"[unused{i}]" for i in range(6)] + ["##辶", "##₍", "ᅴ", "молоко"]
    tokens = ["acheron", "stifled", *words, *junk, "1000", "thousand"]
    E = rng.normal(size=(len(tokens), 16)).astype(np.float32)
    junk_ids = np.arange(2 + len(words), len(tokens))
    E[junk_ids[:7]] = E[0] + 0.1 * rng.normal(size=(7, 16)).astype(np.float32)  # acheron among 7 junk rows
    E[2:12] = E[1] + 0.1 * rng.normal(size=(10, 16)).astype(np.float32)  # stifled among words
    E[-1] = E[-2] + 0.01  # thousand next to 1000: not foreign
    candidates = np.arange(len(tokens))
    shares = degeneracy(E, np.array([0, 1]), candidates, tokens)
    assert shares[0] >= 0.7 and shares[1] <= 0.2
    nearest_of_thousand = degeneracy(E, np.array([len(tokens) - 1]), np.array([len(tokens) - 2, 2]), tokens, k=1)
    assert nearest_of_thousand[0] == 0.0
    queries = np.arange(len(tokens))
    expected = [slow_degeneracy(E, int(q), candidates.tolist(), tokens, DEGENERATE_K) for q in queries]
    np.testing.assert_allclose(degeneracy(E, queries, candidates, tokens), expected)
    assert degeneracy(E, np.zeros(0, dtype=np.int64), candidates, tokens).shape == (0,)


def slow_refit(old: np.ndarray, new: np.ndarray, fold: np.ndarray, penalty: float) -> np.ndarray:
    """Cross-fitted ridge by the normal equations (solve, not SVD), one fold at a time. # (n, h)"""
    out = np.zeros_like(old)
    for k in np.unique(fold):
        fit = fold != k
        mx, my = new[fit].mean(axis=0), old[fit].mean(axis=0)
        X = new[fit] - mx
        gram = X.T @ X
        ridge = penalty * np.trace(gram) / new.shape[1] * np.eye(new.shape[1])
        W = np.linalg.solve(gram + ridge, X.T @ (old[fit] - my))
        out[~fit] = (new[~fit] - mx) @ W + my
    return out


def test_refit_matches_the_normal_equations_and_picks_the_penalty_with_the_least_held_out_error():
    rng = np.random.default_rng(11)
    old = rng.normal(size=(60, 6))
    new = 0.3 * old @ rng.normal(size=(6, 6)) + rng.normal(size=(60, 6))  # a noisy linear view of the rows
    penalties = (1e-3, 0.1, 1.0, 10.0)
    rows, notes = refit_rows(old, new, folds=4, penalties=penalties, seed=3)
    fold = np.random.default_rng(3).permutation(60) % 4
    candidates = {c: slow_refit(old, new, fold, c) for c in penalties}
    errors = {c: ((r - old) ** 2).sum(axis=1).mean() for c, r in candidates.items()}
    best = min(errors, key=errors.get)
    assert notes["penalty"] == best and len(set(np.round(list(errors.values()), 6))) == len(penalties)
    np.testing.assert_allclose(rows, candidates[best], rtol=1e-9, atol=1e-9)
    assert notes["error_refit"] == pytest.approx(errors[best])
    assert notes["error_definition"] == pytest.approx(((new - old) ** 2).sum(axis=1).mean())


def test_refit_undoes_a_linear_distortion_and_never_reads_a_rows_own_target():
    rng = np.random.default_rng(12)
    old = rng.normal(size=(200, 8))
    new = (old - 2.0) @ (0.2 * np.eye(8) + 0.05 * rng.normal(size=(8, 8)))  # shrunk, shifted and rotated
    rows, notes = refit_rows(old, new, penalties=(1e-6,))
    assert notes["error_refit"] < 1e-6 * notes["error_definition"]
    np.testing.assert_allclose(rows, old, atol=1e-3)
    # Cross-fitted: a row's pretrained row enters only the maps of other folds, never its own.
    changed = old.copy()
    changed[17] += 50.0
    again, _ = refit_rows(changed, new, penalties=(1e-6,))
    np.testing.assert_allclose(again[17], rows[17], atol=1e-9)
    assert np.abs(again - rows).max() > 0.1  # the other folds' rows do see it


def test_refit_needs_rows_for_its_folds():
    with pytest.raises(DefembError, match="at least 10 rows"):
        refit_rows(np.zeros((9, 3)), np.zeros((9, 3)))
    rows, notes = refit_rows(np.ones((10, 3)), np.zeros((10, 3)))  # no spread at all: the mean row
    np.testing.assert_allclose(rows, np.ones((10, 3)))
