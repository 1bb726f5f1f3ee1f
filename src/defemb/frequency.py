"""Token frequency ranking and the frequent / medium / rare bands (METHOD §3).

"Rare" means rare in the model's pretraining data, which we cannot see, so we offer three proxies:
``index`` (token id order; right for byte-level BPE, whose ids follow merge frequency), ``wordfreq``
(frequencies of English words spread onto their tokens; default for WordPiece and SentencePiece) and
``corpus:PATH`` (token counts over a user's text file, streamed).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import transformers

from defemb.errors import DefembError, quote
from defemb.models import plain_backend
from defemb.tokens import surface

BANDS = ("frequent", "medium", "rare")
BAND_SHARES = (0.3, 0.5, 0.2)
WORDFREQ_TOP_N = 100_000
_BATCH = 2048


@dataclass
class Ranking:
    """Non-special token ids, most frequent first, with the score that ordered them."""

    method: str
    order: np.ndarray  # (n,) int64 token ids
    scores: np.ndarray = field(repr=False)  # (n,) float64, aligned with order; larger = more frequent
    bands: dict[str, np.ndarray] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.bands = band_split(self.order)

    def band_of(self, vocab_size: int) -> np.ndarray:
        """Band name per token id ('special' for ids outside the ranking). # (vocab_size,)"""
        labels = np.full(vocab_size, "special", dtype=object)
        for name, ids in self.bands.items():
            labels[ids[ids < vocab_size]] = name
        return labels


def band_split(order: np.ndarray) -> dict[str, np.ndarray]:
    """Cut a ranked id list into 30 % frequent, 50 % medium and 20 % rare."""
    n = len(order)
    n_frequent = int(round(BAND_SHARES[0] * n))
    n_rare = int(round(BAND_SHARES[2] * n))
    n_medium = n - n_frequent - n_rare
    return {
        "frequent": order[:n_frequent],
        "medium": order[n_frequent : n_frequent + n_medium],
        "rare": order[n_frequent + n_medium :],
    }


def special_ids(tokenizer: transformers.PreTrainedTokenizerBase) -> set[int]:
    ids = set(tokenizer.all_special_ids)
    for token_id, added in getattr(tokenizer, "added_tokens_decoder", {}).items():
        if getattr(added, "special", False):
            ids.add(int(token_id))
    return ids


def rankable_ids(tokenizer: transformers.PreTrainedTokenizerBase, n_rows: int) -> np.ndarray:
    """Ids that have both a token and a table row, specials excluded."""
    limit = min(len(tokenizer), n_rows)
    specials = special_ids(tokenizer)
    return np.array([i for i in range(limit) if i not in specials], dtype=np.int64)


def default_method(tokenizer_kind: str) -> str:
    return "index" if tokenizer_kind == "bpe" else "wordfreq"


def parse_method(spec: str) -> tuple[str, str | None]:
    """Split ``corpus:PATH``; check the method name."""
    name, _, arg = spec.partition(":")
    if name not in ("index", "wordfreq", "corpus"):
        raise DefembError(f"unknown --ranking {quote(spec)}; choose index, wordfreq or corpus:PATH")
    if name == "corpus":
        if not arg:
            raise DefembError("--ranking corpus needs a file: corpus:PATH")
        if not Path(arg).is_file():
            raise DefembError(f"--ranking corpus: file '{arg}' does not exist")
        return name, arg
    if arg:
        raise DefembError(f"--ranking {name} takes no argument (got {quote(spec)})")
    return name, None


def rank_tokens(
    tokenizer: transformers.PreTrainedTokenizerBase,
    n_rows: int,
    spec: str | None = None,
    tokenizer_kind: str = "wordpiece",
) -> Ranking:
    """Rank the non-special tokens that have a row; ``spec`` None picks the default for the tokenizer."""
    spec = spec or default_method(tokenizer_kind)
    name, arg = parse_method(spec)
    ids = rankable_ids(tokenizer, n_rows)
    if name == "index":
        return Ranking(spec, ids, -ids.astype(np.float64))
    limit = max(len(tokenizer), n_rows)
    if name == "wordfreq":
        counts = _wordfreq_counts(tokenizer, limit, word_initial_space=tokenizer_kind == "bpe")
        counts = _with_ascii_punctuation(tokenizer, ids, counts)
    else:
        counts = _corpus_counts(tokenizer, limit, Path(arg))
    scores = counts[ids]
    # Stable sort on -score: ties (tokens never seen) keep id order, so the highest ids rank rarest.
    order = np.argsort(-scores, kind="stable")
    return Ranking(spec, ids[order], scores[order])


def _count_ids(encodings: list[list[int]], limit: int, weights: np.ndarray | None = None) -> np.ndarray:
    counts = np.zeros(limit, dtype=np.float64)
    for k, ids in enumerate(encodings):
        if ids:
            np.add.at(counts, np.asarray(ids, dtype=np.int64), 1.0 if weights is None else weights[k])
    return counts


def _wordfreq_words(tokenizer) -> tuple[list[str], np.ndarray]:
    """English words with their wordfreq frequencies: the top `WORDFREQ_TOP_N`, and every number the vocabulary spells.

    wordfreq stores multi-digit numbers smashed to templates ("2011" -> "0000", "1990s" -> "0000s") and spreads a
    template's frequency over its numbers with ``digit_freq`` (Benford's law, a year curve). Tokenizing the
    templates themselves would credit only zero tokens and leave every real number at 0, in the rare band. So
    templates are left out of the word list and each number word is scored the way ``word_frequency`` scores it.
    """
    import wordfreq
    from wordfreq.numbers import MULTI_DIGIT_RE, digit_freq, smash_numbers

    table = wordfreq.get_frequency_dict("en")  # one load; word_frequency() per word is 30x slower
    ranked = sorted(table, key=table.__getitem__, reverse=True)
    words = [w for w in ranked if not MULTI_DIGIT_RE.search(w)][:WORDFREQ_TOP_N]
    numbers = sorted({text for text in map(surface, tokenizer.get_vocab()) if MULTI_DIGIT_RE.search(text)})
    number_freqs = {n: table.get(smash_numbers(n), 0.0) * digit_freq(n) for n in numbers}
    words += [n for n in numbers if number_freqs[n] > 0]
    freqs = np.array([table[w] if w in table else number_freqs[w] for w in words], dtype=np.float64)
    return words, freqs


def _wordfreq_counts(tokenizer, limit: int, word_initial_space: bool) -> np.ndarray:
    words, freqs = _wordfreq_words(tokenizer)
    # Byte-level BPE marks word-initial pieces (Ġ): tokenize words as they appear in running text.
    texts = [" " + w for w in words] if word_initial_space else words
    counts = np.zeros(limit, dtype=np.float64)
    encode = encoder(tokenizer)
    for start in range(0, len(texts), _BATCH):
        batch = encode(texts[start : start + _BATCH])
        counts += _count_ids(batch, limit, freqs[start : start + _BATCH])
    return counts


def _with_ascii_punctuation(tokenizer, ids: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """``counts`` with ASCII punctuation tokens that wordfreq left at 0 moved to the top.

    wordfreq strips punctuation before it counts, so "," "-" "&" "/" get no frequency from it, and a 0 here
    means "not measured", not "rare". Left at 0 they ranked among the rarest tokens, and α 20 rebuilt the comma
    row of MiniLM: 4.6 % of MRPC's tokens (docs/results.md). ASCII punctuation is common in any English
    pretraining text, so these tokens rank with the most frequent words. Kept at 0: other symbols wordfreq
    does not list ("‰", "₍"), whose rarity is the usual case, and WordPiece's "##," pieces, which BERT's
    tokenizer never produces (it splits punctuation off every word)."""
    tokens = tokenizer.convert_ids_to_tokens(ids.tolist())
    punctuation = [i for i, t in zip(ids.tolist(), tokens, strict=True)
                   if counts[i] == 0 and not t.startswith("##") and (text := surface(t)) and text.isascii()
                   and not any(c.isalnum() for c in text)]
    out = counts.copy()
    out[punctuation] = counts.max()
    return out


def _corpus_counts(tokenizer, limit: int, path: Path) -> np.ndarray:
    counts = np.zeros(limit, dtype=np.float64)
    encode = encoder(tokenizer)
    batch: list[str] = []
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if line.strip():
                batch.append(line.rstrip("\n"))
            if len(batch) == _BATCH:
                counts += _count_ids(encode(batch), limit)
                batch = []
    if batch:
        counts += _count_ids(encode(batch), limit)
    return counts


def encoder(tokenizer) -> Callable[[list[str]], list[list[int]]]:
    """texts -> token ids without specials; straight through the Rust backend when there is one."""
    backend = plain_backend(tokenizer)
    if backend is not None:
        return lambda texts: [e.ids for e in backend.encode_batch(texts, add_special_tokens=False)]
    return lambda texts: tokenizer(texts, add_special_tokens=False)["input_ids"]
