"""Dictionary readers for the definition corpus: one reader per source, each yielding ``Entry`` and
counting what it skips in a ``SkipLog``.

CLI source specs (``read_source``): ``gcide`` (or ``gcide:DIR``), ``gcide-examples`` (usage examples in
place of definitions: the paper's ablation), ``wordnet`` (or ``wordnet:DIR``), ``wiktionary:PATH``,
``tsv:PATH``, ``jsonl:PATH`` and ``entities:PATH``. Numbers come from the tokenizer's vocabulary instead,
through ``number_entries``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from defemb.dictionaries.entities import read_entities
from defemb.dictionaries.entry import Entry, SkipLog, take_turns
from defemb.dictionaries.gcide import read_gcide
from defemb.dictionaries.numbers import number_entries
from defemb.dictionaries.tabular import read_tabular
from defemb.dictionaries.wiktionary import read_wiktionary
from defemb.dictionaries.wordnet import read_wordnet, wordnet_folder
from defemb.errors import DefembError

__all__ = [
    "Entry",
    "SkipLog",
    "number_entries",
    "read_entities",
    "read_gcide",
    "read_source",
    "read_tabular",
    "read_wiktionary",
    "read_wordnet",
    "take_turns",
]

SPECS = ("gcide, gcide:DIR, gcide-examples[:DIR], wordnet, wordnet:DIR, wiktionary:PATH, tsv:PATH, jsonl:PATH, "
         "entities:PATH")


def read_source(spec: str, skip: SkipLog) -> Iterator[Entry]:
    """Open the source a CLI spec names. Bad specs and missing files fail here, before any reading."""
    kind, _, arg = spec.partition(":")
    if kind in ("gcide", "gcide-examples"):
        return read_gcide(skip, arg or None, examples=kind == "gcide-examples")
    if kind == "wordnet":
        return read_wordnet(skip, str(wordnet_folder(arg or None)))  # a bad folder fails here, not when read
    if kind not in ("wiktionary", "tsv", "jsonl", "entities") or not arg:
        raise DefembError(f"unknown dictionary source '{spec}'; use one of: {SPECS}")
    if not Path(arg).is_file():
        raise DefembError(f"dictionary source '{spec}': '{arg}' {_not_a_file(Path(arg))}")
    if kind == "wiktionary":
        return read_wiktionary(arg, skip)
    if kind == "entities":
        return read_entities(arg, skip)
    return read_tabular(arg, skip, fmt=kind)


def _not_a_file(path: Path) -> str:
    if path.is_dir():
        return "is a directory; give a file"
    return "is not a regular file" if path.exists() else "not found"
