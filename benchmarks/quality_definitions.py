"""How much word similarity do the definitions themselves carry, as the model reads them?

    HF_HUB_OFFLINE=1 python benchmarks/quality_definitions.py CORPUS [LABEL=EMB ...] [--model minilm]
        [--senses 5] [--sets DIR|FILE ...]

A ceiling for `replace --all`'s word similarity: rows predicted from definitions can only carry what the
definitions say. On the words of the similarity sets that are one token of the model and the headword of
some definition in CORPUS (a folder `corpus build` wrote), Spearman ρ of cosine against the human scores,
mean over the sets (those with at least 20 such pairs), for:
- the pretrained rows of those tokens (what `replace --all` should keep);
- each EMB (a file `defemb embed` wrote; words without a row there are left out of every line, so all
  lines score the same pairs), as written and as `replace --all --spread directions` writes it (the
  spread map fitted per band on every row of the file);
- the model's own sentence embedding of the definitions: the mean of the last hidden states over the
  definition text alone (the headword is not in it), averaged over up to ``--senses`` definitions with the
  dictionaries taking turns — what a sentence-embedding model like all-MiniLM-L6-v2 was trained to compare;
- a linear read-out of those sentence embeddings into the row space (ridge, cross-fitted over 5 folds of
  the words), with its error ÷ the error of the words' mean row.
With more than one source in CORPUS, the sentence embedding per source is also scored on the words every
source (of those defining a fifth of the words) defines.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from defemb.calibrate import fit_spread
from defemb.dictionaries import take_turns
from defemb.embeddings import load_embeddings
from defemb.evaluation.wordsim import read_sets, spearman
from defemb.frequency import rank_tokens
from defemb.models import get_table, load_model
from defemb.precision import cpu_name

MIN_PAIRS = 20


def definitions(corpus: str, words: set[str], senses: int) -> dict[str, dict[str, list[str]]]:
    """word -> source -> its own headword's definitions (up to ``senses`` per source, corpus order)."""
    found: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for split in ("train", "valid"):
        for line in open(Path(corpus) / f"{split}.jsonl", encoding="utf-8"):
            record = json.loads(line)  # the whole record: `load_records` keeps only what training reads
            word = record["word"].casefold()
            if word in words and record["definition"] not in found[word][record["source"]]:
                if len(found[word][record["source"]]) < senses:
                    found[word][record["source"]].append(record["definition"])
    return found


@torch.no_grad()
def sentence_vectors(loaded, texts: list[str], batch: int = 64) -> np.ndarray:
    """Mean of the last hidden states over each text's tokens (sentence-transformers' pooling). # (n, h)"""
    out = []
    for i in range(0, len(texts), batch):
        enc = loaded.tokenizer(texts[i:i + batch], padding=True, truncation=True, max_length=128,
                               return_tensors="pt")
        states = loaded.model(**enc, output_hidden_states=True).hidden_states[-1]
        mask = enc["attention_mask"].unsqueeze(-1).to(states.dtype)
        out.append(((states * mask).sum(1) / mask.sum(1)).float().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)


def mean_sentences(loaded, groups: list[list[str]]) -> np.ndarray:
    """One vector per group of texts: the mean of their sentence vectors. # (n, h)"""
    flat = [t for group in groups for t in group]
    vectors = sentence_vectors(loaded, flat)
    owner = np.repeat(np.arange(len(groups)), [len(g) for g in groups])
    sums = np.zeros((len(groups), vectors.shape[1]))
    np.add.at(sums, owner, vectors)
    return sums / np.array([len(g) for g in groups])[:, None]


def spread_per_band(emb, E: np.ndarray, band_of: np.ndarray) -> np.ndarray:
    """The file's rows with `replace`'s ``directions`` spread, fitted per band on all its rows. # (n, h)"""
    rows = emb.embeddings.astype(np.float64)
    bands = band_of[emb.token_ids]
    for band in np.unique(bands):
        at = bands == band
        rows[at] = fit_spread(E[emb.token_ids[at]], rows[at], "directions")(rows[at])
    return rows


def cross_fitted_ridge(X: np.ndarray, Y: np.ndarray, seed: int = 0) -> np.ndarray:
    """Each row of Y predicted from X by a ridge map fitted on the other four folds."""
    from sklearn.linear_model import RidgeCV
    from sklearn.model_selection import KFold

    out = np.zeros_like(Y, dtype=np.float64)
    for fit, held in KFold(5, shuffle=True, random_state=seed).split(X):
        out[held] = RidgeCV(alphas=[0.1, 1.0, 10.0, 100.0]).fit(X[fit], Y[fit]).predict(X[held])
    return out


def mean_rho(sets, index: dict[str, int], vectors: np.ndarray) -> tuple[float, int]:
    """Mean Spearman ρ over the sets with at least MIN_PAIRS pairs of indexed words; and the pairs scored."""
    rhos, pairs = [], 0
    for s in sets:
        keep = [(index[a], index[b], score) for (a, b), score in zip(s.pairs, s.scores, strict=True)
                if a in index and b in index]
        if len(keep) < MIN_PAIRS:
            continue
        va, vb = vectors[[k[0] for k in keep]], vectors[[k[1] for k in keep]]
        cosines = (va * vb).sum(1) / np.maximum(np.linalg.norm(va, axis=1) * np.linalg.norm(vb, axis=1), 1e-12)
        rhos.append(spearman(np.array([k[2] for k in keep]), cosines))
        pairs += len(keep)
    return (float(np.mean(rhos)) if rhos else float("nan")), pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus")
    parser.add_argument("embeddings", nargs="*", metavar="LABEL=EMB")
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--senses", type=int, default=5, help="definitions averaged per word (default 5)")
    parser.add_argument("--sets", nargs="+", help="similarity files or folders (default: the shared sets)")
    args = parser.parse_args()
    torch.manual_seed(0)
    loaded = load_model(args.model)
    loaded.model.eval()
    E = get_table(loaded.model)
    sets = read_sets(args.sets)
    rows = {label: load_embeddings(path) for label, _, path in (e.partition("=") for e in args.embeddings)}
    have = [set(emb.token_ids.tolist()) for emb in rows.values()]
    token_of = {}
    for word in sorted({w for s in sets for pair in s.pairs for w in pair}):
        ids = loaded.tokenizer(word, add_special_tokens=False)["input_ids"]
        if len(ids) == 1 and all(ids[0] in ids_of for ids_of in have):
            token_of[word.casefold()] = ids[0]
    found = definitions(args.corpus, set(token_of), args.senses)
    words = sorted(w for w in token_of if w in found)
    index = {w: k for k, w in enumerate(words)}
    ids = np.array([token_of[w] for w in words])
    Y = E[ids].astype(np.float64)
    print(f"{len(words)} words of the sets are one token and a headword of {args.corpus}; "
          f"model {args.model}; CPU: {cpu_name()}\n")
    print("| vectors | mean ρ | pairs | error ÷ mean row |\n|---|---|---|---|")
    base = ((Y - Y.mean(0)) ** 2).sum(1).mean()
    lines = [("pretrained rows", Y)]
    band_of = rank_tokens(loaded.tokenizer, E.shape[0], None, loaded.tokenizer_kind).band_of(E.shape[0])
    for label, emb in rows.items():
        where = [{int(t): k for k, t in enumerate(emb.token_ids)}[t] for t in ids]
        lines.append((f"{label}: definition rows", emb.embeddings[where].astype(np.float64)))
        lines.append((f"{label}: definition rows, `--spread directions`", spread_per_band(emb, E, band_of)[where]))
    S = mean_sentences(loaded, [take_turns(found[w].values(), args.senses) for w in words])
    lines += [("sentence embedding of the definitions", S), ("ridge read-out of it (cross-fitted)",
                                                              cross_fitted_ridge(S, Y))]
    for label, vectors in lines:
        rho, pairs = mean_rho(sets, index, vectors)
        in_row_space = not label.startswith("sentence")  # the hidden space is another space, even at equal width
        error = ((Y - vectors) ** 2).sum(1).mean() / base if in_row_space else float("nan")
        print(f"| {label} | {rho:.3f} | {pairs} | {'–' if np.isnan(error) else f'{error:.3f}'} |")
    counts = defaultdict(int)
    for w in words:
        for s in found[w]:
            counts[s] += 1
    sources = sorted(s for s, n in counts.items() if n >= 0.2 * len(words))  # not "numbers", which defines a few
    if len(sources) > 1:
        both = [w for w in words if all(found[w].get(s) for s in sources)]
        sub = {w: k for k, w in enumerate(both)}
        Yb = Y[[index[w] for w in both]]
        base_b = ((Yb - Yb.mean(0)) ** 2).sum(1).mean()
        print(f"\nOn the {len(both)} words every source defines:\n\n| vectors | mean ρ | pairs | ridge read-out: "
              "ρ | error ÷ mean row |\n|---|---|---|---|---|")
        for label, vectors in lines[:-2]:
            rho, pairs = mean_rho(sets, sub, vectors[[index[w] for w in both]])
            print(f"| {label} | {rho:.3f} | {pairs} | – | – |")
        for label, pick in [(s, [s]) for s in sources] + [(" + ".join(sources), sources)]:
            Sb = mean_sentences(loaded, [take_turns([found[w][s] for s in pick], args.senses) for w in both])
            read = cross_fitted_ridge(Sb, Yb)
            rho, pairs = mean_rho(sets, sub, Sb)
            print(f"| sentence embedding, {label} | {rho:.3f} | {pairs} | {mean_rho(sets, sub, read)[0]:.3f} | "
                  f"{((Yb - read) ** 2).sum(1).mean() / base_b:.3f} |")


if __name__ == "__main__":
    main()
