"""Definitions for the numeric tokens of a vocabulary, written out with ``num2words``.

The paper defines every numeric vocabulary token by its spelled-out value ("102" -> "one hundred and
two"). Callers pass token surfaces; tokenizer markers are stripped first. Besides the cardinal reading,
ordinal surfaces ("23rd") get their ordinal, plausible years (1100-2099) get a year reading, and numbers
written with leading zeros ("007") say so, because their meaning is the digit string, not the value.

Beyond the paper, each reading also places the number: its length in digits and its two neighbours
("seventy-three; a two-digit number, the number after 72 and before 74"). The neighbours are frequent,
well-trained rows, so the reconstruction of a rare number lands beside numbers of similar value; on
MiniLM this halved the median Max Difference gap of the rebuilt number rows (docs/results.md).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from num2words import num2words

from defemb.dictionaries.entry import Entry
from defemb.tokens import surface

SOURCE = "numbers"
_DIGITS = re.compile(r"[0-9]+")  # ASCII only: str.isdigit() also accepts "²", which num2words rejects
_ORDINAL = re.compile(r"([0-9]+)(st|nd|rd|th)")
_DIGIT_NAMES = "zero one two three four five six seven eight nine".split()
YEARS = range(1100, 2100)
MAX_CARDINAL_DIGITS = 30


def ordinal_suffix(value: int) -> str:
    if value % 100 in (11, 12, 13):
        return "th"
    return {1: "st", 2: "nd", 3: "rd"}.get(value % 10, "th")


def _digits(text: str) -> str:
    return " ".join(_DIGIT_NAMES[int(c)] for c in text)


def _cardinal(text: str) -> str:
    # Names of 31+ digit numbers ("ten duotrigintillion") say less than the digits do, and int() refuses
    # strings over 4300 digits.
    if len(text) > MAX_CARDINAL_DIGITS:
        return f"the digits {_digits(text)}"
    return num2words(int(text))


def _number_definitions(text: str) -> list[tuple[str, str]]:
    """(pos, definition) pairs for a digit string."""
    if len(text) > 1 and text.startswith("0"):
        leading = len(text) - max(len(text.lstrip("0")), 1)  # "000" is zero with two leading zeros
        zeros = "a leading zero" if leading == 1 else "leading zeros"
        value = _cardinal(text.lstrip("0") or "0")
        return [("number", f"the digits {_digits(text)}; the number {value} written with {zeros}")]
    readings = [("number", _cardinal(text) + _place(text, "number"))]
    if len(text) == 4 and int(text) in YEARS:
        readings.append(("number", f"the year {num2words(int(text), to='year')}" + _place(text, "year")))
    return readings


def _place(text: str, what: str) -> str:
    """'; a two-digit number, the number after 72 and before 74' (empty for 31+ digit strings)."""
    if len(text) > MAX_CARDINAL_DIGITS:
        return ""
    value = int(text)
    around = f"after {value - 1} and before {value + 1}" if value > 0 else "before 1"
    return f"; a {num2words(len(text))}-digit number, the {what} {around}"


def _ordinal_definition(text: str) -> str | None:
    match = _ORDINAL.fullmatch(text)
    if match is None:
        return None
    digits, suffix = match.groups()
    # "2th" and "11st" are not ordinals; "01st" and 31+ digit ordinals are not worth a reading either.
    if (len(digits) > 1 and digits.startswith("0")) or len(digits) > MAX_CARDINAL_DIGITS:
        return None
    if ordinal_suffix(int(digits)) != suffix:
        return None
    value = int(digits)
    before = f"after {value - 1}{ordinal_suffix(value - 1)} and " if value > 1 else ""
    return f"{num2words(value, to='ordinal')}; the ordinal {before}before {value + 1}{ordinal_suffix(value + 1)}"


def number_entries(tokens: Iterable[str]) -> Iterator[Entry]:
    """Yield entries for the numeric surfaces among ``tokens`` (each surface once, markers stripped)."""
    seen: set[str] = set()
    for token in tokens:
        text = surface(token)
        if text in seen:
            continue
        where = f"{SOURCE}:{token}"
        if _DIGITS.fullmatch(text):
            seen.add(text)
            for pos, definition in _number_definitions(text):
                yield Entry(text, pos, definition, SOURCE, where)
        elif (ordinal := _ordinal_definition(text)) is not None:
            seen.add(text)
            yield Entry(text, "ordinal number", ordinal, SOURCE, where)
