"""Number-definition wording vs numeric Max Difference, with one trained DefinitionEMB run (docs/results.md).

    HF_HUB_OFFLINE=1 python benchmarks/quality_numbers.py --run runs/train-1200 --work runs/numbers

For each wording, the numeric vocabulary tokens get a one-source corpus, `defemb embed` rebuilds their
rows, and those rows replace the pretrained ones (λ = 1, 0.5, 0.25; no other row changes). Prints
Max Difference mean / median beside the original table's.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from defemb.analysis.numbers import max_difference, numeric_tokens
from defemb.config import CorpusConfig
from defemb.corpus.build import build_corpus
from defemb.dictionaries import number_entries
from defemb.embeddings import load_embeddings
from defemb.method.embed import embed
from defemb.models import get_table, load_model

WORDINGS = {
    "value (paper)": lambda d, v, what: d,
    "+ neighbours": lambda d, v, what: f"{d}; the {what} after {v - 1} and before {v + 1}",
    "+ length and neighbours (default)": None,  # what number_entries writes now
}


def definitions(tokens: list[str], wording: str) -> list[str]:
    lines = []
    for e in number_entries(tokens):
        text = e.definition
        rewrite = WORDINGS[wording]
        if rewrite is not None and e.pos == "number" and not text.startswith("the digits"):
            value = int(e.word)
            text = rewrite(text.split(";")[0], value, "year" if text.startswith("the year") else "number")
        elif rewrite is not None and e.pos == "ordinal number":
            text = text.split(";")[0]
        lines.append(f"{e.word}\t{e.pos}\t{text}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="finished `defemb train` run directory")
    parser.add_argument("--work", required=True, help="scratch folder for the corpora and rows")
    args = parser.parse_args()
    loaded = load_model(json.loads((Path(args.run) / "config.json").read_text())["model"])
    E = get_table(loaded.model).astype(np.float64)  # (V, h)
    tokens = loaded.tokenizer.convert_ids_to_tokens(list(range(len(E))))
    ids, values = numeric_tokens(tokens, np.arange(len(E)))
    base = max_difference(E[ids], values)
    print("| wording | λ = 1 | λ = 0.5 | λ = 0.25 |\n|---|---|---|---|")
    print(f"| original | {base['mean']:.2f} / {base['median']:g} | | |")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    for k, wording in enumerate(WORDINGS):
        source = work / f"numbers-{k}.tsv"
        source.write_text("\n".join(definitions(tokens, wording)) + "\n", encoding="utf-8")
        config = CorpusConfig(tokenizer=loaded.name, sources=[f"tsv:{source}"], numbers=False, valid_percent=0.0)
        build_corpus(config, work / f"corpus-{k}", force=True)
        embed(args.run, work / f"corpus-{k}", work / f"rows-{k}.safetensors", aggregate="first", force=True)
        rows = load_embeddings(work / f"rows-{k}.safetensors")
        cells = []
        for blend in (1.0, 0.5, 0.25):
            F = E.copy()
            F[rows.token_ids] = (1 - blend) * E[rows.token_ids] + blend * rows.embeddings
            r = max_difference(F[ids], values)
            cells.append(f"{r['mean']:.2f} / {r['median']:g}")
        print(f"| {wording} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
