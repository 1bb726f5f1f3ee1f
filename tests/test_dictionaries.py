"""Dictionary readers: real data, bad input, line accounting under random input, and numbers."""

from __future__ import annotations

import gzip
import json
import re
import tracemalloc
from collections.abc import Callable, Iterator
from itertools import islice
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from defemb.dictionaries import (
    Entry,
    SkipLog,
    number_entries,
    read_entities,
    read_gcide,
    read_source,
    read_tabular,
    read_wiktionary,
)
from defemb.dictionaries.text import clean_definition, plain_pos
from defemb.errors import DefembError

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
KAIKKI = DATA / "wiktionary-kaikki" / "en-en-extract.jsonl"
WORDSET = DATA / "english-dictionary" / "wordset_definitions.tsv"
NEMO = DATA / "number-words" / "nemo-tn-tests"
# Leftovers that cleaning must remove: tags, GCIDE source notes (bracketed or with the "[" lost),
# editor comments, sense references, raw newlines.
MARKUP = re.compile(r"</?[A-Za-z][^<>]*>|1913 Webster|Webster 1913|\[PJC\]|<--|\{\d+[a-z]?\}|\n")


def needs(path: Path) -> pytest.MarkDecorator:
    return pytest.mark.skipif(not path.exists(), reason=f"shared data file {path} not present")


# ---------------------------------------------------------------- GCIDE (full parse once per session)


@pytest.fixture(scope="session")
def gcide() -> tuple[list[Entry], SkipLog]:
    skip = SkipLog()
    return list(read_gcide(skip)), skip


def test_gcide_counts_are_those_of_the_package(gcide: tuple[list[Entry], SkipLog]) -> None:
    entries, skip = gcide
    assert 165_000 <= len(entries) <= 180_000  # 171,934 definitions in the package, a few dozen dropped
    assert 105_000 <= len({e.word for e in entries}) <= 110_000  # 108,194 keys
    # Only the package's known defects are skipped: mis-split raw entries and empty/notes-only texts.
    assert set(skip.counts) <= {"malformed-headword", "empty-definition"}
    assert skip.total < 100
    assert all(e.source == "gcide" and e.location.startswith("gcide:words_") for e in entries)


def test_gcide_definitions_are_clean(gcide: tuple[list[Entry], SkipLog]) -> None:
    entries, _ = gcide
    dirty = [e for e in entries if MARKUP.search(e.definition) or "  " in e.definition]
    assert dirty == []
    assert all(e.definition == e.definition.strip() and e.word for e in entries)
    assert all(re.fullmatch(r"[a-z ]*", e.pos) for e in entries)


def test_gcide_known_headwords(gcide: tuple[list[Entry], SkipLog]) -> None:
    by_word: dict[str, list[Entry]] = {}
    for entry in gcide[0]:
        by_word.setdefault(entry.word, []).append(entry)
    assert ("verb", "To drink largely or luxuriously.") in {(e.pos, e.definition) for e in by_word["quaff"]}
    abandon = {(e.pos, e.definition) for e in by_word["abandon"]}
    assert ("verb", "To cast or drive out; to banish; to expel; to reject.") in abandon
    assert ("noun", "Abandonment; relinquishment.") in abandon
    # "...at Antwerp 36 [Written also Aum and Awm.]\n[1913 Webster]": the note stays, the source goes.
    assert by_word["aam"][0].definition.endswith("at Antwerp 36 [Written also Aum and Awm.]")
    # "[Obs.]" is a usage label worth keeping, spelled out.
    assert any("(obsolete)" in e.definition for e in by_word["aerostation"])
    assert all(e.pos == "noun" for e in by_word["horse power"])
    assert [e.location for e in by_word["goniff"]] == ['gcide:words_G.json:gon"iff']  # stress mark removed


def test_gcide_examples_replace_definitions(tmp_path: Path) -> None:
    data = {
        "quaff": {"entry": "quaff", "pos": [{"part_of_speech": "v. t.", "definitions": [
            {"text": "To drink largely.", "examples": ["They <i>quaff</i> the wine.", "", "Quaff it."]},
            {"text": "To swallow.", "examples": []},
            {"text": "To gulp."},
        ]}]},
    }
    (tmp_path / "words_Q.json").write_text(json.dumps(data), encoding="utf-8")
    skip = SkipLog()
    got = [(e.word, e.pos, e.definition, e.source) for e in read_source(f"gcide-examples:{tmp_path}", skip)]
    assert got == [
        ("quaff", "verb", "They quaff the wine.", "gcide-examples"),
        ("quaff", "verb", "Quaff it.", "gcide-examples"),
    ]
    assert skip.counts == {"empty-definition": 1}
    definitions = [e.definition for e in read_source(f"gcide:{tmp_path}", SkipLog())]
    assert definitions == ["To drink largely.", "To swallow.", "To gulp."]


# ---------------------------------------------------------------- real sample files


@needs(KAIKKI)
def test_kaikki_sample() -> None:
    skip = SkipLog()
    entries = list(read_wiktionary(KAIKKI, skip))
    assert skip.total == 0
    assert len(entries) == 29 and len({e.location for e in entries}) == 10
    bring = [e for e in entries if e.word == "bring"]
    assert len(bring) == 8 and bring[0].pos == "verb"
    assert bring[0].definition == "To transport toward somebody/somewhere."
    assert {e.pos for e in entries if e.word == "expansive"} == {"adjective"}
    assert bring[0].location == f"{KAIKKI}:1" and entries[-1].location == f"{KAIKKI}:10"


@needs(WORDSET)
def test_wordset_first_rows() -> None:
    skip = SkipLog()
    first = list(islice(read_tabular(WORDSET, skip), 2))
    assert [(e.word, e.pos, e.location) for e in first] == [
        ("A", "noun", f"{WORDSET}:2"),
        ("A", "noun", f"{WORDSET}:3"),
    ]
    assert first[0].definition.startswith("the unit symbol for the ampere, the basic unit of electric current")
    assert first[1].definition == "short form for adenine, a purine base found in DNA and RNA"
    assert skip.total == 0


# ---------------------------------------------------------------- bad input


LONG = 2 << 20  # longer than the default 1 MiB cap


def _bad_jsonl(tmp_path: Path, good: list[str]) -> Path:
    """Lines: 1 good, 2 malformed JSON, 3 missing field, 4 empty definition, 5 non-UTF-8, 6 too long,
    7 blank, 8 good."""
    path = tmp_path / "bad.jsonl"
    lines = [
        good[0].encode(),
        b'{"word": "x", ',
        b'{"pos": "noun"}',
        good[2].encode(),
        b'{"word": "caf\xe9"}',
        b'{"word": "' + b"a" * LONG + b'"}',
        b"   ",
        good[1].encode(),
    ]
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def _assert_bad_report(skip: SkipLog, path: Path, empty_reason: str = "empty-definition", **extra: int) -> None:
    expected = {"malformed-json": 1, "missing-field": 1, empty_reason: 1, "non-utf8": 1, "line-too-long": 1}
    assert skip.counts == expected | {reason.replace("_", "-"): n for reason, n in extra.items()}
    report = skip.report()
    for line, reason in [
        (2, "malformed-json"),
        (3, "missing-field"),
        (4, empty_reason),
        (5, "non-utf8"),
        (6, "line-too-long"),
    ]:
        assert re.search(rf"  {reason}: 1\n    {re.escape(str(path))}:{line}: ", report), (reason, report)
    assert "caf\\xe9" in report  # the bad byte is shown, escaped


def test_tabular_jsonl_bad_lines(tmp_path: Path) -> None:
    row = json.dumps({"word": "cat", "pos": "n.", "definition": "A small <i>feline</i>. [1913 Webster]"})
    path = _bad_jsonl(
        tmp_path,
        [
            row,
            json.dumps({"word": "dog", "definition": "A canine."}),
            json.dumps({"word": "z", "definition": " [PJC] "}),
        ],
    )
    skip = SkipLog()
    entries = list(read_tabular(path, skip))
    assert [(e.word, e.pos, e.definition, e.location) for e in entries] == [
        ("cat", "noun", "A small feline.", f"{path}:1"),
        ("dog", "", "A canine.", f"{path}:8"),
    ]
    _assert_bad_report(skip, path)


def test_wiktionary_bad_lines(tmp_path: Path) -> None:
    def entry(word: str, senses: list[dict]) -> str:
        return json.dumps({"word": word, "pos": "adj", "lang_code": "en", "senses": senses})

    path = _bad_jsonl(
        tmp_path,
        [
            entry("big", [{"glosses": ["Large."]}, {"tags": ["no-gloss"]}]),
            entry("red", [{"glosses": ["Of a colour."]}]),
            entry("z", [{"glosses": [" "]}]),
        ],
    )
    skip = SkipLog()
    entries = list(read_wiktionary(path, skip))
    assert [(e.word, e.pos, e.definition) for e in entries] == [
        ("big", "adjective", "Large."),
        ("red", "adjective", "Of a colour."),
    ]
    # Line 4's only gloss is blank, so the line counts once as "no-glosses"; big's glossless second sense
    # is counted on its own because big still yields an entry.
    _assert_bad_report(skip, path, empty_reason="no-glosses", sense_without_gloss=1)


def test_wiktionary_languages_nested_glosses_and_gzip(tmp_path: Path) -> None:
    lines = [
        {"word": "Hund", "pos": "noun", "lang_code": "de", "senses": [{"glosses": ["dog"]}]},
        {
            "word": "run",
            "pos": "verb",
            "senses": [{"glosses": ["To move fast."]}, {"glosses": ["To move fast.", "To jog."]}],
        },
    ]
    path = tmp_path / "dump.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.write("".join(json.dumps(line) + "\n" for line in lines))
    skip = SkipLog()
    assert [e.definition for e in read_wiktionary(path, skip)] == ["To move fast.", "To jog."]
    assert skip.counts == {"non-english": 1}


def test_tsv_and_entities_bad_lines(tmp_path: Path) -> None:
    tsv = tmp_path / "defs.tsv"
    tsv.write_bytes(
        b"Word\tPOS\tDefinition\r\ncat\tn.\tA  small\tfeline.\r\nonly-two\tfields\n\tnoun\tno word\n"
        b"x\tnoun\t  \n\xff\tnoun\tbad\nword\tnoun\tA unit of language.\n"
    )
    skip = SkipLog()
    assert [(e.word, e.pos, e.definition) for e in read_tabular(tsv, skip)] == [
        ("cat", "noun", "A small feline."),
        ("word", "noun", "A unit of language."),  # only line 1 can be a header
    ]
    assert skip.counts == {"missing-field": 1, "empty-word": 1, "empty-definition": 1, "non-utf8": 1}
    ents = tmp_path / "names.tsv"
    ents.write_text("# my names\nObama\tformer US president\niment\tsuffix\ta word piece [not a note]\nbad\n")
    skip = SkipLog()
    assert [(e.word, e.pos, e.definition, e.source) for e in read_entities(ents, skip)] == [
        ("Obama", "", "former US president", "entities"),
        ("iment", "suffix", "a word piece [not a note]", "entities"),
    ]
    assert skip.counts == {"missing-field": 1} and f"{ents}:4: bad" in skip.report()


@pytest.mark.parametrize("reader", [read_tabular, read_entities])
def test_tsv_layouts_two_or_three_fields_or_a_named_header(tmp_path: Path, reader: Callable) -> None:
    plain = tmp_path / "plain.tsv"
    plain.write_text("cat\tA small feline.\ncat\tnoun\tA pet.\nbad\n")
    skip = SkipLog()
    assert [(e.word, e.pos, e.definition) for e in reader(plain, skip)] == [
        ("cat", "", "A small feline."),
        ("cat", "noun", "A pet."),
    ]
    assert skip.counts == {"missing-field": 1} and f"{plain}:3: bad" in skip.report()
    named = tmp_path / "named.tsv"  # columns by name; a tab inside the last column stays in the value
    named.write_text("Word\tSource\tPart of speech\tDefinition\ncat\tme\tn.\tA small\tfeline.\ndog\tnoun\tA pet.\n")
    skip = SkipLog()
    assert [(e.word, e.pos, e.definition) for e in reader(named, skip)] == [("cat", "noun", "A small feline.")]
    assert skip.counts == {"missing-field": 1} and f"{named}:3: dog" in skip.report()
    two = tmp_path / "two.tsv"
    two.write_text("word\tdefinition\nword\tA unit of language.\n")
    assert [(e.word, e.pos, e.definition) for e in reader(two, SkipLog())] == [("word", "", "A unit of language.")]


@needs(WORDSET)
def test_wordset_reads_alike_as_dictionary_and_as_entities() -> None:
    skip = SkipLog()
    rows = [(e.word, e.pos, e.definition) for e in islice(read_entities(WORDSET, skip), 1000)]
    assert rows == [(e.word, e.pos, e.definition) for e in islice(read_tabular(WORDSET, SkipLog()), 1000)]
    assert rows[0][:2] == ("A", "noun") and skip.total == 0


@pytest.mark.parametrize(
    ("reader", "good"),
    [
        (read_tabular, '{"word": "a", "definition": "x"}'),
        (read_wiktionary, '{"word": "a", "senses": [{"glosses": ["x"]}]}'),
        (read_entities, "a\tx"),
    ],
)
def test_strict_mode_names_file_line_and_value(tmp_path: Path, reader: Callable, good: str) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text(f'{good}\n\n{{"word": "oops\n{good}\n')
    with pytest.raises(DefembError, match=rf"^{re.escape(str(path))}:3: [a-z-]+: {{\"word\": \"oops"):
        list(reader(path, SkipLog(strict=True)))


def test_line_cap_boundary_and_constant_memory(tmp_path: Path) -> None:
    path = tmp_path / "cap.tsv"
    path.write_bytes(b"a\tn\t" + b"x" * 12 + b"\nb\tn\t" + b"y" * 13 + b"\n")  # 16 and 17 bytes
    skip = SkipLog()
    assert [e.word for e in read_tabular(path, skip, max_line_bytes=16)] == ["a"]
    assert skip.counts == {"line-too-long": 1}
    huge = tmp_path / "huge.jsonl"
    with open(huge, "wb") as handle:
        handle.write(b'{"word": "')
        for _ in range(32):
            handle.write(b"z" * (1 << 20))  # a 32 MiB line, then a good one
        handle.write(b'"}\n{"word": "ok", "senses": [{"glosses": ["Fine."]}]}\n')
    tracemalloc.start()
    skip = SkipLog()
    assert [e.word for e in read_wiktionary(huge, skip)] == ["ok"]
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert skip.counts == {"line-too-long": 1} and peak < 8 << 20


def test_deeply_nested_json_is_malformed_not_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "deep.jsonl"
    path.write_text("[" * 200_000 + "\n")
    skip = SkipLog()
    assert list(read_wiktionary(path, skip)) == [] and skip.counts == {"malformed-json": 1}


def test_gcide_bad_files(tmp_path: Path) -> None:
    good = {"pos": [{"part_of_speech": "v. t.", "definitions": [{"text": "To test.", "examples": []}]}]}
    data = {
        "test": good,
        "a\na* (, n. raw": good,
        "nopos": {"entry": "nopos"},
        "empty": {"pos": [{"part_of_speech": "n.", "definitions": [{"text": "[1913 Webster]"}, {"examples": []}]}]},
    }
    (tmp_path / "words_A.json").write_text(json.dumps(data))
    (tmp_path / "words_B.json").write_text("{not json")
    skip = SkipLog()
    entries = list(read_gcide(skip, tmp_path))
    assert [(e.word, e.pos, e.definition, e.location) for e in entries] == [
        ("test", "verb", "To test.", "gcide:words_A.json:test")
    ]
    assert skip.counts == {"malformed-headword": 1, "missing-field": 2, "empty-definition": 1, "malformed-json": 1}
    with pytest.raises(DefembError, match=r"gcide:words_A.json:a\\na\* \(, n. raw: malformed-headword"):
        list(read_gcide(SkipLog(strict=True), tmp_path))
    with pytest.raises(DefembError, match="no GCIDE files"):
        read_gcide(SkipLog(), tmp_path / "missing")


def test_skip_log_keeps_five_examples_per_reason() -> None:
    skip = SkipLog()
    for line in range(1, 8):
        skip.add("empty-word", f"f.tsv:{line}", "x" * 200)
    assert skip.total == 7 and len(skip.examples["empty-word"]) == 5
    report = skip.report()
    assert "f.tsv:5:" in report and "f.tsv:6:" not in report and "... and 2 more" in report
    assert max(len(line) for line in report.splitlines()) < 120  # values are excerpted
    assert SkipLog().report() == "skipped nothing"


def test_read_source_specs(tmp_path: Path) -> None:
    path = tmp_path / "d.txt"
    path.write_text('{"word": "a", "definition": "b"}\n')
    assert [e.word for e in read_source(f"jsonl:{path}", SkipLog())] == ["a"]
    for spec, message in [
        ("nosuch:x", "unknown dictionary source 'nosuch:x'"),
        (f"wordnet:{tmp_path}", "is not a WordNet dict folder"),
        ("tsv", "unknown"),
        (f"tsv:{tmp_path}/nope.tsv", "nope.tsv' not found"),
        (f"gcide:{tmp_path}", "no GCIDE"),
    ]:
        with pytest.raises(DefembError, match=re.escape(message)):
            read_source(spec, SkipLog())


def test_cleaning_and_pos_names() -> None:
    assert clean_definition("A <b>bold</b>\n  word &amp; more{2}. [Obs.] [L. verbum.]\n[1913 Webster]") == (
        "A bold word & more. (obsolete)"
    )
    assert clean_definition("brackets ([ or ]) and Pb[CH3CO]2 stay; &lt;b&gt; stays text") == (
        "brackets ([ or ]) and Pb[CH3CO]2 stay; <b> stays text"
    )
    assert clean_definition("lost text1913 Webster]") == "lost text"
    cases = {
        "n.": "noun",
        "v. t. & i.": "verb",
        "a. & n.": "adjective and noun",
        "prop. n.": "proper noun",
        "3d pers. sing. pres.": "verb",
        "adj": "adjective",
        "name": "proper noun",
        "prep_phrase": "prepositional phrase",
        "particle": "particle",
        "v. t.  [L. x] To make.": "verb",
        "": "",
    }
    assert {raw: plain_pos(raw) for raw in cases} == cases


# ---------------------------------------------------------------- random input: every line is accounted for


def _line(fmt: str) -> st.SearchStrategy[bytes]:
    """Random bytes, random text, and random rows shaped like the format (so that entries do occur)."""
    text = st.text(max_size=25)
    plain = st.text("abyz .", min_size=1, max_size=8)
    odd = st.sampled_from(["", " ", "#", "word", "definition", "n.", "adj", "\ufeff", "é\tx"])
    field = st.one_of(plain, st.text(max_size=10), odd)
    sense = st.one_of(st.fixed_dictionaries({"glosses": st.lists(field, max_size=3)}), st.just({"tags": ["no-gloss"]}))
    row = st.lists(field, min_size=1, max_size=4).map("\t".join)
    structured = {
        "tsv": row,
        "entities": row,
        "jsonl": st.fixed_dictionaries({"word": field, "definition": field}, optional={"pos": field}),
        "wiktionary": st.fixed_dictionaries(
            {"word": field, "senses": st.lists(sense, min_size=1, max_size=3)},
            optional={"pos": field, "lang_code": st.sampled_from(["en", "de"])},
        ),
    }[fmt]
    if fmt in ("jsonl", "wiktionary"):
        structured = st.one_of(structured, st.dictionaries(st.sampled_from(["word", "pos", "senses"]), field))
        structured = structured.map(lambda record: json.dumps(record, ensure_ascii=False))
    raw = st.one_of(st.binary(max_size=70), text.map(str.encode), structured.map(str.encode))
    return raw.map(lambda b: b.replace(b"\n", b" "))


def _ignored(lines: list[bytes], fmt: str, cap: int) -> int:
    """Independent count of the lines a reader passes over without an entry or a skip."""
    count, first = 0, True
    for number, raw in enumerate(lines, start=1):
        if len(raw) > cap:
            continue
        raw = raw.removesuffix(b"\r").removeprefix(b"\xef\xbb\xbf" if number == 1 else b"")
        if not raw.strip():
            count += 1
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            continue
        if fmt == "entities" and text.lstrip().startswith("#"):
            count += 1
            continue
        names = [f.strip().lower() for f in text.split("\t")]
        count += fmt in ("tsv", "entities") and first and names[0] == "word" and "definition" in names
        first = False
    return count


READERS: dict[str, Callable[..., Iterator[Entry]]] = {
    "tsv": lambda p, s, cap: read_tabular(p, s, fmt="tsv", max_line_bytes=cap),
    "jsonl": lambda p, s, cap: read_tabular(p, s, fmt="jsonl", max_line_bytes=cap),
    "wiktionary": lambda p, s, cap: read_wiktionary(p, s, max_line_bytes=cap),
    "entities": lambda p, s, cap: read_entities(p, s, max_line_bytes=cap),
}


@pytest.mark.parametrize("fmt", sorted(READERS))
def test_random_lines_are_all_accounted_for(fmt: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    folder = tmp_path_factory.mktemp(fmt)
    cap = 100  # small enough for random lines to cross it

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(lines=st.lists(_line(fmt), max_size=12), final_newline=st.booleans())
    def check(lines: list[bytes], final_newline: bool) -> None:
        path = folder / "input"
        content = b"\n".join(lines) + (b"\n" if final_newline and lines else b"")
        path.write_bytes(content)
        skip = SkipLog()
        if b"\0" in content[:1024]:
            with pytest.raises(DefembError, match="looks binary"):
                list(READERS[fmt](path, skip, cap))
            return
        entries = list(READERS[fmt](path, skip, cap))
        numbers = [int(e.location.rsplit(":", 1)[1]) for e in entries]
        if fmt != "wiktionary":  # one entry per line at most; wiktionary yields one per gloss
            assert len(numbers) == len(set(numbers))
        assert all(1 <= n <= len(lines) for n in numbers)
        assert all(e.word == e.word.strip() and e.word and e.definition and "\n" not in e.definition for e in entries)
        line_skips = skip.total - skip.counts.get("sense-without-gloss", 0)
        assert len(set(numbers)) + line_skips + _ignored(lines, fmt, cap) == len(lines)

    check()


# ---------------------------------------------------------------- numbers


def test_number_entries_known_cases() -> None:
    surfaces = [
        "102",
        "Ġ102",
        "##7",
        "▁1999",
        "02",
        "007",
        "000",
        "1st",
        "2nd",
        "23rd",
        "4th",
        "11th",
        "11st",
        "2th",
        "1099",
        "1100",
        "2099",
        "2100",
        "abc",
        "²",
        "-3",
        "1.5",
        "1" * 40,
    ]
    full = [(e.word, e.pos, e.definition) for e in number_entries(surfaces)]
    assert full[:2] == [
        ("102", "number", "one hundred and two; a three-digit number, the number after 101 and before 103"),
        ("7", "number", "seven; a one-digit number, the number after 6 and before 8"),
    ]
    year = "the year nineteen ninety-nine; a four-digit number, the year after 1998 and before 2000"
    assert ("1999", "number", year) in full
    assert ("1st", "ordinal number", "first; the ordinal before 2nd") in full
    assert ("23rd", "ordinal number", "twenty-third; the ordinal after 22nd and before 24th") in full
    assert ("000", "number", "the digits zero zero zero; the number zero written with leading zeros") in full
    got = [(w, p, d.split(";")[0] if not d.startswith("the digits") else d) for w, p, d in full]
    assert got[:3] == [
        ("102", "number", "one hundred and two"),
        ("7", "number", "seven"),
        ("1999", "number", "one thousand, nine hundred and ninety-nine"),
    ]
    defs = {(word, definition) for word, _, definition in got}
    assert ("1999", "the year nineteen ninety-nine") in defs and ("1100", "the year eleven hundred") in defs
    assert ("2099", "the year twenty ninety-nine") in defs
    assert [w for w, _, d in got if d.startswith("the year")] == ["1999", "1100", "2099"]  # not 1099, 2100
    assert ("02", "the digits zero two; the number two written with a leading zero") in defs
    assert ("007", "the digits zero zero seven; the number seven written with leading zeros") in defs
    assert ("000", "the digits zero zero zero; the number zero written with leading zeros") in defs
    ordinals = [(w, d) for w, p, d in got if p == "ordinal number"]
    assert ordinals == [
        ("1st", "first"),
        ("2nd", "second"),
        ("23rd", "twenty-third"),
        ("4th", "fourth"),
        ("11th", "eleventh"),
    ]
    assert not {w for w, _, _ in got} & {"abc", "²", "-3", "1.5", "11st", "2th"}
    assert ("1" * 40, "the digits " + " ".join(["one"] * 40)) in defs
    assert len([w for w, _, _ in got if w == "102"]) == 1  # "Ġ102" is the same surface


def _spoken(text: str) -> str:
    """Compare spellings across conventions: NeMo writes no "and", hyphens or commas."""
    return " ".join(text.replace("-", " ").replace(",", " ").replace(" and ", " ").split())


@needs(NEMO)
def test_numbers_agree_with_nemo_test_cases() -> None:
    checked = 0
    for name in ["text_normalization__test_cases_cardinal.txt", "text_normalization__test_cases_ordinal.txt"]:
        for line in (NEMO / name).read_text().splitlines():
            written, _, spoken = line.partition("~")
            # NeMo reads long comma-less numbers digit by digit ("13000~one three zero zero zero").
            if not re.fullmatch(r"[0-9]+(st|nd|rd|th)?", written) or (len(written) > 4 and written.isdigit()):
                continue
            entries = list(number_entries([written]))
            if written.startswith("0"):
                assert spoken in entries[0].definition
            elif spoken.split()[-1] in ("th", "st", "nd", "rd"):  # an invalid suffix, read literally by NeMo
                assert entries == []
            else:
                assert _spoken(entries[0].definition.split(";")[0]) == _spoken(spoken), line
            checked += 1
    itn = (NEMO / "inverse_text_normalization__test_cases_cardinal.txt").read_text().splitlines()
    for line in itn:
        spoken, _, written = line.partition("~")
        # Skip Indian numbering (crore, lakh) and year-style hundreds ("eleven hundred", "twenty one hundred").
        if not written.isdigit() or re.search(r"crore|lakh|(?:teen|ty|ten|eleven|twelve)(?: \w+)? hundred", spoken):
            continue
        assert _spoken(next(number_entries([written])).definition.split(";")[0]) == _spoken(spoken), line
        checked += 1
    assert checked >= 35


# ---------------------------------------------------------------- unreadable files


def _gzipped_lines(path: Path, count: int) -> bytes:
    rows = "".join(json.dumps({"word": f"w{i}", "senses": [{"glosses": [f"Gloss {i} " + "x" * (i % 97)]}]}) + "\n"
                   for i in range(count))
    data = gzip.compress(rows.encode(), mtime=0)
    path.write_bytes(data)
    return data


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda data: data[: len(data) // 2], r":\d+: corrupt or truncated gzip data \(Compressed file ended"),
        (lambda data: data[:40] + bytes(b ^ 0x55 for b in data[40:80]) + data[80:], r":\d+: corrupt or truncated"),
        (lambda data: b"plain text, not gzip\n", r":1: corrupt or truncated gzip data \(Not a gzipped file"),
    ],
    ids=["truncated", "corrupted", "not-gzip"],
)
def test_damaged_gzip_is_one_error_naming_file_and_line(tmp_path: Path, damage: Callable, message: str) -> None:
    path = tmp_path / "dump.jsonl.gz"
    path.write_bytes(damage(_gzipped_lines(path, 5000)))
    with pytest.raises(DefembError, match=rf"^{re.escape(str(path))}{message}") as caught:
        list(read_wiktionary(path, SkipLog()))
    assert "\n" not in str(caught.value)
