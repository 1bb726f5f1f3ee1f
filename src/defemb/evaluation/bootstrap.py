"""Paired bootstrap resampling (Koehn, 2004) and mean ± std over seeds: pure functions on numpy arrays.

The paper pools the per-example scores of all seeds into one test pool before resampling (§ Reproducibility):
the caller concatenates seed by seed, in the same seed order for both systems, and passes the two pools here.
That test treats the seeds as fixed: it asks whether B beats A on these examples *with these fine-tuning runs*.
`seed_bootstrap` also resamples the seeds (a two-level bootstrap), so a difference that one lucky seed carries
is not called significant; with few seeds it is the more cautious of the two.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

#: Most index cells drawn at once (resamples × examples); bounds memory for large pools (XSum × 3 seeds).
#: Drawing in row chunks gives exactly the same indices as one (resamples, n) draw: numpy's stream is continuous.
_CHUNK_CELLS = 1 << 22


def paired_bootstrap(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, resamples: int = 1000,
                     seed: int = 0) -> dict[str, float | int | list[float]]:
    """Paired bootstrap test of system B against system A on aligned per-example scores.

    Resample r draws n example indices with replacement — row r of
    ``np.random.default_rng(seed).integers(0, n, size=(resamples, n))`` — and takes the same indices from both
    systems: δ*_r = mean(b[idx_r]) − mean(a[idx_r]).

    Returns ``delta`` = mean(b) − mean(a) on the full pool, the two-sided percentile-bootstrap p-value

        p = min(1, 2 · min(#{δ*_r ≤ 0}, #{δ*_r ≥ 0}) / resamples),

    i.e. twice the share of resamples on the losing side of zero (the smallest α at which the (1 − α) percentile
    interval still excludes 0; ties at exactly 0 count on both sides, so identical systems get p = 1 and a B
    that wins every resample gets p = 0, which means p < 1/resamples), ``ci_low``/``ci_high`` = the 2.5th and
    97.5th percentiles of δ* (``np.percentile``, linear interpolation), ``resamples`` and ``n``.
    """
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    a_arr, b_arr = _checked(a, b)
    diff = b_arr - a_arr  # mean(b*) − mean(a*) == mean((b − a)*) on the same indices
    n = len(diff)
    rng = np.random.default_rng(seed)
    deltas = np.empty(resamples)
    rows = max(1, _CHUNK_CELLS // n)
    for start in range(0, resamples, rows):
        idx = rng.integers(0, n, size=(min(rows, resamples - start), n))  # (rows, n)
        deltas[start:start + len(idx)] = diff[idx].mean(axis=1)
    losing = min(int((deltas <= 0).sum()), int((deltas >= 0).sum()))
    low, high = np.percentile(deltas, [2.5, 97.5])
    return {
        "delta": float(b_arr.mean() - a_arr.mean()),
        "p": min(1.0, 2.0 * losing / resamples),
        "ci_low": float(low),
        "ci_high": float(high),
        "resamples": resamples,
        "n": n,
    }


def _checked(a, b) -> tuple[np.ndarray, np.ndarray]:
    """``a`` and ``b`` as float64 arrays, refused unless 1-D, of equal non-zero length and finite."""
    a_arr = np.asarray(a, dtype=np.float64)
    b_arr = np.asarray(b, dtype=np.float64)
    if a_arr.ndim != 1 or a_arr.shape != b_arr.shape:
        raise ValueError(f"a and b must be 1-D and of equal length, got shapes {a_arr.shape} and {b_arr.shape}")
    if len(a_arr) == 0:
        raise ValueError("a and b are empty: nothing to resample")
    if not (np.isfinite(a_arr).all() and np.isfinite(b_arr).all()):
        raise ValueError("per-example scores must be finite numbers")
    return a_arr, b_arr


def seed_bootstrap(a_by_seed: Sequence[Sequence[float]], b_by_seed: Sequence[Sequence[float]], resamples: int = 1000,
                   seed: int = 0) -> dict[str, float | int]:
    """Two-level paired bootstrap of system B against system A, over seeds and then examples.

    ``a_by_seed[s]`` and ``b_by_seed[s]`` are the per-example scores of fine-tuning seed s (aligned, same order).
    With ``rng = np.random.default_rng(seed)``, resample r draws ``rng.integers(0, k, size=k)``: k seeds with
    replacement; then, for each drawn seed s in that order, ``rng.integers(0, n_s, size=n_s)``: its examples.
    δ*_r is the mean of b − a over all drawn cells. ``delta`` (the pooled mean of b − a), ``p`` (two-sided, as in
    `paired_bootstrap`), ``ci_low``/``ci_high`` (2.5th/97.5th percentiles of δ*), ``resamples`` and ``seeds`` (k).
    Needs k ≥ 2: one seed has no seed-to-seed spread to resample.
    """
    if len(a_by_seed) != len(b_by_seed):
        raise ValueError(f"a has {len(a_by_seed)} seeds but b has {len(b_by_seed)}")
    k = len(a_by_seed)
    if k < 2:
        raise ValueError(f"resampling seeds needs at least 2 seeds, got {k}")
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    diffs = [b - a for a, b in (_checked(a, b) for a, b in zip(a_by_seed, b_by_seed, strict=True))]
    rng = np.random.default_rng(seed)
    deltas = np.empty(resamples)
    for r in range(resamples):
        total, cells = 0.0, 0
        for s in rng.integers(0, k, size=k):
            diff = diffs[int(s)]
            total += float(diff[rng.integers(0, len(diff), size=len(diff))].sum())
            cells += len(diff)
        deltas[r] = total / cells
    losing = min(int((deltas <= 0).sum()), int((deltas >= 0).sum()))
    low, high = np.percentile(deltas, [2.5, 97.5])
    pooled = np.concatenate(diffs)
    return {"delta": float(pooled.mean()), "p": min(1.0, 2.0 * losing / resamples), "ci_low": float(low),
            "ci_high": float(high), "resamples": resamples, "seeds": k}


def mean_std(values: Sequence[float] | np.ndarray) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1) of per-seed values.

    One value (a deterministic evaluator, or a single seed) has no spread to estimate: std is NaN, not 0,
    so a table can show the mean alone rather than a misleading "± 0".
    """
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1 or len(arr) == 0:
        raise ValueError(f"mean_std needs a non-empty 1-D sequence, got shape {arr.shape}")
    std = float(arr.std(ddof=1)) if len(arr) > 1 else math.nan
    return float(arr.mean()), std
