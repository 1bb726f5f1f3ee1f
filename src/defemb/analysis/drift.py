"""Geometry drift between two checkpoints with one vocabulary (e.g. before/after fine-tuning)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from defemb.analysis.geometry import band_statistics
from defemb.analysis.neighbours import knn_overlap
from defemb.config import DriftConfig
from defemb.errors import DefembError
from defemb.extend import ADDED_FILE, added_ids
from defemb.frequency import Ranking, rank_tokens
from defemb.models import get_table, load_model
from defemb.seeding import seed_everything


def drift_tables(E_a: np.ndarray, E_b: np.ndarray, ranking: Ranking, k: int, queries: int, seed: int,
                 groups: Mapping[str, np.ndarray] | None = None) -> dict:
    """Per band: mean displacement ‖b − a‖ (absolute and relative to ‖a‖), isotropy before/after and
    the mean overlap of k-NN sets (1.0 = every sampled token keeps all its neighbours).

    ``groups`` are further id sets measured the same way after the bands, outside their partition
    (e.g. "added": the tokens `defemb extend` added, which the bands also hold)."""
    if E_a.shape != E_b.shape:
        raise DefembError(f"tables differ in shape: {E_a.shape} vs {E_b.shape}; drift needs one vocabulary")
    groups = {name: np.asarray(ids) for name, ids in (groups or {}).items() if len(ids)}
    rng = seed_everything(seed)
    stats_a, stats_b = ({**band_statistics(E, ranking.bands), **_group_statistics(E, groups)} for E in (E_a, E_b))
    result = {}
    for name in (*ranking.bands, "all", *groups):
        ids = ranking.order if name == "all" else groups[name] if name in groups else ranking.bands[name]
        a, b = E_a[ids].astype(np.float64), E_b[ids].astype(np.float64)
        moved = np.linalg.norm(b - a, axis=1)
        relative = moved / np.maximum(np.linalg.norm(a, axis=1), 1e-12)
        sample = rng.choice(ids, size=min(queries, len(ids)), replace=False) if len(ids) else ids
        result[name] = {
            "n": int(len(ids)),
            "displacement": float(moved.mean()) if len(ids) else float("nan"),
            "relative_displacement": float(relative.mean()) if len(ids) else float("nan"),
            "isotropy_a": stats_a[name]["isotropy"],
            "isotropy_b": stats_b[name]["isotropy"],
            "isotropy_change": stats_b[name]["isotropy"] - stats_a[name]["isotropy"],
            "knn_overlap": knn_overlap(E_a, E_b, sample, ranking.order, k) if len(sample) else float("nan"),
        }
    return result


def _group_statistics(E: np.ndarray, groups: Mapping[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """`band_statistics` of each group on its own (its "all" would be the groups' union: left out)."""
    return {name: band_statistics(E, {name: ids})[name] for name, ids in groups.items()}


def drift(config: DriftConfig) -> dict:
    a = load_model(config.model_a, trust_remote_code=config.trust_remote_code)
    b = load_model(config.model_b, trust_remote_code=config.trust_remote_code)
    E_a, E_b = get_table(a.model, config.table), get_table(b.model, config.table)
    ranking = rank_tokens(a.tokenizer, E_a.shape[0], config.ranking, a.tokenizer_kind)
    # A `defemb extend` checkpoint as the start: its new tokens are a group of their own ("added").
    groups = {"added": added_ids(config.model_a)} if Path(config.model_a, ADDED_FILE).is_file() else {}
    return {
        "model_a": a.name,
        "model_b": b.name,
        "table": config.table,
        "ranking": ranking.method,
        "k": config.k,
        "bands": drift_tables(E_a, E_b, ranking, config.k, config.queries, config.seed, groups),
        "config": config.to_dict(),
    }
