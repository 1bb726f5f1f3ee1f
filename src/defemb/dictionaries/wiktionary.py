"""Wiktionary in the wiktextract / kaikki.org JSONL format (the paper's source), streamed line by line.

One JSON object per line, e.g. ``{"word": "wain", "pos": "noun", "lang_code": "en",
"senses": [{"glosses": ["A wagon; ..."], "raw_glosses": ["(archaic) A wagon; ..."], "tags": [...]}]}``.
Real dumps are GBs, so lines are read with a size cap (see ``lines.iter_lines``).

A nested sense repeats its parent's gloss (``glosses: [parent, own]``), so glosses are deduplicated per
line: one ``Entry`` per distinct gloss of the entry. A line that yields no entry is counted exactly once
(line-level reason); a glossless sense of an entry that does yield is counted as "sense-without-gloss".
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

from defemb.dictionaries.entry import Entry, SkipLog, location
from defemb.dictionaries.lines import MAX_LINE_BYTES, iter_lines
from defemb.dictionaries.text import clean_definition, plain_pos

SOURCE = "wiktionary"


def _glosses(sense: object) -> list[str]:
    glosses = sense.get("glosses") if isinstance(sense, dict) else None
    if not isinstance(glosses, list):
        return []
    cleaned = (clean_definition(g) for g in glosses if isinstance(g, str))
    return [g for g in cleaned if g]


def _line_entries(record: object, where: str, skip: SkipLog) -> list[Entry]:
    """Entries of one parsed line; records at most one line-level skip when the list is empty."""
    if not isinstance(record, dict):
        skip.add("not-an-object", where, record)
        return []
    word, senses = record.get("word"), record.get("senses")
    if not isinstance(word, str) or not isinstance(senses, list):
        skip.add("missing-field", where, record)
        return []
    lang = record.get("lang_code")
    if lang is not None and lang != "en":
        skip.add("non-english", where, f"{word} ({lang})")
        return []
    word = word.strip()
    if not word:
        skip.add("empty-word", where, record)
        return []
    raw_pos = record.get("pos")
    pos = plain_pos(raw_pos) if isinstance(raw_pos, str) else ""
    seen: set[str] = set()
    entries: list[Entry] = []
    glossless = 0
    for sense in senses:
        glosses = _glosses(sense)
        glossless += not glosses
        for gloss in glosses:
            if gloss not in seen:
                seen.add(gloss)
                entries.append(Entry(word, pos, gloss, SOURCE, where))
    if not entries:
        skip.add("no-glosses", where, word)
    else:
        for _ in range(glossless):
            skip.add("sense-without-gloss", where, word)
    return entries


def read_wiktionary(path: str | os.PathLike, skip: SkipLog, max_line_bytes: int = MAX_LINE_BYTES) -> Iterator[Entry]:
    """Yield one ``Entry`` per distinct gloss of every English entry in a kaikki JSONL file (or ``.gz``)."""
    for number, text in iter_lines(path, skip, max_line_bytes):
        where = location(path, number)
        try:
            record = json.loads(text)
        except (ValueError, RecursionError):  # bad JSON, over-deep nesting, over-long integers
            skip.add("malformed-json", where, text)
            continue
        yield from _line_entries(record, where, skip)
