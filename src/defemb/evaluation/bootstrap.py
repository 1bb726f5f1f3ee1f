"""Paired bootstrap resampling (Koehn, 2004) and mean ± std over seeds: pure functions on numpy arrays.

The paper pools the per-example scores of all seeds into one test pool before resampling (§ Reproducibility):
the caller concatenates seed by seed, in the same seed order for both systems, and passes the two pools here.
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
    a_arr = np.asarray(a, dtype=np.float64)
    b_arr = np.asarray(b, dtype=np.float64)
    if a_arr.ndim != 1 or a_arr.shape != b_arr.shape:
        raise ValueError(f"a and b must be 1-D and of equal length, got shapes {a_arr.shape} and {b_arr.shape}")
    n = len(a_arr)
    if n == 0:
        raise ValueError("a and b are empty: nothing to resample")
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    if not (np.isfinite(a_arr).all() and np.isfinite(b_arr).all()):
        raise ValueError("per-example scores must be finite numbers")
    diff = b_arr - a_arr  # mean(b*) − mean(a*) == mean((b − a)*) on the same indices
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
