"""New tokens initialised four ways, scored by word similarity: `defemb evaluate wordsim --add-tokens` as a table.

    HF_HUB_OFFLINE=1 python benchmarks/quality_add_tokens.py --run runs/train --out runs/wordsim-added

The new words are the word-similarity words (shared word-sim sets) that the run's model splits into several
pieces and GCIDE defines (or the words of a `defemb extend` checkpoint passed as --run). Each gets the row
`resize_token_embeddings` gives (mean_resizing), the mean of its pieces, the mean of its definition's
token rows (LlamaFactory's desc_init) and its DefinitionEMB row. Prints Spearman ρ per set on the pairs
holding a new word (sets with at least --min-pairs of them), then on all pairs, as Markdown.
"""

from __future__ import annotations

import argparse

from defemb.analysis.report import markdown_table
from defemb.cli import main as defemb
from defemb.evaluation.records import read_records
from defemb.extension_report import wordsim_rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="finished `defemb train` run, or a `defemb extend` checkpoint")
    parser.add_argument("--out", required=True, help="results folder of `evaluate wordsim --add-tokens`")
    parser.add_argument("--min-pairs", default="20")
    args = parser.parse_args()
    if defemb(["evaluate", "wordsim", "--add-tokens", args.run, "--min-pairs", args.min_pairs, "--out", args.out,
               "--force"]):
        raise SystemExit(2)
    records = read_records(args.out)
    header, rows = wordsim_rows(records)
    print(f"\n{records[0].metrics['new/words']:.0f} new words\n")
    print(markdown_table(header, rows))

if __name__ == "__main__":
    main()
