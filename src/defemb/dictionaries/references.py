"""Cross-references resolved to the definition they point to.

GCIDE has about 6,200 definitions that only point elsewhere: "abanet: See Abnet.", "abiogeny: Same as
Abiogenesis.", "highth: Variant of Height." Such a prompt says nothing about the word, so the predictor
learns its row from nothing and `embed` reads it from nothing. `resolve` gives the entry the first
definition of the word it points to (one of the same part of speech when there is one), found by
`definition_index` in two passes over the same sources before the build: one lists the words that
references name (`referenced_words`), one keeps their definitions, so memory grows with the referenced
words, not with the dictionary. The entry keeps its word and part of speech, and its location says where
the text came from: ``gcide:words_A.json:abanet (see Abnet)``.

A reference is kept as it is when its target has no definition of its own (a reference to a reference,
a target outside the dictionary) or is the word itself. Only a whole definition that is a reference
counts: "Also used figuratively." or "Of or pertaining to Abyssinia." are definitions.
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from collections.abc import Iterable, Iterator

from defemb.dictionaries.entry import Entry

REFERENCE = re.compile(
    r"(?:see|same as|var\.? of|variant of)\s+(?:(?:the\s+)?note\s+)?(?:under\s+)?(?P<target>[^,.;:()]+?)\s*"
    r"(?:,[^;]{0,40})?\.?", re.IGNORECASE)
MAX_TARGET_CHARS = 40  # a longer "target" is a sentence, not a headword


def reference_target(definition: str) -> str | None:
    """The headword a definition that is only a cross-reference points to ("See Abnet." -> "Abnet"), else None."""
    match = REFERENCE.fullmatch(definition.strip())
    if not match:
        return None
    target = match.group("target").strip()
    return target if 0 < len(target) <= MAX_TARGET_CHARS else None


def referenced_words(entries: Iterable[Entry]) -> set[str]:
    """The casefolded headwords that some entry's definition points to."""
    return {target.casefold() for entry in entries if (target := reference_target(entry.definition))}


def definition_index(entries: Iterable[Entry], wanted: set[str] | None = None) -> dict[str, list[tuple[str, str]]]:
    """Casefolded headword (of ``wanted`` only, when given) -> its (part of speech, definition) pairs that are
    not references, in order."""
    index: dict[str, list[tuple[str, str]]] = {}
    for entry in entries:
        word = entry.word.casefold()
        if (wanted is None or word in wanted) and reference_target(entry.definition) is None:
            index.setdefault(word, []).append((entry.pos, entry.definition))
    return index


def resolve(entries: Iterable[Entry], index: dict[str, list[tuple[str, str]]], counts: Counter[str]
            ) -> Iterator[Entry]:
    """The entries with each resolvable reference replaced by its target's definition; ``counts`` gets
    ``resolved`` and ``unresolved`` (references kept as they are)."""
    for entry in entries:
        target = reference_target(entry.definition)
        if target is None:
            yield entry
            continue
        found = index.get(target.casefold()) if target.casefold() != entry.word.casefold() else None
        if not found:
            counts["unresolved"] += 1
            yield entry
            continue
        counts["resolved"] += 1
        same_pos = [definition for pos, definition in found if pos == entry.pos]
        yield dataclasses.replace(entry, definition=(same_pos or [found[0][1]])[0],
                                  location=f"{entry.location} (see {target})")
