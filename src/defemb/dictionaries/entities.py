"""The user's own definitions for names and word pieces that no dictionary covers.

TSV in the layouts of ``tabular.read_tsv`` (``word<TAB>definition`` or ``word<TAB>pos<TAB>definition``,
or a header row naming the columns); ``#`` starts a comment line. Definitions are kept as written (only
whitespace is collapsed): the user wrote them for the prompt, so dictionary cleaning would only risk damage.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from defemb.dictionaries.entry import Entry, SkipLog
from defemb.dictionaries.lines import MAX_LINE_BYTES
from defemb.dictionaries.tabular import read_tsv
from defemb.dictionaries.text import collapse

SOURCE = "entities"


def read_entities(path: str | os.PathLike, skip: SkipLog, max_line_bytes: int = MAX_LINE_BYTES) -> Iterator[Entry]:
    """Yield one ``Entry`` per definition line of a user entities file."""
    return read_tsv(path, skip, SOURCE, collapse, max_line_bytes, comments=True)
