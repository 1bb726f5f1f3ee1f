"""How much of a vocabulary a corpus covers (the paper's Table 3), overall, per band and for numbers.

A token is covered when it occurs at a marked word position of some prompt: those are the tokens
DefinitionEMB can produce a row for.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from defemb.errors import DefembError
from defemb.frequency import rank_tokens
from defemb.method.data import read_records
from defemb.models import load_tokenizer, tokenizer_kind
from defemb.tokens import integer_value


def covered_ids(corpus_dir: str | Path, vocab_size: int) -> np.ndarray:
    """Boolean mask over token ids: True where the id is at a word position somewhere. # (vocab_size,)"""
    covered = np.zeros(vocab_size, dtype=bool)
    files = [Path(corpus_dir) / f"{split}.jsonl" for split in ("train", "valid")]
    if not any(f.is_file() for f in files):
        raise DefembError(f"'{corpus_dir}' holds no train.jsonl or valid.jsonl; build it with `defemb corpus build`")
    for file in files:
        if not file.is_file():
            continue
        for record in read_records(file, vocab_size):  # the checks training makes: ids and positions in range
            covered[[record["input_ids"][p] for group in record["word_positions"] for p in group]] = True
    return covered


def _share(covered: int, total: int) -> dict:
    percent = round(100.0 * covered / total, 2) if total else None
    return {"total": int(total), "covered": int(covered), "percent": percent}


def coverage(corpus_dir: str | Path, tokenizer_name: str, ranking: str | None = None) -> dict:
    """Coverage of the tokenizer's non-special vocabulary, overall, per band and for numeric tokens."""
    tokenizer = load_tokenizer(tokenizer_name)
    size = len(tokenizer)
    covered = covered_ids(corpus_dir, size)
    ranked = rank_tokens(tokenizer, size, ranking, tokenizer_kind(tokenizer))
    vocab = tokenizer.convert_ids_to_tokens(list(range(size)))
    numeric = np.array([i for i in ranked.order if integer_value(vocab[i]) is not None], dtype=np.int64)
    return {
        "corpus": str(corpus_dir),
        "tokenizer": tokenizer_name,
        "ranking": ranked.method,
        "vocabulary": _share(covered[ranked.order].sum(), len(ranked.order)),
        "bands": {name: _share(covered[ids].sum(), len(ids)) for name, ids in ranked.bands.items()},
        "numeric": _share(covered[numeric].sum() if len(numeric) else 0, len(numeric)),
    }
