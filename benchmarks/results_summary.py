"""One compact Markdown table from a `defemb results` results.json: a row per model, a column per metric.

    python benchmarks/results_summary.py runs/results/tables/results.json

Cells are mean ± std over seeds (×100 for metrics in [0, 1]) with the paired bootstrap p-value against
the reference where the metric has per-example scores. Columns: ``GROUP:METRIC`` pairs (``--columns``).
"""

from __future__ import annotations

import argparse
import json

DEFAULT = [
    "classification/mrpc:dev/accuracy", "classification/mrpc:dev/f1", "classification/mrpc:test/accuracy",
    "classification/mrpc:test/f1", "probe/numeric:test/accuracy", "probe/numeric:test/accuracy_numeric",
    "probe/numeric:test/accuracy_other", "wordsim/wordsim:mean/spearman", "drift/mrpc:rare/knn_overlap",
    "drift/mrpc:rare/relative_displacement",
]


def cell(entry: dict | None, scale: bool) -> str:
    if entry is None or entry.get("mean") is None:
        return "—"
    k = 100.0 if scale else 1.0
    text = f"{entry['mean'] * k:.2f}"
    if entry.get("n", 1) > 1 and entry.get("std") is not None:
        text += f" ± {entry['std'] * k:.2f}"
    if entry.get("p") is not None:
        text += f" (p {entry['p']:.3f})" if entry["p"] >= 0.001 else " (p < 0.001)"
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results")
    parser.add_argument("--columns", nargs="+", default=DEFAULT, help="GROUP:METRIC, GROUP = evaluator/task")
    args = parser.parse_args()
    data = json.loads(open(args.results, encoding="utf-8").read())
    groups = {f"{g['evaluator']}/{g['task']}": g for g in data["groups"]}
    columns = [c for c in args.columns if c.split(":")[0] in groups]
    labels = list(dict.fromkeys(m["label"] for g in groups.values() for m in g["models"]))
    print("| model | " + " | ".join(c.replace(":", " ") for c in columns) + " |")
    print("|---|" + "---|" * len(columns))
    for label in labels:
        cells = []
        for column in columns:
            group, metric = column.split(":")
            model = next((m for m in groups[group]["models"] if m["label"] == label), None)
            entry = model["metrics"].get(metric) if model else None
            values = [m["metrics"][metric]["mean"] for m in groups[group]["models"]
                      if metric in m["metrics"] and m["metrics"][metric]["mean"] is not None]
            cells.append(cell(entry, all(0 <= v <= 1 for v in values)))
        print(f"| {label} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
