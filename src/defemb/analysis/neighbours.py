"""Nearest neighbours by cosine similarity, chunked over queries."""

from __future__ import annotations

import numpy as np


def _unit(rows: np.ndarray) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.float32)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return rows / np.where(norms == 0, 1.0, norms)


def nearest_neighbours(
    E: np.ndarray, queries: np.ndarray, candidates: np.ndarray, k: int = 10, chunk: int = 1024
) -> tuple[np.ndarray, np.ndarray]:
    """For each query id, the k candidate ids of highest cosine (the query itself excluded).

    Returns (ids, cosines), each (len(queries), k), best first.
    """
    queries = np.asarray(queries, dtype=np.int64)
    candidates = np.asarray(candidates, dtype=np.int64)
    k = min(k, len(candidates) - 1)
    cand_unit = _unit(E[candidates])  # (m, h)
    out_ids = np.empty((len(queries), k), dtype=np.int64)
    out_cos = np.empty((len(queries), k), dtype=np.float64)
    for start in range(0, len(queries), chunk):
        q = queries[start : start + chunk]
        sims = _unit(E[q]) @ cand_unit.T  # (b, m)
        sims[candidates[None, :] == q[:, None]] = -np.inf
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        top_sims = np.take_along_axis(sims, top, axis=1)
        order = np.argsort(-top_sims, axis=1, kind="stable")
        out_ids[start : start + len(q)] = candidates[np.take_along_axis(top, order, axis=1)]
        out_cos[start : start + len(q)] = np.take_along_axis(top_sims, order, axis=1)
    return out_ids, out_cos


def knn_overlap(E_a: np.ndarray, E_b: np.ndarray, queries: np.ndarray, candidates: np.ndarray, k: int) -> float:
    """Mean |N_a(q) ∩ N_b(q)| / k over queries: how much two tables agree on neighbourhoods."""
    ids_a, _ = nearest_neighbours(E_a, queries, candidates, k)
    ids_b, _ = nearest_neighbours(E_b, queries, candidates, k)
    overlaps = [len(set(a) & set(b)) / ids_a.shape[1] for a, b in zip(ids_a, ids_b, strict=True)]
    return float(np.mean(overlaps)) if overlaps else float("nan")
