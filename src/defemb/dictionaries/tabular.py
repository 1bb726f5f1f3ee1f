"""Plain definition files: TSV ``word<TAB>pos<TAB>definition`` (optional header row) or JSONL with keys
``word``, ``pos`` (optional) and ``definition``. The format follows the extension (.jsonl/.json: JSONL,
anything else: TSV) unless given.

Every non-blank line yields exactly one entry or one counted skip; the only other lines passed over are
a header on line 1 (first field "word") and, for the entities file, ``#`` comments.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from defemb.dictionaries.entry import Entry, SkipLog, location
from defemb.dictionaries.lines import MAX_LINE_BYTES, iter_lines
from defemb.dictionaries.text import clean_definition, plain_pos
from defemb.errors import DefembError

SOURCE = "tabular"
FORMATS = ("tsv", "jsonl")


def tabular_format(path: str | os.PathLike) -> str:
    suffixes = [s.lower() for s in Path(path).suffixes if s.lower() != ".gz"]
    return "jsonl" if suffixes and suffixes[-1] in (".jsonl", ".json") else "tsv"


def is_header(number: int, fields: list[str]) -> bool:
    return number == 1 and fields[0].strip().lower() == "word"


def make_entry(
    word: object,
    pos: object,
    definition: object,
    where: str,
    skip: SkipLog,
    source: str,
    clean: Callable[[str], str],
) -> Entry | None:
    """Validate one row's fields into an ``Entry``, or count why not (one skip per row)."""
    if not isinstance(word, str) or not isinstance(definition, str) or not isinstance(pos, str):
        skip.add("missing-field", where, f"word={word!r} pos={pos!r} definition={definition!r}")
        return None
    word, text = word.strip(), clean(definition)
    if not word:
        skip.add("empty-word", where, f"{word!r}\t{definition!r}")
        return None
    if not text:
        skip.add("empty-definition", where, f"{word}\t{definition!r}")
        return None
    return Entry(word, plain_pos(pos), text, source, where)


def _tsv_entry(text: str, where: str, skip: SkipLog) -> Entry | None:
    fields = text.split("\t", 2)
    if len(fields) < 3:
        skip.add("missing-field", where, text)
        return None
    return make_entry(*fields, where, skip, SOURCE, clean_definition)


def _jsonl_entry(text: str, where: str, skip: SkipLog) -> Entry | None:
    try:
        record = json.loads(text)
    except (ValueError, RecursionError):  # bad JSON, over-deep nesting, over-long integers
        skip.add("malformed-json", where, text)
        return None
    if not isinstance(record, dict):
        skip.add("not-an-object", where, text)
        return None
    pos = record.get("pos")
    return make_entry(
        record.get("word"),
        "" if pos is None else pos,
        record.get("definition"),
        where,
        skip,
        SOURCE,
        clean_definition,
    )


def read_tabular(
    path: str | os.PathLike, skip: SkipLog, fmt: str | None = None, max_line_bytes: int = MAX_LINE_BYTES
) -> Iterator[Entry]:
    """Yield one ``Entry`` per data row; ``fmt`` is "tsv" or "jsonl" (default: by extension)."""
    fmt = fmt or tabular_format(path)
    if fmt not in FORMATS:
        raise DefembError(f"unknown table format '{fmt}' for '{path}'; use one of {', '.join(FORMATS)}")
    parse = _jsonl_entry if fmt == "jsonl" else _tsv_entry
    for number, text in iter_lines(path, skip, max_line_bytes):
        if fmt == "tsv" and is_header(number, text.split("\t")):
            continue
        entry = parse(text, location(path, number), skip)
        if entry is not None:
            yield entry
