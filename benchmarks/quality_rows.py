"""How much of each token does a file of definition rows carry? Per band, against the band's own mean row.

    HF_HUB_OFFLINE=1 python benchmarks/quality_rows.py EMB [EMB ...] [--model minilm] [--corpus DIR] [--refit]

EMB: files written by `defemb embed`. For the tokens each file has a row for, per frequency band (the
ranking `replace` uses by default):
- error: mean ‖row − pretrained row‖², divided by the same for the band's mean pretrained row (below 1: the
  row says more about its token than its band does; 1: no more than the band's mean);
- top 10: share of tokens whose own pretrained row is among the 10 nearest rows of the whole table to their
  definition row, by cosine around the table's mean row (`defemb.method.train.own_row_in_top`): can the row
  be told from every other, which is what neighbours and word similarity read.
With --corpus (the corpus the predictor was trained on), the same for the tokens that only its validation
split holds ("held out": no training prompt ever had them as target), so memorised rows can be told apart.
With --refit, each file is also measured after `replace --refit linear`'s cross-fitted map (fitted, as
`replace` fits it, on every row of the file).
"""

from __future__ import annotations

import argparse
import itertools

import numpy as np
import torch

from defemb.calibrate import refit_rows
from defemb.embeddings import load_embeddings
from defemb.frequency import BANDS, rank_tokens
from defemb.method.data import load_records
from defemb.method.train import own_row_in_top
from defemb.models import get_table, load_model


def targets(corpus: str, split: str, vocab_size: int) -> set[int]:
    """Token ids the records of a corpus split predict."""
    return {r["input_ids"][p] for r in load_records(corpus, split, vocab_size) for g in r["word_positions"] for p in g}


def measure(rows: np.ndarray, ids: np.ndarray, E: np.ndarray, band_of: np.ndarray) -> dict[str, tuple]:
    """Per band: (tokens, error ÷ band mean row, top-10 share)."""
    table = torch.from_numpy(E)
    hits = np.concatenate([own_row_in_top(torch.from_numpy(rows[i:i + 2048]), torch.from_numpy(ids[i:i + 2048]),
                                          table).numpy() for i in range(0, len(ids), 2048)])
    out = {}
    for band in BANDS:
        at = band_of[ids] == band
        if not at.any():
            continue
        truth = E[ids[at]]
        band_mean = E[np.flatnonzero(band_of == band)].mean(axis=0)
        error = ((rows[at] - truth) ** 2).sum(axis=1).mean() / ((band_mean - truth) ** 2).sum(axis=1).mean()
        out[band] = (int(at.sum()), float(error), float(hits[at].mean()))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("embeddings", nargs="+")
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--corpus", help="the training corpus: also report the tokens only its validation split has")
    parser.add_argument("--ranking", help="as `replace --ranking` (default by tokenizer type)")
    parser.add_argument("--refit", action="store_true", help="also measure the rows after `replace --refit linear`")
    args = parser.parse_args()
    loaded = load_model(args.model)
    E = get_table(loaded.model)
    ranking = rank_tokens(loaded.tokenizer, E.shape[0], args.ranking, loaded.tokenizer_kind)
    band_of = ranking.band_of(E.shape[0])
    held_out = None
    if args.corpus:
        held_out = targets(args.corpus, "valid", E.shape[0]) - targets(args.corpus, "train", E.shape[0])
    print("| rows | tokens | tokens per band, frequent / medium / rare | error ÷ band mean row | top 10 |")
    print("|---|---|---|---|---|")
    for path in args.embeddings:
        emb = load_embeddings(path)
        versions = {path: emb.embeddings}
        if args.refit:
            versions[f"{path}, refit"] = refit_rows(E[emb.token_ids], emb.embeddings)[0]
        subsets = {"all": np.ones(len(emb), dtype=bool)}
        if held_out is not None:
            subsets["held out"] = np.isin(emb.token_ids, sorted(held_out))
        for (label, rows), (name, keep) in itertools.product(versions.items(), subsets.items()):
            stats = measure(rows[keep], emb.token_ids[keep], E, band_of)
            cells = [" / ".join("–" if b not in stats else str(stats[b][i]) if i == 0 else f"{stats[b][i]:.3f}"
                                for b in BANDS) for i in range(3)]
            print(f"| {label} ({name}) | {int(keep.sum())} | {cells[0]} | {cells[1]} | {cells[2]} |")


if __name__ == "__main__":
    main()
