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

from defemb.cli import main as defemb
from defemb.evaluation.records import read_records
from defemb.extend import INITIALISATIONS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="finished `defemb train` run, or a `defemb extend` checkpoint")
    parser.add_argument("--out", required=True, help="results folder of `evaluate wordsim --add-tokens`")
    parser.add_argument("--min-pairs", default="20")
    args = parser.parse_args()
    if defemb(["evaluate", "wordsim", "--add-tokens", args.run, "--min-pairs", args.min_pairs, "--out", args.out,
               "--force"]):
        raise SystemExit(2)
    metrics = {r.label: r.metrics for r in read_records(args.out)}
    names = sorted({k.rsplit("/", 1)[0] for k in metrics["definitionemb"] if k.endswith("/coverage")},
                   key=lambda n: (not n.endswith("/new"), n))
    print(f"\n{metrics['definitionemb']['new/words']:.0f} new words\n")
    print("| set (pairs) | " + " | ".join(INITIALISATIONS) + " |")
    print("|---|" + "---|" * len(INITIALISATIONS))
    for name in names:
        pairs = int(metrics["definitionemb"][f"{name}/pairs"])
        cells = [f"{metrics[i].get(f'{name}/spearman', float('nan')):.3f}" for i in INITIALISATIONS]
        print(f"| {name} ({pairs}) | " + " | ".join(cells) + " |")
    for key, what in (("new/mean/spearman", "mean, pairs with a new word"), ("mean/spearman", "mean, all pairs")):
        if key in metrics["definitionemb"]:
            print(f"| {what} | " + " | ".join(f"{metrics[i][key]:.3f}" for i in INITIALISATIONS) + " |")


if __name__ == "__main__":
    main()
