"""The extension half of `defemb run`: the words the vocabulary splits become tokens, scored and shown.

    word list (the word-similarity sets' words when found, else wordfreq's English words ranked
    20,000-60,000) -> `defemb extend` with the pipeline's run -> ``OUT/extended`` (an HF checkpoint)
    -> word similarity on the pairs holding a new word, four initialisations side by side
    (``OUT/wordsim_added``; skipped, and said so, when no sets are found) -> tables for the reports.

Replacing rows the model already has and adding rows for words it splits are shown one after the other,
so a reader sees where definitions help and where they do not.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from defemb.errors import DefembError
from defemb.extend import INITIALISATIONS, ExtendConfig, extend, plan_extension
from defemb.models import load_tokenizer
from defemb.outputs import write_json_atomic, write_text_atomic

MAX_WORDS = 2000  # new tokens at most: enough to score every set, a minute of prediction on 2 cores
MIN_PAIRS = 20  # pairs with a new word a set needs to be scored on them
SHOWN_WORDS = 8
FALLBACK_RANKS = (20_000, 60_000)  # wordfreq English ranks: real words, rare enough to be split
SKIPPED = "extended.json"  # written instead of OUT/extended when there is no word to add


def similarity_sets() -> Path | None:
    """The shared word-similarity folder, or None when this machine has none."""
    from defemb.evaluation.data import dataset_dir

    try:
        return dataset_dir("word-sim") / "eval-word-vectors"
    except DefembError:
        return None


def word_list(sets: Path | None) -> list[str]:
    """The words to try: every word of the similarity sets, else a frequency band of wordfreq's list."""
    if sets is not None:
        from defemb.evaluation.wordsim import read_sets

        return sorted({w for s in read_sets([str(sets)]) for pair in s.pairs for w in pair})
    from wordfreq import top_n_list

    low, high = FALLBACK_RANKS
    return [w for w in top_n_list("en", high)[low:] if w.isalpha()]


def run_extension(out: Path, model: str, run: Path, sources: list[str], sets: Path | None) -> dict:
    """Write ``OUT/extended`` (or, when no word qualifies, ``OUT/extended.json`` saying so); returns the
    summary of `defemb extend`."""
    words_file = out / "extend_words.txt"
    write_text_atomic(words_file, "".join(f"{w}\n" for w in word_list(sets)))
    config = ExtendConfig(model=model, run=str(run), words=str(words_file), sources=sources, max_words=MAX_WORDS)
    plan = plan_extension(config, load_tokenizer(model))  # read the sources once, for both outcomes
    if not plan.words:
        summary = {**plan.counts(), "no_definition_words": plan.undefined}
        write_json_atomic(out / SKIPPED, summary)
        return summary
    return extend(config, out / "extended", plan=plan)


def score_extension(extended: Path, sets: Path, out: Path) -> list:
    """Word similarity of the new words, initialised four ways (`defemb evaluate wordsim --add-tokens`)."""
    from defemb.evaluation.wordsim import WordsimConfig, run_wordsim

    return run_wordsim(WordsimConfig(models=[], sets=[str(sets)], add_tokens=str(extended), min_pairs=MIN_PAIRS),
                       out, force=True)


def wordsim_rows(records: list) -> tuple[list[str], list[list[str]]]:
    """Spearman ρ per set on the pairs holding a new word, then the means, one column per initialisation
    (records of `run_wordsim` with ``add_tokens``)."""
    metrics = {r.label: r.metrics for r in records}
    ours = metrics["definitionemb"]
    names = sorted({k.rsplit("/", 1)[0] for k in ours if k.endswith("/coverage")},
                   key=lambda n: (not n.endswith("/new"), n))
    rows = [[f"{name} ({int(ours[f'{name}/pairs'])})",
             *[f"{metrics[i].get(f'{name}/spearman', float('nan')):.3f}" for i in INITIALISATIONS]] for name in names]
    for key, what in (("new/mean/spearman", "mean, pairs with a new word"), ("mean/spearman", "mean, all pairs")):
        if key in ours:
            rows.append([what, *[f"{metrics[i][key]:.3f}" for i in INITIALISATIONS]])
    return ["set (pairs)", *INITIALISATIONS], rows


def new_word_rows(added_tsv: Path, shown: int = SHOWN_WORDS, seed: int = 0) -> tuple[list[str], list[list[str]]]:
    """A seeded sample of the added words: pieces they replaced, the definition used, nearest old tokens."""
    with open(added_tsv, encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    picked = sorted(np.random.default_rng(seed).choice(len(rows), size=min(shown, len(rows)), replace=False))
    return (["word", "pieces before", "definition", "nearest old tokens"],
            [[rows[k]["word"], rows[k]["pieces"], rows[k]["definition"][:80], rows[k]["neighbours"]] for k in picked])


def extension_sections(out: Path) -> list[tuple[str, str, list[str], list[list[str]]]]:
    """(title, text, header, rows) for each table of the extension half, read from what the stages wrote."""
    skipped = out / SKIPPED
    if skipped.exists():
        counts = json.loads(skipped.read_text(encoding="utf-8"))
        return [("Extension: new tokens", f"No word to add: of {counts['candidates']} words, {counts['in_vocabulary']} "
                 f"are one token already and {counts['no_definition']} have no definition.", [], [])]
    summary = json.loads((out / "extended" / "defemb.json").read_text(encoding="utf-8"))
    text = (f"{summary['added']} words the vocabulary splits into pieces were added as tokens with DefinitionEMB "
            f"rows ({out / 'extended'}).")
    sections = []
    if (out / "wordsim_added").exists():
        from defemb.evaluation.records import read_records

        header, rows = wordsim_rows(read_records(out / "wordsim_added"))
        sections.append(("Extension: word similarity of the new tokens, four initialisations",
                         text + " Spearman ρ on the pairs of each set that hold a new word (sets with at least "
                         f"{MIN_PAIRS}), the same words initialised by resize_token_embeddings (mean row), the mean "
                         "of the word's pieces, the mean of its definition's token rows (desc_init) and "
                         "DefinitionEMB.", header, rows))
    else:
        text += " No word-similarity sets were found (set DEFEMB_DATA), so the new rows are not scored."
    header, rows = new_word_rows(out / "extended" / "added.tsv")
    sections.append(("Extension: new tokens and their nearest old tokens", "" if sections else text, header, rows))
    return sections
