"""Plain definition files: TSV or JSONL with keys ``word``, ``pos`` (optional) and ``definition``. The
format follows the extension (.jsonl/.json: JSONL, anything else: TSV) unless given.

TSV comes in two layouts, read by one parser (``read_tsv``, also behind the entities file): a header row
naming the columns (first column "word", one named "definition"; "pos", "speech_part" or
"part_of_speech" for the part of speech; other columns are ignored), or no header and per line
``word<TAB>definition`` or ``word<TAB>pos<TAB>definition``. Tabs after the last column stay in the value.

Every non-blank line yields exactly one entry or one counted skip; the only other lines passed over are
the header and, for the entities file, ``#`` comments.
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


# Header names -> the field they hold; a header row is recognised by its first column, "word".
COLUMNS = {"word": "word", "pos": "pos", "speech_part": "pos", "part_of_speech": "pos", "definition": "definition"}


def header_columns(fields: list[str]) -> tuple[str | None, ...] | None:
    """The field each column holds (None: ignored) if ``fields`` are a header row, else None."""
    names = tuple(COLUMNS.get("_".join(f.strip().lower().replace("-", " ").split())) for f in fields)
    return names if names[0] == "word" and "definition" in names else None


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


def _tsv_fields(text: str, columns: tuple[str | None, ...] | None) -> tuple[str, str, str] | None:
    """(word, pos, definition) of one line in the header's layout, or by its 2 or 3 fields; None if short."""
    if columns is None:
        fields = text.split("\t", 2)
        if len(fields) == 2:
            return fields[0], "", fields[1]
        return (fields[0], fields[1], fields[2]) if len(fields) == 3 else None
    fields = text.split("\t", len(columns) - 1)
    if len(fields) < len(columns):
        return None
    named = {name: value for name, value in zip(columns, fields, strict=True) if name}
    return named["word"], named.get("pos", ""), named["definition"]


def read_tsv(
    path: str | os.PathLike,
    skip: SkipLog,
    source: str = SOURCE,
    clean: Callable[[str], str] = clean_definition,
    max_line_bytes: int = MAX_LINE_BYTES,
    comments: bool = False,
) -> Iterator[Entry]:
    """Yield one ``Entry`` per data line of a TSV in either layout (module docstring); ``comments``
    passes over lines starting with "#"."""
    columns, first = None, True
    for number, text in iter_lines(path, skip, max_line_bytes):
        if comments and text.lstrip().startswith("#"):
            continue
        if first:
            first = False
            columns = header_columns(text.split("\t"))
            if columns is not None:
                continue
        where = location(path, number)
        fields = _tsv_fields(text, columns)
        if fields is None:
            skip.add("missing-field", where, text)
            continue
        entry = make_entry(*fields, where, skip, source, clean)
        if entry is not None:
            yield entry


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


def _read_jsonl(path: str | os.PathLike, skip: SkipLog, max_line_bytes: int) -> Iterator[Entry]:
    for number, text in iter_lines(path, skip, max_line_bytes):
        entry = _jsonl_entry(text, location(path, number), skip)
        if entry is not None:
            yield entry


def read_tabular(
    path: str | os.PathLike, skip: SkipLog, fmt: str | None = None, max_line_bytes: int = MAX_LINE_BYTES
) -> Iterator[Entry]:
    """Yield one ``Entry`` per data row; ``fmt`` is "tsv" or "jsonl" (default: by extension)."""
    fmt = fmt or tabular_format(path)
    if fmt not in FORMATS:
        raise DefembError(f"unknown table format '{fmt}' for '{path}'; use one of {', '.join(FORMATS)}")
    if fmt == "tsv":
        return read_tsv(path, skip, max_line_bytes=max_line_bytes)
    return _read_jsonl(path, skip, max_line_bytes)
