"""Cross-references in dictionaries ("See Abnet.") resolved to the definition they point to."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from defemb.cli import main
from defemb.config import CorpusConfig
from defemb.corpus.build import build_corpus
from defemb.dictionaries import Entry
from defemb.dictionaries.references import definition_index, reference_target, referenced_words, resolve
from defemb.errors import DefembError


@pytest.mark.parametrize("definition, target", [
    ("See Abnet.", "Abnet"),
    ("Same as Aby.", "Aby"),
    ("Variant of Clasp", "Clasp"),
    ("Var. of Karakul, a kind of fur.", "Karakul"),
    ("See Legislature, Austria, Prussia.", "Legislature"),
    ("See Agast, v. t.", "Agast"),
    ("See under Bird.", "Bird"),
    ("See the note under Abbey.", "Abbey"),
    ("See.", None),
    ("Same as.", None),
    ("Also used figuratively.", None),
    ("Of or pertaining to Abyssinia.", None),
    ("A girdle. See Abnet.", None),  # a definition that also points elsewhere is a definition
    ("See Abnet; also a girdle worn by priests.", None),
    ("See " + "a very long phrase that is not a headword at all", None),
])
def test_reference_targets(definition, target):
    assert reference_target(definition) == target


def test_resolve_gives_the_target_s_definition_of_the_same_part_of_speech():
    entries = [
        Entry("abnet", "verb", "To gird.", "t", "t:1"),
        Entry("abnet", "noun", "The girdle of a Jewish priest.", "t", "t:2"),
        Entry("abanet", "noun", "See Abnet.", "t", "t:3"),
        Entry("abanets", "adjective", "See ABNET, 2.", "t", "t:4"),  # no adjective: the first definition
        Entry("abb", "noun", "See Abb.", "t", "t:5"),  # itself
        Entry("abray", "verb", "See Abraid.", "t", "t:6"),  # no such headword
        Entry("abraid", "verb", "Same as Abrayd.", "t", "t:7"),  # a reference to a reference stays
    ]
    counts: Counter[str] = Counter()
    wanted = referenced_words(entries)
    assert wanted == {"abnet", "abb", "abraid", "abrayd"}
    index = definition_index(entries, wanted)
    assert set(index) == {"abnet"}  # "abb" has only a reference, "abraid" only a reference to a reference
    assert index == {k: v for k, v in definition_index(entries).items() if k in wanted}
    out = list(resolve(entries, index, counts))
    assert [e.definition for e in out] == ["To gird.", "The girdle of a Jewish priest.",
                                           "The girdle of a Jewish priest.", "To gird.", "See Abb.", "See Abraid.",
                                           "Same as Abrayd."]
    assert [e.word for e in out] == [e.word for e in entries] and [e.pos for e in out] == [e.pos for e in entries]
    assert out[2].location == "t:3 (see Abnet)" and out[0].location == "t:1"
    assert counts == {"resolved": 2, "unresolved": 3}


def test_the_corpus_resolves_references_unless_told_to_keep_them(tiny_model_dir, tmp_path):
    source = tmp_path / "defs.tsv"
    source.write_text("station\tnoun\ta place where trains stop\ndepot\tnoun\tSame as Station.\n"
                      "gare\tnoun\tSee Bahnhof.\n", encoding="utf-8")
    prompts = {}
    for mode in ("resolve", "keep"):
        config = CorpusConfig(tokenizer=str(tiny_model_dir("bert")), sources=[f"tsv:{source}"], numbers=False,
                              valid_percent=0, references=mode)
        stats = build_corpus(config, tmp_path / mode)
        records = [json.loads(line) for line in (tmp_path / mode / "train.jsonl").read_text().splitlines()]
        prompts[mode] = {r["word"]: r["definition"] for r in records}
        assert stats["references"] == ({"resolved": 1, "unresolved": 1} if mode == "resolve"
                                       else {"resolved": 0, "unresolved": 0})
    assert prompts["resolve"] == {"station": "a place where trains stop", "depot": "a place where trains stop",
                                  "gare": "See Bahnhof."}
    assert prompts["keep"]["depot"] == "Same as Station."
    with pytest.raises(DefembError, match="--references"):
        CorpusConfig(tokenizer="x", references="follow")


def test_cli_reports_the_resolved_references(tiny_model_dir, tmp_path, capsys):
    source = tmp_path / "defs.tsv"
    source.write_text("station\tnoun\ta place where trains stop\ndepot\tnoun\tSame as Station.\n", encoding="utf-8")
    assert main(["corpus", "build", "--tokenizer", str(tiny_model_dir("bert")), "--source", f"tsv:{source}",
                 "--no-numbers", "--out", str(tmp_path / "c")]) == 0
    assert "cross-references ('See X.'): 1 given the definition of X, 0 kept" in capsys.readouterr().out
