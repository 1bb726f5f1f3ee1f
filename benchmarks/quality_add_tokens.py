"""`add-tokens` quality: rows predicted from definitions vs `resize_token_embeddings` vs the mean of the pieces.

    HF_HUB_OFFLINE=1 python benchmarks/quality_add_tokens.py --run runs/train-1200 --work runs/add-tokens

The new words are the word-similarity words (shared word-sim sets) that the model's tokenizer splits into
several pieces and GCIDE defines. Each is added as one token three ways: its DefinitionEMB row (from its first
GCIDE definition), the row `resize_token_embeddings` gives it, and — not an added row, the usual fallback —
the mean of its pieces' rows. Scored by Spearman ρ on the pairs that contain at least one new word (the other
word: mean of its token rows), per set with at least ``--min-pairs`` such pairs. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from defemb.dictionaries import SkipLog, read_gcide
from defemb.evaluation.wordsim import WordPairs, read_sets, score_sets, word_token_ids
from defemb.method.add_tokens import predict_rows
from defemb.models import get_table, load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="finished `defemb train` run directory")
    parser.add_argument("--work", required=True, help="folder for the words file")
    parser.add_argument("--min-pairs", type=int, default=20)
    args = parser.parse_args()
    loaded = load_model(json.loads((Path(args.run) / "config.json").read_text())["model"])
    E = get_table(loaded.model)  # (V, h)
    kind = loaded.tokenizer_kind
    sets = read_sets(None)
    words = sorted({w for s in sets for pair in s.pairs for w in pair})
    pieces = dict(zip(words, word_token_ids(loaded.tokenizer, kind, words), strict=True))
    split = {w for w in words if len(pieces[w]) > 1}
    definitions: dict[str, tuple[str, str]] = {}
    for entry in read_gcide(SkipLog()):
        if entry.word in split and entry.word not in definitions:
            definitions[entry.word] = (entry.pos, entry.definition)
    new = sorted(definitions)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    words_file = work / "words.tsv"
    words_file.write_text("".join(f"{w}\t{p}\t{d}\n" for w, (p, d) in definitions.items()), encoding="utf-8")
    predicted_words, rows, _ = predict_rows(args.run, words_file)
    row_of = dict(zip(predicted_words, rows, strict=True))

    loaded.tokenizer.add_tokens(new)
    loaded.model.resize_token_embeddings(len(loaded.tokenizer))
    resized = get_table(loaded.model)
    resize_of = {w: resized[loaded.tokenizer.convert_tokens_to_ids(w)] for w in new}

    def vectors(added: dict[str, np.ndarray] | None):
        def vector(ws: list[str]) -> tuple[np.ndarray, np.ndarray]:
            out = np.zeros((len(ws), E.shape[1]))
            for k, w in enumerate(ws):
                out[k] = added[w] if added is not None and w in added else E[pieces[w]].mean(axis=0)
            return out, np.ones(len(ws), dtype=bool)

        return vector

    subsets = []
    for s in sets:
        keep = [k for k, (a, b) in enumerate(s.pairs) if a in definitions or b in definitions]
        if len(keep) >= args.min_pairs:
            subsets.append(WordPairs(s.name, s.path, tuple(s.pairs[k] for k in keep), s.scores[keep]))
    ways = {"mean of the pieces (no new token)": None, "resize_token_embeddings": resize_of,
            "DefinitionEMB (add-tokens)": row_of}
    results = {name: score_sets(subsets, vectors(added)) for name, added in ways.items()}
    print(f"{len(split)} multi-piece words, {len(new)} defined by GCIDE and added\n")
    print("| set (pairs with a new word) | " + " | ".join(ways) + " |")
    print("|---|" + "---|" * len(ways))
    for s in subsets:
        cells = [f"{results[n].get(f'{s.name}/spearman', float('nan')):.3f}" for n in ways]
        print(f"| {s.name} ({len(s.pairs)}) | " + " | ".join(cells) + " |")
    print("| mean | " + " | ".join(f"{results[n]['mean/spearman']:.3f}" for n in ways) + " |")


if __name__ == "__main__":
    main()
