"""What every dictionary reader yields (``Entry``) and how it reports input it could not use (``SkipLog``).

Readers never crash on a bad line and never drop one silently: each problem is counted under a short
reason with its location, so a build over a multi-GB dump can finish and still say what it left out.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypeVar

from defemb.errors import DefembError

EXAMPLES_PER_REASON = 5
EXCERPT_CHARS = 80
T = TypeVar("T")


def take_turns(groups: Iterable[list[T]], limit: int) -> list[T]:
    """Up to ``limit`` items, the groups (one per dictionary) taking turns: the first of each, then the
    second of each, ... So a second dictionary is read even where the first holds ``limit`` senses."""
    groups = list(groups)
    turns = [g[k] for k in range(max(map(len, groups), default=0)) for g in groups if k < len(g)]
    return turns[:limit]


@dataclass(frozen=True)
class Entry:
    """One definition of one word. ``location`` says where it came from, for error messages:
    ``"path:line"`` for line-based files, ``"gcide:words_A.json:headword"`` for GCIDE."""

    word: str
    pos: str
    definition: str
    source: str
    location: str


@dataclass(frozen=True)
class Skipped:
    """One remembered example of skipped input."""

    reason: str
    location: str
    excerpt: str


def location(path: object, line: int) -> str:
    return f"{path}:{line}"


def excerpt(value: object, limit: int = EXCERPT_CHARS) -> str:
    """A short, single-line rendering of a bad value: undecodable bytes and non-printable characters
    (tabs, newlines, control codes) are shown as escapes, so the report says exactly what is there."""
    if isinstance(value, bytes):
        text = value[: limit * 4].decode("utf-8", errors="backslashreplace")
    else:
        text = str(value)[: limit * 4]
    text = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


class SkipLog:
    """Counts skipped input by reason and keeps the first few examples of each.

    In strict mode the first problem raises ``DefembError`` naming the location and the value, for users
    who would rather fix their file than lose a line.
    """

    def __init__(self, strict: bool = False, examples_per_reason: int = EXAMPLES_PER_REASON) -> None:
        self.strict = strict
        self.examples_per_reason = examples_per_reason
        self._counts: Counter[str] = Counter()
        self.examples: dict[str, list[Skipped]] = {}

    def add(self, reason: str, where: str, value: object) -> None:
        """Record one skipped item: ``where`` is a location string (see ``location``)."""
        shown = excerpt(value)
        if self.strict:
            raise DefembError(f"{where}: {reason}: {shown} (fix this input, or run without strict mode to skip it)")
        self._counts[reason] += 1
        kept = self.examples.setdefault(reason, [])
        if len(kept) < self.examples_per_reason:
            kept.append(Skipped(reason, where, shown))

    @property
    def counts(self) -> dict[str, int]:
        return dict(self._counts)

    @property
    def total(self) -> int:
        return sum(self._counts.values())

    def report(self) -> str:
        """Human-readable summary: one line per reason (most frequent first), then its examples."""
        if not self._counts:
            return "skipped nothing"
        lines = [f"skipped {self.total} input item(s):"]
        for reason, count in sorted(self._counts.items(), key=lambda kv: (-kv[1], kv[0])):
            lines.append(f"  {reason}: {count}")
            lines.extend(f"    {ex.location}: {ex.excerpt}" for ex in self.examples[reason])
            if count > len(self.examples[reason]):
                lines.append(f"    ... and {count - len(self.examples[reason])} more")
        return "\n".join(lines)
