"""How a trained DefinitionEMB predicts the row of a word the vocabulary does not have (METHOD §8, new tokens).

The word's prompt is built with the model's *original* tokenizer, where the word is still several
pieces. Every occurrence is hidden as a unit and one row is read at the place the word starts: a single
mask token for encoders (at the first occurrence), the decoder state after the first sentinel for
encoder-decoders (before any piece of the word is seen), the state after the definition for decoders.
Other copies of the word's pieces in the prompt are hidden as training hides them.
`defemb.extend` turns these rows into new tokens.
"""

from __future__ import annotations

import numpy as np
import torch

from defemb.config import NEW_WORD_BAND
from defemb.method.data import batch_plan
from defemb.method.masking import STRATEGIES, Example, Vocabulary, copies
from defemb.method.model import DefinitionEMB, collate, read_rows

TOKEN_BUDGET = 8192  # padded tokens per forward pass: batches of ~100 short prompts


def hide_as_unit(record: dict, vocab: Vocabulary) -> Example:
    """Encoder input with every occurrence of the word collapsed to one mask token, and other copies of its
    pieces masked as in training; predict at the first occurrence."""
    groups = record["word_positions"]
    first = {g[0] for g in groups}
    hidden = {p for g in groups for p in g}
    copied = copies(record)
    ids, position = [], None
    for p, token in enumerate(record["input_ids"]):
        if p in first:
            position = len(ids) if position is None else position
            ids.append(vocab.mask_id)
        elif p in copied:
            ids.append(vocab.mask_id)
        elif p not in hidden:
            ids.append(token)
    return Example(ids, [position], [vocab.mask_id])


def new_word_example(record: dict, kind: str, vocab: Vocabulary) -> Example:
    """The model input for one new word, with exactly one position to read its row at."""
    if kind == "encoder":
        return hide_as_unit(record, vocab)
    example = STRATEGIES[kind](record, vocab, None)
    example.positions, example.targets = example.positions[:1], example.targets[:1]  # before any piece
    return example


@torch.no_grad()
def predict_rows(model: DefinitionEMB, vocab: Vocabulary, records: list[dict], band: str = NEW_WORD_BAND,
                 token_budget: int = TOKEN_BUDGET) -> np.ndarray:
    """One predicted row per record, in record order, by the head's map ``band`` (the shared W, or a band's;
    a run with one W uses it for every name); length-bucketed batches. # (n, h_e)"""
    examples = [new_word_example(r, model.kind, vocab) for r in records]
    lengths = np.array([len(e.input_ids) + len(e.decoder_input_ids or []) for e in examples])
    rows = np.zeros((len(examples), model.head.out_features), dtype=np.float32)
    index = model.head.index(band)
    for batch in batch_plan(lengths, token_budget, 0, 0):
        heads = torch.full((len(batch),), index, dtype=torch.long, device=model.head.weight.device)
        rows[batch] = read_rows(model, collate([examples[i] for i in batch], vocab.pad_id), heads).numpy()
    return rows
