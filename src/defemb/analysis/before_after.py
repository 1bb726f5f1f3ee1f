"""One page that shows a repair: the table before and after, side by side, with the replaced rows marked.

Both projections use the *before* table's top-2 singular vectors, so a row that was not replaced sits at
the same place in both pictures and every replaced row visibly moves (a clump of rebuilt rows means the
reconstructions shrank toward their mean). Beside them: the band table and numeric Max Difference of
both analyses, and the nearest neighbours of replaced tokens before → after.
"""

from __future__ import annotations

import csv
import html
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from defemb.analysis.neighbours import nearest_neighbours
from defemb.analysis.projection import BAND_COLOURS, plot_ids, printable, top_axes
from defemb.analysis.report import comparison_rows, html_table

REPLACED_COLOUR = "#000000"
NEIGHBOUR_COLUMNS = ("token", "band", "‖old−new‖", "neighbours before", "neighbours after")


@dataclass
class BeforeAfter:
    """What the page needs; `compare_tables` fills it from two tables."""

    tokens: list[str] = field(repr=False)
    bands: np.ndarray = field(repr=False)  # band name per row id ("" for unranked rows)
    replaced: np.ndarray = field(repr=False)  # ids of replaced rows
    plot_ids: np.ndarray = field(repr=False)
    coords: dict[str, np.ndarray] = field(repr=False)  # "before"/"after" -> (len(plot_ids), 2), same axes
    neighbours: list[dict] = field(default_factory=list)


def compare_tables(
    before: np.ndarray, after: np.ndarray, tokens: list[str], bands: dict[str, np.ndarray], replaced: np.ndarray,
    chosen: list[int] | None = None, max_points: int = 20_000, shown: int = 12, k: int = 8, seed: int = 0,
) -> BeforeAfter:
    """Project both (V, h) tables on the before table's top-2 axes; neighbours of up to ``shown`` replaced
    tokens (``chosen`` replaced ones first, then a seeded sample) in each table, among the ranked tokens."""
    if before.shape != after.shape:
        raise ValueError(f"tables differ in shape: {before.shape} vs {after.shape}")
    rng = np.random.default_rng(seed)
    replaced = np.asarray(replaced, dtype=np.int64)
    band_of = np.full(before.shape[0], "", dtype=object)
    for name, ids in bands.items():
        band_of[ids] = name
    candidates = np.concatenate(list(bands.values()))
    # Every replaced row is drawn when they fit in a third of the points; else a sample of them.
    keep = replaced if len(replaced) <= max_points // 3 else rng.choice(replaced, max_points // 3, replace=False)
    ids = plot_ids(bands, max_points, keep, rng)
    B = before.astype(np.float64)
    axes = top_axes(B.T @ B)  # (h, 2)
    coords = {"before": B[ids] @ axes, "after": after[ids].astype(np.float64) @ axes}
    first = [i for i in (chosen or []) if i in set(replaced.tolist())]
    rest = np.setdiff1d(replaced, first)
    sample = rng.choice(rest, size=min(max(shown - len(first), 0), len(rest)), replace=False) if len(rest) else []
    queries = np.array(first + sorted(int(i) for i in sample), dtype=np.int64)
    neighbours = []
    if len(queries):
        old_ids, _ = nearest_neighbours(before, queries, candidates, k)
        new_ids, _ = nearest_neighbours(after, queries, candidates, k)
        moved = np.linalg.norm(after[queries] - before[queries], axis=1)
        neighbours = [
            {"token": tokens[q], "id": int(q), "band": str(band_of[q]), "moved": float(m),
             "before": [tokens[j] for j in a], "after": [tokens[j] for j in b]}
            for q, m, a, b in zip(queries, moved, old_ids, new_ids, strict=True)
        ]
    return BeforeAfter(tokens, band_of, replaced, ids, coords, neighbours)


def projection_figure(result: BeforeAfter, which: str, title: str) -> object:
    """Plotly scatter of one table: a trace per band for the rows kept, one trace for the replaced rows."""
    import plotly.graph_objects as go

    coords = result.coords[which]
    is_replaced = np.isin(result.plot_ids, result.replaced)
    point_bands = result.bands[result.plot_ids]
    fig = go.Figure()
    traces = [(f"{band} kept", (point_bands == band) & ~is_replaced, colour, 4) for band, colour in
              BAND_COLOURS.items()]
    traces.append(("replaced", is_replaced, REPLACED_COLOUR, 6))
    for name, mask, colour, size in traces:
        ids = result.plot_ids[mask]
        fig.add_trace(go.Scatter(
            x=coords[mask, 0], y=coords[mask, 1], mode="markers", name=f"{name} ({int(mask.sum())} shown)",
            marker={"size": size, "color": colour, "opacity": 0.6},
            text=[html.escape(printable(result.tokens[i]), quote=False) for i in ids], customdata=ids,
            hovertemplate="%{text}<br>id %{customdata}<extra>" + name + "</extra>",
        ))
    fig.update_layout(title=title, xaxis_title="singular vector 1 (before)", yaxis_title="singular vector 2 (before)",
                      height=560, hovermode="closest", template="plotly_white")
    return fig


def neighbour_rows(result: BeforeAfter) -> list[list[str]]:
    return [
        [printable(item["token"]), item["band"], f"{item['moved']:.3f}",
         ", ".join(printable(t) for t in item["before"]), ", ".join(printable(t) for t in item["after"])]
        for item in result.neighbours
    ]


def html_page(result: BeforeAfter, summaries: dict[str, dict], title: str, notes: list[str] = (),
              sections: list = ()) -> str:
    """The self-contained page (plotly.js inlined once; nothing is fetched when it is opened); ``sections``:
    (title, text, header, rows) tables shown after the repair's."""
    header, rows = comparison_rows(summaries)
    figures = [
        projection_figure(result, which, f"{which} ({len(result.replaced)} rows replaced)").to_html(
            full_html=False, include_plotlyjs=(which == "before"), div_id=f"projection-{which}")
        for which in ("before", "after")
    ]
    note_html = "".join(f"<p>{html.escape(note)}</p>" for note in notes)
    extra = "".join(f"<h2>{html.escape(name)}</h2>" + (f"<p>{html.escape(text)}</p>" if text else "")
                    + (html_table(header, rows) if rows else "") for name, text, header, rows in sections)
    title = html.escape(title)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:left;font-size:14px}}th{{background:#f3f3f3}}
.pair{{display:flex;gap:1em}}.pair>div{{flex:1;min-width:0}}</style>
</head><body>
<h1>{title}</h1>{note_html}
<h2>Bands and numeric Max Difference</h2>{html_table(header, rows)}
<h2>Projections</h2><p>Both tables on the top-2 singular vectors of the table before the repair: rows that
were kept stay in place, replaced rows (black) move. Hover a point to see its token.</p>
<div class="pair"><div>{figures[0]}</div><div>{figures[1]}</div></div>
<h2>Nearest neighbours of replaced tokens (cosine, ranked tokens)</h2>
{html_table(NEIGHBOUR_COLUMNS, neighbour_rows(result))}
{extra}
</body></html>
"""


def repair_page(before_model: str, after_model: str, replaced_tsv: str | Path, summaries: dict[str, dict],
                ranking: str | None = None, table: str = "input", chosen: list[str] = (), notes: list[str] = (),
                sections: list = ()) -> str:
    """The page for a checkpoint written by `replace` (``replaced_tsv`` lists its replaced ids)."""
    from defemb.analysis.analyze import vocabulary
    from defemb.frequency import rank_tokens
    from defemb.models import get_table, load_model

    loaded = load_model(before_model)
    before = get_table(loaded.model, table)
    after = get_table(load_model(after_model).model, table)
    with open(replaced_tsv, encoding="utf-8") as handle:
        replaced = np.array([int(row["id"]) for row in csv.DictReader(handle, delimiter="\t")], dtype=np.int64)
    tokens = vocabulary(loaded, before.shape[0])
    index = {t: i for i, t in enumerate(tokens) if t}
    ranked = rank_tokens(loaded.tokenizer, before.shape[0], ranking, loaded.tokenizer_kind)
    result = compare_tables(before, after, tokens, ranked.bands, replaced, [index[t] for t in chosen if t in index])
    return html_page(result, summaries, f"defemb repair: {loaded.name}", notes, sections)
