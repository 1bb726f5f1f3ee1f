"""Numeric structure of a table: the paper's Max Difference (§6.3).

For every numeric token (its surface is an integer), take its 3 nearest numeric neighbours by
Euclidean distance and the largest |value gap| among them; lower means number rows sit near
numbers of similar value.
"""

from __future__ import annotations

import numpy as np

from defemb.tokens import integer_value


def numeric_tokens(tokens: list[str], candidate_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ids among ``candidate_ids`` whose token is an integer, and those integers (float64)."""
    ids, values = [], []
    for i in candidate_ids:
        value = integer_value(tokens[i])
        if value is not None:
            ids.append(int(i))
            values.append(float(value))
    return np.array(ids, dtype=np.int64), np.array(values, dtype=np.float64)


def max_differences(rows: np.ndarray, values: np.ndarray, k: int = 3, chunk: int = 1024) -> np.ndarray:
    """Per numeric row: the largest |value gap| to its k nearest numeric rows (Euclidean). # (m,)"""
    X = np.asarray(rows, dtype=np.float64)
    m = len(X)
    k = min(k, m - 1)
    if k < 1:
        return np.zeros(0)
    sq = (X**2).sum(axis=1)
    gaps = np.empty(m)
    for start in range(0, m, chunk):
        block = slice(start, min(start + chunk, m))
        dist = sq[block, None] + sq[None, :] - 2.0 * X[block] @ X.T  # squared distances (b, m)
        dist[np.arange(block.stop - start), np.arange(start, block.stop)] = np.inf
        near = np.argpartition(dist, k - 1, axis=1)[:, :k]
        gaps[block] = np.abs(values[near] - values[block, None]).max(axis=1)
    return gaps


def max_difference(rows: np.ndarray, values: np.ndarray, k: int = 3) -> dict[str, float]:
    """Mean and median Max Difference with the number of numeric tokens measured."""
    gaps = max_differences(rows, values, k)
    if len(gaps) == 0:
        return {"mean": float("nan"), "median": float("nan"), "n": int(len(values))}
    return {"mean": float(gaps.mean()), "median": float(np.median(gaps)), "n": int(len(values))}
