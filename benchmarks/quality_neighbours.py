"""Nearest neighbours of replaced rare tokens, before and after `defemb replace` (docs/results.md).

    HF_HUB_OFFLINE=1 python benchmarks/quality_neighbours.py --original minilm --replaced runs/r1200v2-num

Tokens are drawn with ``--seed`` from the replaced checkpoint's ``replaced.tsv``: rare band, alphabetic,
at least ``--min-length`` characters; printed as drawn (good and bad alike), as a Markdown table.
"""

from __future__ import annotations

import argparse
import csv
import random
from pathlib import Path

import numpy as np

from defemb.models import get_table, load_model


def neighbours(E: np.ndarray, i: int, k: int) -> list[int]:
    """The k rows of highest cosine to row i (i itself excluded)."""
    X = E / np.linalg.norm(E, axis=1, keepdims=True)  # (V, h)
    scores = X @ X[i]
    scores[i] = -np.inf
    return np.argsort(-scores)[:k].tolist()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--original", required=True)
    parser.add_argument("--replaced", required=True, help="checkpoint written by `defemb replace`")
    parser.add_argument("-n", type=int, default=8, help="tokens shown")
    parser.add_argument("-k", type=int, default=6, help="neighbours per token")
    parser.add_argument("--min-length", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    before, after = load_model(args.original), load_model(args.replaced)
    A, B = get_table(before.model), get_table(after.model)
    tokens = before.tokenizer.convert_ids_to_tokens(list(range(len(A))))
    with open(Path(args.replaced) / "replaced.tsv", encoding="utf-8") as handle:
        rows = [r for r in csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)]
    pool = [int(r["id"]) for r in rows
            if r["band"] == "rare" and r["token"].isalpha() and len(r["token"]) >= args.min_length]
    random.Random(args.seed).shuffle(pool)
    print(f"{len(pool)} candidates; drawn with seed {args.seed}\n")
    print("| token | original neighbours | replaced neighbours |\n|---|---|---|")
    for i in pool[: args.n]:
        shown = [", ".join(tokens[j] for j in neighbours(E, i, args.k)) for E in (A, B)]
        print(f"| {tokens[i]} | {shown[0]} | {shown[1]} |")


if __name__ == "__main__":
    main()
