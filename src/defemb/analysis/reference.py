"""Slow, independent reference implementations, written the way public scripts do it.

They exist to check the fast code (tests) and to measure it against (benchmarks); they overflow on
large norms exactly as the naive formulas do, which is the point of comparing.
"""

from __future__ import annotations

import numpy as np


def isotropy_naive(E: np.ndarray, max_directions: int | None = None) -> float:
    """I(E) with np.linalg.eig, a Python loop over eigenvectors (both signs) and a direct exp (float64).

    ``max_directions`` stops the loop early (for timing on big inputs); the result is then partial.
    """
    E = np.asarray(E, dtype=np.float64)
    _, vectors = np.linalg.eig(E.T @ E)
    vectors = np.real(vectors)
    z_values = []
    for i in range(vectors.shape[1] if max_directions is None else max_directions):
        projection = E @ vectors[:, i]
        z_values += [np.sum(np.exp(projection)), np.sum(np.exp(-projection))]
    return float(min(z_values) / max(z_values))


def del_direction_naive(E: np.ndarray, components: int) -> np.ndarray:
    """All-but-the-top with sklearn-free numpy: centre, PCA by SVD, remove the top projections."""
    E = np.asarray(E, dtype=np.float64)
    centred = E - E.mean(axis=0)
    if components == 0:
        return centred
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    out = centred.copy()
    for u in vt[:components]:
        out -= np.outer(centred @ u, u)
    return out
