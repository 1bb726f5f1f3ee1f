"""Entry -> prompt text with the character spans of every occurrence of the defined word (METHOD §6).

A prompt names the word in its variants, then its part of speech and casing, then the definition:

    discomfort ; Discomfort (noun, lowercase) : a feeling of being uncomfortable

Variants are the word as written, lowercase and Capitalised, deduplicated by how the tokenizer
normalises them (an uncased WordPiece vocabulary sees one). Byte-level BPE and SentencePiece have a
separate word-internal form of every piece (no ``Ġ`` / ``▁``): the prompt then also holds the word
where it takes that form (see `INTERNAL_PLACE`), so pieces such as ``iment`` get covered besides
``Ġiment``; an occurrence whose boundary falls inside a token is dropped when positions are aligned.
Occurrences of a variant inside the definition are marked too, so that masking the word never leaves
a copy of it in view.
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


# Where a word takes its word-internal form, per tokenizer kind: byte-level BPE marks a preceding space
# (Ġ), so the very start of the text, with no space, gives the internal form; SentencePiece marks the
# start of every whitespace-separated chunk (▁), so a word glued to a hyphen gives it. WordPiece has no
# such place: its pre-tokenizer splits at punctuation, so "##" pieces are covered only inside words.
INTERNAL_PLACE = {"bpe": "start", "sentencepiece": "-"}


def build_prompt(entry: Entry, tokenizer_kind: str = "wordpiece", normalise=lambda s: s) -> Prompt:
    """The prompt for one entry, with word-internal occurrences where the tokenizer kind has them."""
    forms = variants(entry.word, normalise)
    pieces: list[tuple[str, str, str]] = [("", v, INITIAL) for v in forms]  # (glue, variant, form)
    place = INTERNAL_PLACE.get(tokenizer_kind)
    if place == "start":
        pieces.insert(0, ("", forms[0], INTERNAL))
    elif place is not None:
        pieces.append((place, forms[0], INTERNAL))
    text, spans, kinds = "", [], []
    for k, (glue, variant, kind) in enumerate(pieces):
        if k:
            text += SEPARATOR
        text += glue
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
