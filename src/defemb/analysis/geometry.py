"""Global geometry of an embedding table: isotropy I(E), IsoScore, mean pairwise cosine, row norms.

All statistics stream over row chunks, so a 256k x 2304 table needs only a few chunk-sized buffers
beside the table itself. Matrix products run in the table's dtype (float32 products are within 1e-5
of float64 on the score, see docs/benchmarks.md); everything where accuracy matters — the Gram
accumulator, the eigen-decomposition and the log-sum-exp — runs in float64.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np

CHUNK_ROWS = 16_384


def _chunks(E: np.ndarray, rows: np.ndarray | None, chunk_rows: int) -> Iterator[np.ndarray]:
    """Row blocks of E (optionally only ``rows``), never materialising the whole selection."""
    n = E.shape[0] if rows is None else len(rows)
    for start in range(0, n, chunk_rows):
        yield E[start : start + chunk_rows] if rows is None else E[rows[start : start + chunk_rows]]


def gram(E: np.ndarray, rows: np.ndarray | None = None, chunk_rows: int = CHUNK_ROWS) -> np.ndarray:
    """EᵀE accumulated in float64 over row chunks. # (h, h)"""
    G = np.zeros((E.shape[1], E.shape[1]), dtype=np.float64)
    for block in _chunks(E, rows, chunk_rows):
        G += block.T @ block
    return G


class _LogSumExp:
    """Column-wise log Σ exp over row blocks that arrive one at a time (float64 accumulators)."""

    def __init__(self, k: int) -> None:
        self.max = np.full(k, -np.inf)
        self.sum = np.zeros(k)

    def add(self, P: np.ndarray, out: np.ndarray, negate: bool = False) -> None:
        """Fold in the block ``P`` (``−P`` with ``negate``), rows × k in any float dtype.

        ``out`` (float64, P's shape) is scratch: the shift by the running maximum casts to float64 in
        the same pass, so no float64 copy of P is made (the values are those of the copy, bit for bit).
        """
        block_max = -P.min(axis=0) if negate else P.max(axis=0)  # exact in P's dtype
        new_max = np.maximum(self.max, block_max)
        if negate:
            np.subtract(-new_max, P, out=out)  # −p − m, the same rounding as (−p) − m
        else:
            np.subtract(P, new_max, out=out)
        np.exp(out, out=out)
        self.sum = self.sum * np.exp(self.max - new_max) + out.sum(axis=0)
        self.max = new_max

    def result(self) -> np.ndarray:
        return self.max + np.log(self.sum)


def log_partition(
    E: np.ndarray, C: np.ndarray, rows: np.ndarray | None = None, chunk_rows: int = CHUNK_ROWS
) -> np.ndarray:
    """log Z(±c) = log Σ_w exp(±cᵀw) for every column c of C, by streaming log-sum-exp. # (2k,)

    The first k entries are for +c, the last k for −c: an eigenvector's sign is arbitrary, so both
    directions are scored (one product, two exponentials).
    """
    C_work = C.astype(E.dtype, copy=False)
    k = C.shape[1]
    plus, minus = _LogSumExp(k), _LogSumExp(k)
    products = scratch = None  # two chunk-sized buffers, allocated once and reused by every chunk
    for block in _chunks(E, rows, chunk_rows):
        if products is None:
            products = np.empty((len(block), k), dtype=np.result_type(block.dtype, C_work.dtype))
            scratch = np.empty((len(block), k), dtype=np.float64)
        P, S = products[: len(block)], scratch[: len(block)]
        np.matmul(block, C_work, out=P)  # (rows, k), in E's dtype
        plus.add(P, S)
        minus.add(P, S, negate=True)
    return np.concatenate([plus.result(), minus.result()])


def isotropy_from_gram(
    E: np.ndarray, G: np.ndarray, rows: np.ndarray | None = None, chunk_rows: int = CHUNK_ROWS
) -> float:
    """I(E) given the Gram matrix of the same rows (lets callers share one Gram pass)."""
    _, C = np.linalg.eigh(G)  # eigenvectors of EᵀE, float64
    log_z = log_partition(E, C, rows, chunk_rows)
    return float(np.exp(log_z.min() - log_z.max()))


def isotropy(E: np.ndarray, rows: np.ndarray | None = None, chunk_rows: int = CHUNK_ROWS) -> float:
    """Isotropy I(E) = min_c Z(c) / max_c Z(c) over c = ±eigenvectors of EᵀE (Mu et al. 2018).

    No centring and no normalisation, as in the definition. Both signs of every eigenvector are
    scored, so the result does not depend on the sign LAPACK happens to return (public scripts that
    use one sign can differ from this by the luck of that draw). Computed in the log domain, so rows
    with large norms give a finite score (possibly 0.0 when the ratio underflows) instead of inf/inf.
    """
    return isotropy_from_gram(E, gram(E, rows, chunk_rows), rows, chunk_rows)


def isoscore_from_covariance(cov: np.ndarray) -> float:
    """IsoScore (Rudman et al. 2022) of a covariance matrix: 1 isotropic, 0 one-dimensional."""
    d = cov.shape[0]
    variances = np.clip(np.linalg.eigvalsh(cov), 0.0, None)  # variance along principal axes
    norm = np.linalg.norm(variances)
    if norm == 0.0:
        return 0.0
    normalised = variances * np.sqrt(d) / norm
    defect = np.linalg.norm(normalised - 1.0) / np.sqrt(2.0 * (d - np.sqrt(d)))
    return float(((d - defect**2 * (d - np.sqrt(d))) ** 2 - d) / (d * (d - 1)))


def isoscore(E: np.ndarray) -> float:
    """IsoScore of the point cloud E (rows are points). # E: (n, h)"""
    return isoscore_from_covariance(np.cov(np.asarray(E, dtype=np.float64), rowvar=False))


def mean_pairwise_cosine(E: np.ndarray) -> float:
    """Mean cosine over all pairs i != j of non-zero rows, via ‖Σ ŵ‖² = n + Σ_{i≠j} cos."""
    stats = _first_moments(E, None, CHUNK_ROWS)
    return _mean_cosine(stats["unit_sum"], stats["nonzero"])


def _mean_cosine(unit_sum: np.ndarray, n: int) -> float:
    if n < 2:
        return float("nan")
    return float((unit_sum @ unit_sum - n) / (n * (n - 1)))


def _first_moments(E: np.ndarray, rows: np.ndarray | None, chunk_rows: int) -> dict:
    """One pass: Gram, row sum, sum of unit rows, norms (everything but the partition function)."""
    h = E.shape[1]
    out = {
        "gram": np.zeros((h, h)),
        "sum": np.zeros(h),
        "unit_sum": np.zeros(h),
        "norm_sum": 0.0,
        "nonzero": 0,
        "n": 0,
    }
    for block in _chunks(E, rows, chunk_rows):
        out["gram"] += block.T @ block
        block64 = block.astype(np.float64, copy=False)
        norms = np.linalg.norm(block64, axis=1)
        nonzero = norms > 0
        out["sum"] += block64.sum(axis=0)
        out["unit_sum"] += (block64[nonzero] / norms[nonzero, None]).sum(axis=0)
        out["norm_sum"] += float(norms.sum())
        out["nonzero"] += int(nonzero.sum())
        out["n"] += len(block)
    return out


def _covariance(moments: dict) -> np.ndarray:
    n = moments["n"]
    mean = moments["sum"] / n
    return (moments["gram"] - n * np.outer(mean, mean)) / max(n - 1, 1)


def band_statistics(
    E: np.ndarray, bands: Mapping[str, np.ndarray], chunk_rows: int = CHUNK_ROWS, return_gram: bool = False
) -> dict[str, dict[str, float]] | tuple[dict[str, dict[str, float]], np.ndarray]:
    """Isotropy, IsoScore, mean pairwise cosine and mean norm for each band and for their union "all".

    Two streaming passes over the rows: the first gathers per-band moments (the union's Gram is the
    sum of the bands' Grams, so it costs nothing extra), the second the partition functions.
    ``return_gram`` also returns the union's Gram matrix, from which callers get singular vectors.
    """
    moments = {name: _first_moments(E, np.asarray(ids), chunk_rows) for name, ids in bands.items()}
    total = {key: sum(m[key] for m in moments.values()) for key in next(iter(moments.values()))}
    moments["all"] = total
    all_rows = np.concatenate([np.asarray(ids) for ids in bands.values()])
    results: dict[str, dict[str, float]] = {}
    for name, m in moments.items():
        rows = all_rows if name == "all" else np.asarray(bands[name])
        n = m["n"]
        results[name] = {
            "n": n,
            "isotropy": isotropy_from_gram(E, m["gram"], rows, chunk_rows) if n else float("nan"),
            "isoscore": isoscore_from_covariance(_covariance(m)) if n > 1 else float("nan"),
            "mean_cosine": _mean_cosine(m["unit_sum"], m["nonzero"]),
            "mean_norm": m["norm_sum"] / n if n else float("nan"),
        }
    return (results, total["gram"]) if return_gram else results
