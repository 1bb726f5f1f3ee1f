"""Corpus records for training: loading (with a tokenizer check) and length-bucketed token-budget batches."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from defemb.errors import DefembError
from defemb.models import vocabulary_hash


def check_corpus(corpus_dir: str | Path, tokenizer) -> dict:
    """The corpus config, after checking that it was built for this tokenizer."""
    config_file = Path(corpus_dir) / "config.json"
    if not config_file.is_file():
        raise DefembError(f"'{corpus_dir}' is not a corpus directory (no config.json); run `defemb corpus build`")
    config = json.loads(config_file.read_text(encoding="utf-8"))
    expected = vocabulary_hash(tokenizer)
    if config.get("vocab_hash") != expected:
        raise DefembError(
            f"corpus '{corpus_dir}' was built for another tokenizer ({config.get('tokenizer')}): its vocabulary "
            f"hash differs from this model's; rebuild it with --tokenizer set to this model"
        )
    return config


def load_records(corpus_dir: str | Path, split: str, limit: int | None = None) -> list[dict]:
    """The fields training needs (ids and word positions, plus the word for reports)."""
    path = Path(corpus_dir) / f"{split}.jsonl"
    if not path.is_file():
        raise DefembError(f"corpus file '{path}' is missing")
    records = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if limit is not None and len(records) >= limit:
                break
            try:
                full = json.loads(line)
                records.append(
                    {k: full[k] for k in ("word", "input_ids", "word_positions", "location")}
                )
            except (json.JSONDecodeError, KeyError) as exc:
                raise DefembError(f"{path}:{number}: not a corpus record ({type(exc).__name__}: {exc})") from exc
    return records


def batch_plan(lengths: np.ndarray, token_budget: int, seed: int, epoch: int) -> list[np.ndarray]:
    """Batches of example indices for one epoch: similar lengths together, each batch's padded size
    (count × longest) within ``token_budget``, batch order shuffled. Same (seed, epoch), same plan."""
    rng = np.random.default_rng([seed, epoch])
    order = np.lexsort((rng.random(len(lengths)), lengths))  # by length, ties in random order
    batches, current, longest = [], [], 0
    for index in order:
        new_longest = max(longest, int(lengths[index]))
        if current and new_longest * (len(current) + 1) > token_budget:
            batches.append(np.array(current))
            current, new_longest = [], int(lengths[index])
        current.append(int(index))
        longest = new_longest
    if current:
        batches.append(np.array(current))
    return [batches[i] for i in rng.permutation(len(batches))]
