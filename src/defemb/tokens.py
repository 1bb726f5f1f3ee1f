"""Token surfaces: the text a vocabulary entry stands for, without tokenizer markers."""

from __future__ import annotations

import re

# Word-internal WordPiece pieces start with "##"; byte-level BPE marks a leading space with "Ġ";
# SentencePiece marks it with "▁".
_MARKERS = ("##", "Ġ", "▁")
_INTEGER = re.compile(r"[0-9]+")


def surface(token: str) -> str:
    for marker in _MARKERS:
        if token.startswith(marker):
            return token[len(marker) :]
    return token


def integer_value(token: str) -> int | None:
    """The integer a token spells (markers stripped), or None if it is not all ASCII digits."""
    text = surface(token)
    return int(text) if _INTEGER.fullmatch(text) else None
