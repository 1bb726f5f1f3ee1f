"""The user's own definitions for names and word pieces that no dictionary covers.

TSV, one per line: ``word<TAB>definition`` or ``word<TAB>pos<TAB>definition``; ``#`` starts a comment
line and line 1 may be a header (first field "word"). Definitions are kept as written (only whitespace is
collapsed): the user wrote them for the prompt, so dictionary cleaning would only risk damage.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from defemb.dictionaries.entry import Entry, SkipLog, location
from defemb.dictionaries.lines import MAX_LINE_BYTES, iter_lines
from defemb.dictionaries.tabular import is_header, make_entry
from defemb.dictionaries.text import collapse

SOURCE = "entities"


def read_entities(path: str | os.PathLike, skip: SkipLog, max_line_bytes: int = MAX_LINE_BYTES) -> Iterator[Entry]:
    """Yield one ``Entry`` per definition line of a user entities file."""
    for number, text in iter_lines(path, skip, max_line_bytes):
        fields = text.split("\t", 2)
        if text.lstrip().startswith("#") or is_header(number, fields):
            continue
        where = location(path, number)
        if len(fields) < 2:
            skip.add("missing-field", where, text)
            continue
        word, pos, definition = fields if len(fields) == 3 else (fields[0], "", fields[1])
        entry = make_entry(word, pos, definition, where, skip, SOURCE, collapse)
        if entry is not None:
            yield entry
