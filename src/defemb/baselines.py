"""Post-processing baselines (METHOD §5): DelDirection (All-but-the-top) and Del-zscore.

DelDirection: μ = mean row, Ẽ = E − μ, u₁..u_D = top-D principal directions of Ẽ, and each row loses
its projection on them. The default ``projection="centred"`` removes (u_iᵀẽ)u_i, so the result is
exactly orthogonal to u₁..u_D (what the authors' script and most implementations do);
``projection="raw"`` follows the letter of Mu et al.'s Algorithm 1 and removes (u_iᵀe)u_i with the
uncentred row e, which leaves a constant offset −(u_iᵀμ) along each u_i.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from defemb.analysis.geometry import gram
from defemb.config import BaselineConfig
from defemb.errors import DefembError
from defemb.models import get_table, load_model, save_model, set_table, table_width, tying
from defemb.outputs import atomic_dir, check_writable, write_json_atomic

STD_FLOOR = 1e-6


def default_components(hidden_size: int) -> int:
    """D = max(1, round(h / 100)), Mu et al.'s rule of thumb (the authors' script used 10)."""
    return max(1, round(hidden_size / 100))


def check_components(components: int, width: int) -> None:
    """Refuse D outside 0..h-1: removing h directions (or more) leaves a table of zeros."""
    if not 0 <= components < width:
        raise DefembError(
            f"--components {components} must be between 0 and {width - 1}, below the table width {width} "
            f"(removing every direction leaves a table of zeros); the default is {default_components(width)}"
        )


def principal_directions(E: np.ndarray, components: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean row (float64) and the top-``components`` principal directions as columns. # (h,), (h, D)"""
    n = E.shape[0]
    mean = E.mean(axis=0, dtype=np.float64)
    covariance = gram(E) - n * np.outer(mean, mean)  # centred Gram without materialising E − μ
    _, vectors = np.linalg.eigh(covariance)  # ascending eigenvalues
    return mean, vectors[:, ::-1][:, :components]


def del_direction(E: np.ndarray, components: int | None = None, projection: str = "centred") -> np.ndarray:
    """All-but-the-top; ``components`` 0 is centring only. Returns a new array of E's dtype."""
    D = default_components(E.shape[1]) if components is None else components
    if projection not in ("centred", "raw"):
        raise ValueError(f"projection must be 'centred' or 'raw', not {projection!r}")
    check_components(D, E.shape[1])
    mean, U = principal_directions(E, D)
    centred = E - mean.astype(E.dtype)
    if D == 0:
        return centred
    U = U.astype(E.dtype)
    coefficients = (centred if projection == "centred" else E) @ U  # (V, D)
    return centred - coefficients @ U.T


def zscore(E: np.ndarray, std_floor: float = STD_FLOOR) -> np.ndarray:
    """Standardise every dimension across the vocabulary (std floored so constant columns stay finite)."""
    mean = E.mean(axis=0, dtype=np.float64)
    std = np.maximum(E.std(axis=0, dtype=np.float64), std_floor)
    return ((E - mean) / std).astype(E.dtype)


def del_zscore(E: np.ndarray, components: int | None = None, projection: str = "centred") -> np.ndarray:
    """Del-zscore: DelDirection, then z-score per dimension (Sajjad et al. 2022)."""
    return zscore(del_direction(E, components, projection))


def apply_baseline(config: BaselineConfig, out: str | Path, force: bool = False) -> dict:
    """Write a full HF checkpoint whose chosen table is post-processed (tied tables follow it)."""
    check_writable(out, force)
    width = table_width(config.model, config.table, config.trust_remote_code)
    if config.components is not None and width is not None:
        check_components(config.components, width)  # before the weights load: a large model takes minutes
    loaded = load_model(config.model, trust_remote_code=config.trust_remote_code)
    E = get_table(loaded.model, config.table)
    D = default_components(E.shape[1]) if config.components is None else config.components
    if config.method == "deldirection":
        new = del_direction(E, D, config.projection)
    else:
        new = del_zscore(E, D, config.projection)
    set_table(loaded.model, new, config.table)
    summary = {
        "method": config.method,
        "components": D,
        "projection": config.projection,
        "table": config.table,
        "source_model": loaded.name,
        "tying": tying(loaded.model),
        "config": config.to_dict(),
    }
    with atomic_dir(out, force) as tmp:
        save_model(loaded, tmp)
        write_json_atomic(tmp / "defemb.json", summary)
    return summary
