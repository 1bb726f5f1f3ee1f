"""New rows pushed away from the table's mean: does restoring their spread help a decoder read and write them?

    HF_HUB_OFFLINE=1 python benchmarks/quality_new_row_spread.py --extended runs/smol-definitionemb \
        --scales 1.5,2,match --out runs/spread-lm --max-docs 20

DefinitionEMB's predicted rows are shrunk toward the mean (squared-error regression). For each scale s this
writes a copy of the `defemb extend` checkpoint whose added rows are μ + s·(row − μ), μ the mean of the
table's original rows ("match": s = RMS distance to μ of the original rows ÷ that of the added rows), then
scores every copy with `defemb evaluate lm --words` (NLL of the word as output and of the tokens after it
as input) and prints the table as Markdown.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from defemb.analysis.report import markdown_table
from defemb.cli import main as defemb
from defemb.evaluation.records import read_records
from defemb.extend import ADDED_FILE, added_ids
from defemb.models import get_table, load_model, save_model, set_table

MEASURES = ("after/nll", "word/nll", "text/bpb")


def spread_from_mean(rows: np.ndarray, mu: np.ndarray) -> float:
    """RMS distance of the rows to ``mu``."""
    return float(np.sqrt(((rows.astype(np.float64) - mu) ** 2).sum(axis=1).mean()))


def write_scaled(extended: str, scales: list[str], out: Path) -> dict[str, str]:
    """label -> checkpoint with the added rows scaled about the original rows' mean."""
    loaded = load_model(extended)
    E, ids = get_table(loaded.model).astype(np.float64), added_ids(extended)
    original = np.setdiff1d(np.arange(E.shape[0]), ids)
    mu = E[original].mean(axis=0)
    match = spread_from_mean(E[original], mu) / spread_from_mean(E[ids], mu)
    checkpoints = {}
    for text in scales:
        s = match if text == "match" else float(text)
        label = f"s{s:.2f}"
        scaled = E.copy()
        scaled[ids] = mu + s * (E[ids] - mu)
        set_table(loaded.model, scaled.astype(np.float32))
        folder = out / "models" / label
        save_model(loaded, folder)
        (folder / ADDED_FILE).write_bytes((Path(extended) / ADDED_FILE).read_bytes())
        checkpoints[label] = str(folder)
    return checkpoints


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--extended", required=True, help="a `defemb extend` checkpoint of a causal LM")
    parser.add_argument("--scales", default="1.5,2,match", help="comma list of s values; 'match' restores the RMS")
    parser.add_argument("--out", required=True)
    parser.add_argument("--data", default="cnndm")
    parser.add_argument("--max-docs", default="20")
    args = parser.parse_args()
    out = Path(args.out)
    checkpoints = {"s1.00": args.extended, **write_scaled(args.extended, args.scales.split(","), out)}
    models = [f"{label}={path}" for label, path in checkpoints.items()]
    if defemb(["evaluate", "lm", "--models", *models, "--data", args.data, "--max-docs", args.max_docs, "--words",
               str(Path(args.extended) / ADDED_FILE), "--out", str(out / "lm")]):
        raise SystemExit(2)
    records = {r.label: r for r in read_records(out / "lm") if r.status == "ok"}
    rows = [[label, *[f"{records[label].metrics[m]:.3f}" for m in MEASURES]] for label in checkpoints
            if label in records]
    print(markdown_table(["added rows", *MEASURES], rows))


if __name__ == "__main__":
    main()
