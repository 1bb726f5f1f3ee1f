"""Report files of an analysis: JSON, Markdown tables, PNG projection and a self-contained HTML page."""

from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np

from defemb.analysis.projection import BAND_COLOURS, printable, write_png
from defemb.errors import DefembError
from defemb.outputs import write_json_atomic, write_text_atomic

BAND_ORDER = ("frequent", "medium", "rare", "all")
BAND_COLUMNS = ("band", "tokens", "isotropy I(E)", "IsoScore", "mean cosine", "mean norm")


def _fmt(value: object, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return "nan" if np.isnan(value) else f"{value:.{digits}f}"
    return str(value)


def band_rows(bands: dict) -> list[list[str]]:
    """The band table as text cells (shared by Markdown, HTML and the terminal)."""
    return [
        [
            name,
            str(bands[name]["n"]),
            _fmt(bands[name]["isotropy"]),
            _fmt(bands[name]["isoscore"]),
            _fmt(bands[name]["mean_cosine"]),
            _fmt(bands[name]["mean_norm"], 3),
        ]
        for name in BAND_ORDER
        if name in bands
    ]


def markdown_table(header: list[str] | tuple[str, ...], rows: list[list[str]]) -> str:
    escape = lambda cell: str(cell).replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(escape(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def neighbour_rows(neighbours: list[dict]) -> list[list[str]]:
    return [
        [
            printable(item["token"]),
            item["band"],
            item["source"],
            ", ".join(f"{printable(n['token'])} ({n['cosine']:.2f})" for n in item["neighbours"]),
        ]
        for item in neighbours
    ]


NUMERIC_COLUMNS = ("numeric tokens", "mean", "median")


def numeric_rows(numeric: dict) -> list[list[str]]:
    return [[str(numeric["n"]), _fmt(numeric["mean"], 2), _fmt(numeric["median"], 2)]]


def markdown_report(summary: dict) -> str:
    numeric = summary["numeric_max_difference"]
    tying = summary["tying"]
    parts = [
        f"# Embedding analysis: {summary['model']}",
        "",
        f"{summary['architecture']} ({summary['kind']}), {summary['tokenizer_kind']} tokenizer, "
        f"table `{summary['table']}` of shape {summary['shape'][0]} × {summary['shape'][1]}; "
        f"ranking `{summary['ranking']}`; output table tied to: {tying.get('output_tied_to') or 'none'}.",
        "",
        "## Bands",
        "",
        markdown_table(BAND_COLUMNS, band_rows(summary["bands"])),
        "",
        "## Numeric Max Difference (lower is better)",
        "",
        markdown_table(NUMERIC_COLUMNS, numeric_rows(numeric)),
        "",
        "## Nearest neighbours (cosine)",
        "",
        markdown_table(["token", "band", "chosen/sampled", "neighbours"], neighbour_rows(summary["neighbours"])),
        "",
    ]
    return "\n".join(parts)


def html_table(header, rows) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def projection_figure(result) -> object:
    """Plotly scatter of the plotted rows, one trace per band; hovering a point shows its token."""
    import plotly.graph_objects as go

    fig = go.Figure()
    point_bands = result.bands[result.plot_ids]
    for band, colour in BAND_COLOURS.items():
        mask = point_bands == band
        ids = result.plot_ids[mask]
        fig.add_trace(
            go.Scatter(
                x=result.coords[mask, 0],
                y=result.coords[mask, 1],
                mode="markers",
                name=f"{band} ({int(mask.sum())} shown)",
                marker={"size": 4, "color": colour, "opacity": 0.6},
                # Plotly reads hover text as pseudo-HTML (<b>, <s>, &amp; ...): escape it so tokens show verbatim.
                text=[html.escape(printable(result.tokens[i]), quote=False) for i in ids],
                customdata=ids,
                hovertemplate="%{text}<br>id %{customdata}<extra>" + band + "</extra>",
            )
        )
    fig.update_layout(
        title="Rows on the top-2 singular vectors",
        xaxis_title="singular vector 1",
        yaxis_title="singular vector 2",
        height=650,
        hovermode="closest",
        template="plotly_white",
    )
    return fig


def html_report(result) -> str:
    summary = result.summary
    numeric = summary["numeric_max_difference"]
    figure = projection_figure(result).to_html(full_html=False, include_plotlyjs=True, div_id="projection")
    title = html.escape(f"defemb analysis: {summary['model']}")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1100px}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:left;font-size:14px}}th{{background:#f3f3f3}}</style>
</head><body>
<h1>{title}</h1>
<p>{html.escape(summary['architecture'])} ({html.escape(summary['kind'])}),
{html.escape(summary['tokenizer_kind'])} tokenizer, table <code>{html.escape(summary['table'])}</code>
of shape {summary['shape'][0]} × {summary['shape'][1]}, ranking <code>{html.escape(summary['ranking'])}</code>.</p>
<h2>Bands</h2>{html_table(BAND_COLUMNS, band_rows(summary['bands']))}
<h2>Numeric Max Difference (lower is better)</h2>
{html_table(NUMERIC_COLUMNS, numeric_rows(numeric))}
<h2>Projection</h2><p>Hover a point to see its token.</p>
{figure}
<h2>Nearest neighbours (cosine)</h2>
{html_table(["token", "band", "chosen/sampled", "neighbours"], neighbour_rows(summary['neighbours']))}
</body></html>
"""


def write_report_files(result, out_dir: Path) -> None:
    summary = result.summary
    write_json_atomic(out_dir / "analysis.json", summary)
    write_json_atomic(out_dir / "config.json", summary["config"])
    write_text_atomic(out_dir / "analysis.md", markdown_report(summary))
    positions = {int(i): k for k, i in enumerate(result.plot_ids)}
    labels = {positions[i]: printable(result.tokens[i]) for i in result.highlighted if i in positions}
    write_png(
        out_dir / "projection.png",
        result.coords,
        result.bands[result.plot_ids],
        labels,
        f"{summary['model']} ({summary['table']} table)",
    )
    write_text_atomic(out_dir / "report.html", html_report(result))


def load_summary(path: str | Path) -> dict:
    """analysis.json from an analysis directory (or the file itself)."""
    path = Path(path)
    file = path / "analysis.json" if path.is_dir() else path
    if not file.is_file():
        raise DefembError(f"no analysis found at '{path}' (expected a directory holding analysis.json)")
    return json.loads(file.read_text(encoding="utf-8"))


COMPARE_METRICS = (("isotropy", "I(E)"), ("isoscore", "IsoScore"), ("mean_cosine", "mean cos"))


def comparison_rows(summaries: dict[str, dict]) -> tuple[list[str], list[list[str]]]:
    """Measures as rows, analyses as columns: I(E), IsoScore, mean cosine per band, numeric Max Difference."""
    header = ["measure", *summaries]
    rows = []
    for band in BAND_ORDER:
        for key, label in COMPARE_METRICS:
            rows.append([f"{label} ({band})", *(_fmt(s["bands"][band][key]) for s in summaries.values())])
    for key in ("mean", "median"):
        rows.append([f"numeric Max Difference ({key})",
                     *(_fmt(s["numeric_max_difference"][key], 2) for s in summaries.values())])
    return header, rows
