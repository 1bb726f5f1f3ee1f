"""Token surfaces (the text a vocabulary entry stands for, without tokenizer markers) and the special tokens
a tokenizer frames every text with."""

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


def special_frame(tokenizer) -> tuple[list[int], list[int]]:
    """The special ids the tokenizer puts before and after a text ([CLS] … [SEP], <s> …, … </s>)."""
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a")["input_ids"]
    start = next(k for k in range(len(full) - len(plain) + 1) if full[k : k + len(plain)] == plain)
    return full[:start], full[start + len(plain) :]


def padding_id(tokenizer) -> int:
    """The id that pads a batch. GPT-2/Llama have no pad token: padding is masked out, so EOS (or 0) serves."""
    if tokenizer.pad_token_id is not None:
        return tokenizer.pad_token_id
    return tokenizer.eos_token_id or 0
