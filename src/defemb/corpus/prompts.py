"""Entry -> prompt text with the character spans of every occurrence of the defined word (METHOD §6).

A prompt names the word in its variants, then its part of speech and casing, then the definition:

    discomfort ; Discomfort (noun, lowercase) : a feeling of being uncomfortable

Variants are the word as written, lowercase and Capitalised, deduplicated by how the tokenizer
normalises them (an uncased WordPiece vocabulary sees one). Byte-level BPE has a separate
word-internal form of every token (no ``Ġ``): the prompt then starts with the word glued to the start
of the text, which is the one place a whole word takes that form, so pieces such as ``iment`` get
covered besides ``Ġiment``. Occurrences of a variant inside the definition are marked too, so that
masking the word never leaves a copy of it in view.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from defemb.dictionaries import Entry

SEPARATOR = " ; "
INTERNAL = "internal"
INITIAL = "initial"


@dataclass(frozen=True)
class Prompt:
    """A prompt with the spans (start, end) of each occurrence and the form each one takes."""

    text: str
    spans: tuple[tuple[int, int], ...]
    forms: tuple[str, ...]
    prefix_end: int  # the definition starts after this character; truncation never cuts before it


def casing(word: str) -> str:
    letters = [c for c in word if c.isalpha()]
    if not letters:
        return ""  # numbers and symbols: nothing to say about case
    if all(c.islower() for c in letters):
        return "lowercase"
    if all(c.isupper() for c in letters):
        return "uppercase" if len(letters) > 1 else "capitalised"
    if letters[0].isupper() and all(c.islower() for c in letters[1:]):
        return "capitalised"
    return "mixed case"


def variants(word: str, normalise=lambda s: s) -> list[str]:
    """As written, lowercase, Capitalised — without those the tokenizer cannot tell apart."""
    seen, out = set(), []
    for candidate in (word, word.lower(), word[:1].upper() + word[1:].lower()):
        key = normalise(candidate)
        if key not in seen:
            seen.add(key)
            out.append(candidate)
    return out


def build_prompt(entry: Entry, word_internal_forms: bool, normalise=lambda s: s) -> Prompt:
    """The prompt for one entry; ``word_internal_forms`` for tokenizers whose pieces differ mid-word."""
    forms = variants(entry.word, normalise)
    pieces: list[tuple[str, str]] = []
    if word_internal_forms:
        pieces.append((forms[0], INTERNAL))  # at offset 0 there is no preceding space: no Ġ
    pieces += [(v, INITIAL) for v in forms]
    text, spans, kinds = "", [], []
    for k, (variant, kind) in enumerate(pieces):
        if k:
            text += SEPARATOR
        spans.append((len(text), len(text) + len(variant)))
        kinds.append(kind)
        text += variant
    facts = ", ".join(x for x in (entry.pos, casing(entry.word)) if x)
    text += f" ({facts}) : "
    prefix_end = len(text)
    text += entry.definition
    for start, end in occurrences(entry.definition, forms):
        spans.append((prefix_end + start, prefix_end + end))
        kinds.append(INITIAL)
    return Prompt(text, tuple(spans), tuple(kinds), prefix_end)


def occurrences(text: str, forms: list[str]) -> list[tuple[int, int]]:
    """Whole-word, case-insensitive occurrences of any variant in ``text``, left to right."""
    if not text:
        return []
    alternatives = "|".join(re.escape(f) for f in sorted(set(forms), key=len, reverse=True))
    pattern = re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE)
    return [(m.start(), m.end()) for m in pattern.finditer(text)]
