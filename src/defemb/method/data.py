"""Corpus records for training: loading (with a tokenizer check) and length-bucketed token-budget batches."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from defemb.errors import DefembError, quote
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


def vocabulary_limit(loaded) -> int:
    """Token ids a corpus may hold for this model: known to its tokenizer and inside its input table."""
    return min(len(loaded.tokenizer), loaded.model.get_input_embeddings().num_embeddings)


def load_records(corpus_dir: str | Path, split: str, vocab_size: int, limit: int | None = None) -> list[dict]:
    """The checked fields training needs from ``split``.jsonl (see `read_records`)."""
    path = Path(corpus_dir) / f"{split}.jsonl"
    if not path.is_file():
        raise DefembError(f"corpus file '{path}' is missing")
    return list(itertools.islice(read_records(path, vocab_size), limit))


def read_records(path: Path, vocab_size: int) -> Iterator[dict]:
    """Each line of a corpus file as the fields training needs, checked once here so that no later stage
    meets a bad row: every problem is one DefembError naming FILE:LINE and the value."""
    with open(path, "rb") as handle:  # bytes: a line that is not UTF-8 is a bad record, not a crash
        for number, line in enumerate(handle, start=1):
            where = f"{path}:{number}"
            try:
                row = json.loads(line)
            except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
                raise DefembError(f"{where}: not a JSON line ({type(exc).__name__}); {_FIX}") from None
            yield record_fields(row, where, vocab_size)


_FIX = "fix or delete the line, or rebuild the corpus with `defemb corpus build`"


def _whole_numbers(values: object) -> bool:
    return isinstance(values, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in values)


def record_fields(row: object, where: str, vocab_size: int) -> dict:
    """``word``, ``input_ids``, ``word_positions`` and ``location`` of one parsed corpus row, after checking
    their types and that every id is in the vocabulary and every position inside the prompt."""

    def bad(what: str, value: object) -> DefembError:
        return DefembError(f"{where}: {what} (value {quote(json.dumps(value, ensure_ascii=False))}); {_FIX}")

    if not isinstance(row, dict):
        raise bad("not a corpus record (a JSON object)", row)
    for key in ("word", "location", "input_ids", "word_positions"):
        if key not in row:
            raise bad(f"the record has no '{key}'", row)
    for key in ("word", "location"):
        if not isinstance(row[key], str):
            raise bad(f"'{key}' is not a string", row[key])
    ids, groups = row["input_ids"], row["word_positions"]
    if not ids or not _whole_numbers(ids):
        raise bad("'input_ids' is not a non-empty list of token ids", ids)
    if outside := [i for i in ids if not 0 <= i < vocab_size]:
        raise bad(f"token id {outside[0]} is not in this model's vocabulary (0..{vocab_size - 1})", ids)
    if not groups or not isinstance(groups, list) or not all(g and _whole_numbers(g) for g in groups):
        raise bad("'word_positions' is not a non-empty list of non-empty lists of token positions", groups)
    if outside := [p for g in groups for p in g if not 0 <= p < len(ids)]:
        raise bad(f"word position {outside[0]} is outside the prompt's {len(ids)} tokens", groups)
    return {"word": row["word"], "location": row["location"], "input_ids": ids, "word_positions": groups}


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
