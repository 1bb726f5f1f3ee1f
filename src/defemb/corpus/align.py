"""Token positions of a character span, from a fast tokenizer's offset mapping.

Offsets differ by tokenizer: byte-level BPE without offset trimming and SentencePiece count the space
before a word as part of its ``Ġ``/``▁`` token, and SentencePiece may emit a lone ``▁`` token whose
offset points at the next character. The rules below give, for every family, exactly the tokens that
spell the word: tokens overlapping the span, minus zero-width and marker-only tokens; a token may
start early only by whitespace; any token reaching outside the span otherwise means the word's
boundary falls inside a token, and the occurrence is not usable (None).
"""

from __future__ import annotations

MARKER_ONLY = frozenset({"▁", "Ġ"})


def span_positions(
    text: str, offsets: list[tuple[int, int]], tokens: list[str], start: int, end: int
) -> list[int] | None:
    """Positions of the tokens that make up ``text[start:end]``; None if a token crosses a boundary."""
    positions = []
    for k, (s, e) in enumerate(offsets):
        if e <= s or s >= end or e <= start or tokens[k] in MARKER_ONLY:
            continue
        if s < start and text[s:start].strip():
            return None
        if e > end:
            return None
        positions.append(k)
    return positions or None
