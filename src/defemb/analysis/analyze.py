"""`defemb analyze`: how a model's token-embedding table has degenerated, per frequency band."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import defemb
from defemb.analysis.geometry import band_statistics
from defemb.analysis.neighbours import nearest_neighbours
from defemb.analysis.numbers import max_difference, numeric_tokens
from defemb.analysis.projection import plot_ids, top_axes
from defemb.config import AnalyzeConfig
from defemb.errors import DefembError
from defemb.frequency import Ranking, rank_tokens
from defemb.models import LoadedModel, get_table, load_model, tying
from defemb.seeding import seed_everything


@dataclass
class Analysis:
    """The JSON-able summary plus what the pictures need."""

    summary: dict
    tokens: list[str] = field(repr=False)
    plot_ids: np.ndarray = field(repr=False)
    coords: np.ndarray = field(repr=False)  # (len(plot_ids), 2)
    bands: np.ndarray = field(repr=False)  # band name per token id
    highlighted: list[int] = field(repr=False)


def vocabulary(loaded: LoadedModel, n_rows: int) -> list[str]:
    """Token string per row id ('' for rows the tokenizer has no token for)."""
    tokens = [""] * n_rows
    for token, i in loaded.tokenizer.get_vocab().items():
        if i < n_rows:
            tokens[i] = token
    return tokens


def resolve_tokens(requested: list[str], tokens: list[str], tokenizer) -> list[int]:
    """Map user-chosen token strings to ids; a string that is not one token is an error."""
    index = {t: i for i, t in enumerate(tokens) if t}
    ids = []
    for text in requested:
        if text in index:
            ids.append(index[text])
            continue
        pieces = tokenizer.tokenize(text)
        if len(pieces) == 1 and pieces[0] in index:
            ids.append(index[pieces[0]])
            continue
        raise DefembError(f"--tokens: '{text}' is not a vocabulary token (it tokenizes as {pieces})")
    return ids


def neighbour_lists(
    E: np.ndarray, queries: list[tuple[int, str]], candidates: np.ndarray, tokens: list[str], bands, k: int
) -> list[dict]:
    if not queries:
        return []
    ids, cosines = nearest_neighbours(E, np.array([q for q, _ in queries]), candidates, k)
    return [
        {
            "token": tokens[q],
            "id": int(q),
            "band": str(bands[q]),
            "source": source,
            "neighbours": [
                {"token": tokens[j], "id": int(j), "band": str(bands[j]), "cosine": round(float(c), 4)}
                for j, c in zip(row_ids, row_cos, strict=True)
            ],
        }
        for (q, source), row_ids, row_cos in zip(queries, ids, cosines, strict=True)
    ]


def analyze_table(
    E: np.ndarray, tokens: list[str], ranking: Ranking, config: AnalyzeConfig, chosen: list[int]
) -> Analysis:
    """All measurements of one table; pure given its inputs (seeded sampling)."""
    rng = seed_everything(config.seed)
    bands = ranking.band_of(E.shape[0])
    stats, G = band_statistics(E, ranking.bands, return_gram=True)
    rare = ranking.bands["rare"]
    sampled = sorted(rng.choice(rare, size=min(config.sample, len(rare)), replace=False).tolist()) if len(rare) else []
    queries = [(i, "chosen") for i in chosen] + [(i, "sampled") for i in sampled if i not in chosen]
    num_ids, num_values = numeric_tokens(tokens, ranking.order)
    numeric = max_difference(E[num_ids], num_values) if len(num_ids) else {"mean": None, "median": None, "n": 0}
    highlighted = [q for q, _ in queries]
    ids = plot_ids(ranking.bands, config.plot_points, np.array(highlighted, dtype=np.int64), rng)
    coords = E[ids].astype(np.float64) @ top_axes(G)
    summary = {
        "bands": stats,
        "band_sizes": {name: int(len(ids_)) for name, ids_ in ranking.bands.items()},
        "numeric_max_difference": numeric,
        "neighbours": neighbour_lists(E, queries, ranking.order, tokens, bands, config.k),
    }
    return Analysis(summary, tokens, ids, coords, bands, highlighted)


def analyze(config: AnalyzeConfig) -> Analysis:
    """Load the model named in ``config`` and analyse the chosen table."""
    started = time.time()
    loaded = load_model(config.model, trust_remote_code=config.trust_remote_code)
    E = get_table(loaded.model, config.table)
    tokens = vocabulary(loaded, E.shape[0])
    chosen = resolve_tokens(config.tokens, tokens, loaded.tokenizer)
    ranking = rank_tokens(loaded.tokenizer, E.shape[0], config.ranking, loaded.tokenizer_kind)
    result = analyze_table(E, tokens, ranking, config, chosen)
    result.summary = {
        "model": loaded.name,
        "path": loaded.path,
        "architecture": type(loaded.model).__name__,
        "kind": loaded.kind,
        "tokenizer_kind": loaded.tokenizer_kind,
        "table": config.table,
        "shape": list(E.shape),
        "tokenizer_size": len(loaded.tokenizer),
        "rows_without_token": max(0, E.shape[0] - len(loaded.tokenizer)),
        "ranking": ranking.method,
        "tying": tying(loaded.model),
        **result.summary,
        "config": config.to_dict(),
        "defemb_version": defemb.__version__,
        "seconds": round(time.time() - started, 2),
    }
    return result


def write_analysis(result: Analysis, out: str | Path, force: bool = False) -> Path:
    """analysis.json, analysis.md, projection.png, report.html and config.json, atomically."""
    from defemb.analysis.report import write_report_files
    from defemb.outputs import atomic_dir

    with atomic_dir(out, force) as tmp:
        write_report_files(result, tmp)
    return Path(out)
