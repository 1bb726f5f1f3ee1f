"""`defemb add-tokens`: new words (domain terms, product names) get rows predicted from their definitions.

Each new word is defined in a TSV (``word<TAB>definition`` or ``word<TAB>pos<TAB>definition``). Its
prompt is built with the model's *original* tokenizer, where the word is still several pieces; every
occurrence is hidden as a unit and the trained DefinitionEMB predicts one row at the place the word
starts: a single mask token for encoders, the state after the sentinel for encoder-decoders, the state
after the definition for decoders. The baseline is `resize_token_embeddings`' initialisation.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch

from defemb.analysis.neighbours import nearest_neighbours
from defemb.analysis.projection import printable
from defemb.corpus.build import Tokenizing, make_records
from defemb.dictionaries import SkipLog, read_entities
from defemb.errors import DefembError
from defemb.method.embed import load_run
from defemb.method.masking import STRATEGIES, Example, Vocabulary
from defemb.method.model import collate
from defemb.models import get_table, load_model, set_table
from defemb.outputs import atomic_dir, check_writable, write_json_atomic


def hide_as_unit(record: dict, vocab: Vocabulary) -> Example:
    """Encoder input with every occurrence of the word collapsed to one mask token; predict at the first."""
    groups = record["word_positions"]
    first = {g[0] for g in groups}
    hidden = {p for g in groups for p in g}
    ids, position = [], None
    for p, token in enumerate(record["input_ids"]):
        if p in first:
            position = len(ids) if position is None else position
            ids.append(vocab.mask_id)
        elif p not in hidden:
            ids.append(token)
    return Example(ids, [position], [vocab.mask_id])


@torch.no_grad()
def predict_rows(run_dir: str | Path, words_file: str | Path) -> tuple[list[str], np.ndarray, object]:
    """One predicted row per word of ``words_file`` (first definition of each word wins)."""
    model, loaded, _ = load_run(run_dir)
    skips = SkipLog()
    entries, seen = [], set()
    for entry in read_entities(words_file, skips):
        if entry.word not in seen:
            seen.add(entry.word)
            entries.append(entry)
    if not entries:
        raise DefembError(f"'{words_file}' defines no words ({skips.report()})")
    tok = Tokenizing.load(str(Path(run_dir) / "model"), 256)
    records = make_records(entries, tok, skips)
    if len(records) != len(entries):
        raise DefembError(f"some words could not be placed in a prompt: {skips.report()}")
    vocab = Vocabulary.for_model(loaded)
    if model.kind == "encoder":
        examples = [hide_as_unit(r, vocab) for r in records]
    else:
        examples = []
        for r in records:
            example = STRATEGIES[model.kind](r, vocab, None)
            example.positions, example.targets = example.positions[:1], example.targets[:1]  # before any piece
            examples.append(example)
    rows = torch.cat([model(collate(examples[k : k + 64], vocab.pad_id)) for k in range(0, len(examples), 64)])
    return [e.word for e in entries], rows.numpy(), loaded


def add_tokens(model_name: str, run_dir: str | Path, words_file: str | Path, out: str | Path,
               force: bool = False, table: str = "input") -> dict:
    """Extend tokenizer and table; write the checkpoint and ``added.tsv`` (word, id, neighbours)."""
    check_writable(out, force)
    if not Path(words_file).is_file():
        raise DefembError(f"words file '{words_file}' not found")
    words, rows, _ = predict_rows(run_dir, words_file)
    target = load_model(model_name)
    existing = [w for w in words if w in target.tokenizer.get_vocab()]
    if existing:
        raise DefembError(f"already in the vocabulary, nothing to add: {', '.join(existing[:5])}")
    if rows.shape[1] != get_table(target.model, table).shape[1]:
        raise DefembError(f"run predicts rows of size {rows.shape[1]}, the model's {table} table has "
                          f"{get_table(target.model, table).shape[1]}")
    old_size = len(target.tokenizer)
    target.tokenizer.add_tokens(words)
    new_ids = np.array(target.tokenizer.convert_tokens_to_ids(words))
    if new_ids.max() >= get_table(target.model, table).shape[0]:  # T5-style tables may have spare rows
        target.model.resize_token_embeddings(len(target.tokenizer))
    E = get_table(target.model, table)
    mean_init = E[new_ids].copy()  # what resize_token_embeddings (or the spare row) gave
    E[new_ids] = rows
    set_table(target.model, E, table)
    candidates = np.arange(old_size)
    near_def, _ = nearest_neighbours(E, new_ids, candidates, k=5)
    baseline = E.copy()
    baseline[new_ids] = mean_init
    near_mean, _ = nearest_neighbours(baseline, new_ids, candidates, k=5)
    tokens = target.tokenizer.convert_ids_to_tokens(list(range(old_size)))
    with atomic_dir(out, force) as tmp:
        target.model.save_pretrained(tmp)
        target.tokenizer.save_pretrained(tmp)
        with open(tmp / "added.tsv", "w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
            writer.writerow(["word", "id", "neighbours_definition", "neighbours_mean_init"])
            for word, i, a, b in zip(words, new_ids, near_def, near_mean, strict=True):
                writer.writerow([word, int(i), " ".join(printable(tokens[j]) for j in a),
                                 " ".join(printable(tokens[j]) for j in b)])
        write_json_atomic(tmp / "defemb.json", {"added": len(words), "run": str(run_dir), "table": table,
                                                "model": model_name})
    return {"added": len(words), "first_id": int(new_ids.min())}
