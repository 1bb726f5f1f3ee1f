"""Definition corpus: prompts, exact word positions for every tokenizer family, build, resume, coverage."""

from __future__ import annotations

import gzip
import json
import re

import pytest

from defemb.cli import main
from defemb.config import CorpusConfig
from defemb.corpus import build as build_module
from defemb.corpus.build import Tokenizing, build_corpus, in_validation, make_records
from defemb.corpus.coverage import coverage, covered_ids
from defemb.corpus.prompts import build_prompt, casing, variants
from defemb.dictionaries import Entry, SkipLog
from defemb.dictionaries import lines as lines_module
from defemb.tokens import surface

ENTRIES = [
    Entry("discomfort", "noun", "a feeling of discomfort; being uncomfortable", "test", "t:1"),
    Entry("Sediment", "noun", "matter that settles to the bottom of a liquid", "test", "t:2"),
    Entry("NASA", "proper noun", "the space agency of the United States", "test", "t:3"),
    Entry("102", "number", "one hundred and two", "numbers", "numbers:102"),
    Entry("park", "noun", "a park is a public garden; parks are green", "test", "t:4"),
]


def test_casing_and_variants():
    assert [casing(w) for w in ("park", "Park", "NASA", "iPhone", "102", "A")] == [
        "lowercase", "capitalised", "uppercase", "mixed case", "", "capitalised"]
    assert variants("NASA") == ["NASA", "nasa", "Nasa"]
    assert variants("park") == ["park", "Park"]
    assert variants("Park", str.lower) == ["Park"]  # an uncased tokenizer cannot tell them apart


def test_prompt_layout_and_spans():
    prompt = build_prompt(ENTRIES[4], "bpe")
    assert prompt.text == "park ; park ; Park (noun, lowercase) : a park is a public garden; parks are green"
    assert [prompt.text[s:e] for s, e in prompt.spans] == ["park", "park", "Park", "park"]  # not "parks"
    assert prompt.forms[0] == "internal" and set(prompt.forms[1:]) == {"initial"}
    assert prompt.text[prompt.prefix_end :] == ENTRIES[4].definition
    sentencepiece = build_prompt(ENTRIES[4], "sentencepiece")
    assert sentencepiece.text.startswith("park ; Park ; -park (noun, lowercase) : ")
    assert sentencepiece.forms[:3] == ("initial", "initial", "internal")
    assert build_prompt(ENTRIES[4], "wordpiece").text.startswith("park ; Park (noun")


@pytest.mark.parametrize("family", ["bert", "roberta", "gpt2", "t5", "t5gemma", "llama"])
def test_word_positions_are_exactly_the_words_tokens(tiny_model_dir, family):
    tok = Tokenizing.load(str(tiny_model_dir(family)), 128)
    skips = SkipLog()
    records = make_records(ENTRIES, tok, skips)
    assert len(records) == len(ENTRIES) and skips.total == 0
    for record in records:
        tokens = tok.tokenizer.convert_ids_to_tokens(record["input_ids"])
        offsets = tok.tokenizer.backend_tokenizer.encode(record["prompt"]).offsets
        assert record["input_ids"] == tok.tokenizer(record["prompt"])["input_ids"]
        assert len(record["spans"]) == len(record["word_positions"]) == len(record["forms"])
        for (start, end), positions, form in zip(record["spans"], record["word_positions"], record["forms"],
                                                 strict=True):
            word = record["prompt"][start:end]
            assert word.lower() == record["word"].lower()
            assert positions == list(range(positions[0], positions[-1] + 1))  # contiguous
            pieces = [surface(tokens[p]) for p in positions]
            if tok.tokenizer.unk_token not in pieces:  # tiny vocabularies lack some letters ("N")
                assert "".join(pieces) == tok.normalise(word).replace(" ", "")
            for k, (s, e) in enumerate(offsets):  # no unmarked token carries a character of the word
                if k not in positions and e > s and tokens[k] not in ("▁", "Ġ"):
                    assert e <= start or s >= end
            first = tokens[positions[0]]
            if tok.kind in ("bpe", "sentencepiece"):  # a lone marker token before the word marks it too
                marker = "Ġ" if tok.kind == "bpe" else "▁"
                initial = first.startswith(marker) or tokens[positions[0] - 1] == marker
                assert initial == (form == "initial")
            if tok.kind == "wordpiece":
                assert not first.startswith("##")


@pytest.mark.parametrize(("family", "marker"), [("roberta", "Ġ"), ("t5", "▁"), ("llama", "▁")])
def test_both_forms_are_covered(tiny_model_dir, family, marker):
    tok = Tokenizing.load(str(tiny_model_dir(family)), 128)
    record = make_records([ENTRIES[4]], tok, SkipLog())[0]
    assert "internal" in record["forms"]
    firsts = {tok.tokenizer.convert_ids_to_tokens(record["input_ids"][p[0]]) for p in record["word_positions"]}
    assert any(t.startswith(marker) for t in firsts) and any(not t.startswith(marker) for t in firsts)


def test_long_definitions_are_cut_at_a_word_without_cutting_spans(tiny_model_dir):
    tok = Tokenizing.load(str(tiny_model_dir("bert")), 24)
    long = Entry("park", "noun", " ".join(["the green park near the old station"] * 20), "test", "t:9")
    record = make_records([long], tok, SkipLog())[0]
    assert len(record["input_ids"]) <= 24 and record["truncated"]
    assert long.definition.startswith(record["definition"]) and record["definition"]
    assert long.definition[len(record["definition"])] == " "  # ends at a word boundary
    assert all(e <= len(record["prompt"]) for _, e in record["spans"])
    assert record["spans"][0] == [0, 4]


def test_word_too_long_for_the_budget_is_skipped_and_counted(tiny_model_dir):
    tok = Tokenizing.load(str(tiny_model_dir("bert")), 8)
    skips = SkipLog()
    assert make_records([Entry("extraordinarily", "adverb", "very", "test", "t:7")], tok, skips) == []
    assert skips.counts == {"word-too-long": 1}
    assert skips.examples["word-too-long"][0].location == "t:7"


def test_split_is_deterministic_by_headword():
    words = [f"word{i}" for i in range(2000)]
    held = [w for w in words if in_validation(w, 5.0)]
    assert 50 < len(held) < 150
    assert held == [w for w in words if in_validation(w, 5.0)]
    assert in_validation("Park", 5.0) == in_validation("park", 5.0)


def _tsv(tmp_path, rows: int = 60):
    path = tmp_path / "dict.tsv"
    lines = ["word\tpos\tdefinition"] + [f"park{i}\tnoun\ta green place number {i}" for i in range(rows)]
    lines += ["park\tnoun\ta public garden", "bad line without tabs", "station\tnoun\t", "garden\tnoun\tplants"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _read(out):
    return {split: (out / f"{split}.jsonl").read_text(encoding="utf-8") for split in ("train", "valid")}


def test_build_writes_splits_stats_and_refuses_to_overwrite(tiny_model_dir, tmp_path):
    config = CorpusConfig(tokenizer=str(tiny_model_dir("bert")), sources=[f"tsv:{_tsv(tmp_path)}"], valid_percent=20)
    out = tmp_path / "corpus"
    stats = build_corpus(config, out)
    files = _read(out)
    train = [json.loads(line) for line in files["train"].splitlines()]
    valid = [json.loads(line) for line in files["valid"].splitlines()]
    assert {r["word"] for r in train}.isdisjoint({r["word"] for r in valid}) and valid
    assert stats["records"] == {"train": len(train), "valid": len(valid)}
    assert stats["skipped"] == {"missing-field": 1, "empty-definition": 1}
    assert stats["sources"]["numbers"] > 0  # every numeric vocabulary token got a definition
    saved = json.loads((out / "config.json").read_text())
    assert saved["tokenizer_kind"] == "wordpiece" and len(saved["vocab_hash"]) == 64
    assert not (tmp_path / "corpus.partial").exists()
    with pytest.raises(Exception, match="already exists"):
        build_corpus(config, out)


def test_interrupted_build_resumes_to_the_same_output(tiny_model_dir, tmp_path, monkeypatch):
    config = CorpusConfig(tokenizer=str(tiny_model_dir("gpt2")), sources=[f"tsv:{_tsv(tmp_path, 200)}"])
    reference = tmp_path / "reference"
    monkeypatch.setattr(build_module, "CHUNK_ENTRIES", 32)
    build_corpus(config, reference)

    calls = {"n": 0}
    real = build_module.make_records

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    out = tmp_path / "corpus"
    monkeypatch.setattr(build_module, "make_records", interrupted)
    with pytest.raises(KeyboardInterrupt):
        build_corpus(config, out)
    assert not out.exists()  # nothing that looks complete
    assert len(list((tmp_path / "corpus.partial").glob("*.stats.json"))) == 3
    with pytest.raises(Exception, match="--resume"):
        build_corpus(config, out)
    monkeypatch.setattr(build_module, "make_records", real)
    calls["n"] = 0
    build_corpus(config, out, resume=True)
    assert _read(out) == _read(reference)
    assert json.loads((out / "stats.json").read_text()) == json.loads((reference / "stats.json").read_text())


def test_coverage_counts_word_tokens(tiny_model_dir, tmp_path):
    model = str(tiny_model_dir("bert"))
    out = tmp_path / "corpus"
    build_corpus(CorpusConfig(tokenizer=model, sources=[f"tsv:{_tsv(tmp_path)}"]), out)
    result = coverage(out, model, "index")
    mask = covered_ids(out, 500)
    expected = set()
    for split in ("train", "valid"):
        for line in (out / f"{split}.jsonl").read_text().splitlines():
            record = json.loads(line)
            expected |= {record["input_ids"][p] for group in record["word_positions"] for p in group}
    assert set(mask.nonzero()[0].tolist()) == expected
    assert result["vocabulary"]["covered"] == len(expected)  # word tokens are never special tokens
    assert sum(b["total"] for b in result["bands"].values()) == result["vocabulary"]["total"]
    vocab = Tokenizing.load(model, 128).tokenizer.get_vocab()
    whole_numbers = {i for t, i in vocab.items() if t.isdigit()}  # word-initial forms: every one is defined
    assert whole_numbers <= expected and result["numeric"]["covered"] >= len(whole_numbers) > 0


def test_cli_strict_names_file_and_line(tiny_model_dir, tmp_path, capsys):
    source = _tsv(tmp_path)
    out = tmp_path / "corpus"
    code = main(["corpus", "build", "--tokenizer", str(tiny_model_dir("bert")), "--source", f"tsv:{source}",
                 "--out", str(out), "--strict"])
    assert code == 2 and not out.exists()
    err = capsys.readouterr().err.strip()
    assert f"{source}:63" in err and "bad line without tabs" in err
    assert main(["corpus", "build", "--tokenizer", str(tiny_model_dir("bert")), "--source", f"tsv:{source}",
                 "--out", str(out)]) == 0
    assert "missing-field" in capsys.readouterr().out
    assert main(["corpus", "stats", str(out), "--tokenizer", str(tiny_model_dir("bert"))]) == 0
    assert main(["corpus", "build", "--tokenizer", str(tiny_model_dir("bert")), "--source", "nope:x",
                 "--out", str(tmp_path / "x")]) == 2


def test_saved_truncation_and_padding_are_ignored(minilm_dir):
    # MiniLM's tokenizer.json pads and truncates to 128: records must hold the real ids, unpadded.
    tok = Tokenizing.load(str(minilm_dir), 512)
    long = Entry("park", "noun", " ".join(["a green place in the city"] * 40), "test", "t:1")
    short, cut = make_records([ENTRIES[4], long], tok, SkipLog())
    assert short["input_ids"] == tok.tokenizer(short["prompt"])["input_ids"]
    assert tok.tokenizer.pad_token_id not in short["input_ids"] and len(short["input_ids"]) < 30
    assert 128 < len(cut["input_ids"]) <= 512 and cut["input_ids"][-1] == tok.tokenizer.sep_token_id


def _interrupt_after(monkeypatch, count: int) -> None:
    """Make the dictionary readers raise KeyboardInterrupt (Ctrl-C) after ``count`` entries, counted over every
    read (the build reads its sources twice: once to index the definitions cross-references point to)."""
    real = build_module.read_source
    read = [0]

    def reader(spec, skips):
        for entry in real(spec, skips):
            if read[0] == count:
                raise KeyboardInterrupt
            read[0] += 1
            yield entry

    monkeypatch.setattr(build_module, "read_source", reader)


def test_ctrl_c_says_what_was_kept_and_resume_finishes(tiny_model_dir, tmp_path, monkeypatch, capsys):
    argv = ["corpus", "build", "--tokenizer", str(tiny_model_dir("bert")), "--source", f"tsv:{_tsv(tmp_path, 200)}",
            "--out", str(tmp_path / "corpus")]
    monkeypatch.setattr(build_module, "CHUNK_ENTRIES", 32)
    source = _tsv(tmp_path, 200)
    entries = sum(1 for _ in build_module.read_source(f"tsv:{source}", SkipLog()))
    _interrupt_after(monkeypatch, 2 * entries + 100)  # the index's two passes, then three chunks done
    assert main(argv) == 130
    partial = tmp_path / "corpus.partial"
    assert capsys.readouterr().err.splitlines()[-1] == (f"defemb: interrupted; partial work kept in '{partial}'; "
                                               "rerun with --resume to continue, or --force to start over")
    assert len(list(partial.glob("*.stats.json"))) == 3
    monkeypatch.undo()
    assert main([*argv, "--resume"]) == 0 and not partial.exists() and (tmp_path / "corpus" / "train.jsonl").exists()


@pytest.mark.parametrize("entries", [5, 70, 140])  # in the index's passes; in the build's, before a chunk is full
def test_ctrl_c_before_the_first_chunk_leaves_nothing(tiny_model_dir, tmp_path, monkeypatch, capsys, entries):
    _interrupt_after(monkeypatch, entries)
    assert main(["corpus", "build", "--tokenizer", str(tiny_model_dir("bert")), "--source", f"tsv:{_tsv(tmp_path)}",
                 "--out", str(tmp_path / "corpus")]) == 130
    assert capsys.readouterr().err.splitlines()[-1] == "defemb: interrupted; no output was written"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dict.tsv"]


def test_truncated_gzip_source_is_one_line_and_leaves_nothing(tiny_model_dir, tmp_path, capsys):
    rows = "".join(json.dumps({"word": f"park{i}", "definition": f"a green place {i}"}) + "\n" for i in range(3000))
    data = gzip.compress(rows.encode(), mtime=0)
    source = tmp_path / "defs.jsonl.gz"
    source.write_bytes(data[: len(data) // 2])
    assert main(["corpus", "build", "--tokenizer", str(tiny_model_dir("bert")), "--source", f"jsonl:{source}",
                 "--out", str(tmp_path / "corpus")]) == 2
    err = capsys.readouterr().err.splitlines()[-1]
    assert re.fullmatch(rf"defemb: error: {re.escape(str(source))}:\d+: corrupt or truncated gzip data .*", err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["defs.jsonl.gz"]  # no corpus.partial


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ("no tabs here\nnor here\n\tnoun\tno word\n", r"every input item was skipped \(missing-field 2, empty-word 1; "
         r"first: .*defs.tsv:1: missing-field: 'no tabs here'\)"),
        ("\n", r"the sources hold no definitions"),
    ],
    ids=["all-skipped", "empty"],
)
def test_a_build_without_records_is_an_error_and_writes_nothing(tiny_model_dir, tmp_path, capsys, lines, message):
    source = tmp_path / "defs.tsv"
    source.write_text(lines, encoding="utf-8")
    assert main(["corpus", "build", "--tokenizer", str(tiny_model_dir("bert")), "--source", f"tsv:{source}",
                 "--no-numbers", "--out", str(tmp_path / "corpus")]) == 2
    err = capsys.readouterr().err.splitlines()[-1]
    assert re.fullmatch(rf"defemb: error: the build produced no records: .*{message}.*", err), err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["defs.tsv"]


def test_zero_width_pieces_count_against_the_budget(tiny_model_dir):
    # Tiny BART splits "park ; park" into "... k", "Ġ", ";": the lone zero-width "Ġ" pieces made the
    # prompt longer in tokens than in visible tokens, and the cut indexed past the visible ones.
    for max_tokens in range(16, 48):
        tok = Tokenizing.load(str(tiny_model_dir("bart")), max_tokens)
        skips = SkipLog()
        records = make_records([ENTRIES[4]], tok, skips)
        assert len(records) + skips.total == 1
        for record in records:
            assert len(record["input_ids"]) <= max_tokens
            assert ENTRIES[4].definition.startswith(record["definition"])


def test_two_column_tsv_source_builds(tiny_model_dir, tmp_path):
    source = tmp_path / "glossary.tsv"
    source.write_text("park\ta public garden\nstation\ta place where trains stop\n", encoding="utf-8")
    config = CorpusConfig(tokenizer=str(tiny_model_dir("bert")), sources=[f"tsv:{source}"], numbers=False)
    stats = build_corpus(config, tmp_path / "corpus")
    assert sum(stats["records"].values()) == 2 and stats["skipped"] == {}


def _hostile(tmp_path, case: str) -> list[str]:
    """Arguments after `corpus build --tokenizer T` (or for `corpus stats`) that set up one bad input."""
    source = tmp_path / "defs.tsv"
    source.write_text("park\ta public garden\n", encoding="utf-8")
    out = ["--out", str(tmp_path / "corpus")]
    if case == "binary":
        (tmp_path / "a.out").write_bytes(b"\x7fELF\x02\x01\x01\x00\x00\x00park\tnoun\tx\n" * 50)
        return ["--source", f"tsv:{tmp_path / 'a.out'}", *out]
    if case == "directory":
        return ["--source", f"wiktionary:{tmp_path}", *out]
    if case == "gcide-folder":
        (tmp_path / "g" / "words_A.json").mkdir(parents=True)
        return ["--source", f"gcide:{tmp_path / 'g'}", *out]
    if case == "long-line":
        source.write_bytes(b"park\tnoun\t" + b"x" * 10_000_000 + b"\n")
    if case == "latin-1":
        source.write_bytes("café\tnoun\ta place for coffee\n".encode("latin-1"))
    if case in ("long-line", "latin-1", "unreadable"):
        return ["--source", f"tsv:{source}", "--no-numbers", *out]
    if case == "partial":
        (tmp_path / "corpus.partial").mkdir()
        (tmp_path / "corpus.partial" / "config.json").write_bytes(b"{\xff damaged")
        return ["--source", f"tsv:{source}", *out]
    assert case == "partial-file"
    (tmp_path / "corpus.partial").write_text("mine")
    return ["--source", f"tsv:{source}", "--force", *out]


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("binary", r"'.*a\.out' looks binary \(NUL bytes in its first KB\), not a dictionary; .*"),
        ("directory", r"dictionary source 'wiktionary:.*' is a directory; give a file"),
        ("gcide-folder", r"cannot read '.*words_A\.json': Is a directory"),
        ("unreadable", r"cannot open '.*defs\.tsv': Permission denied"),
        ("long-line", r"the build produced no records: .*\(line-too-long 1; first: .*defs\.tsv:1: line-too-long: "
         r"'park\\tnoun\\txxx+…'\).*"),
        ("latin-1", r".*\(non-utf8 1; first: .*defs\.tsv:1: non-utf8: 'caf\\xe9\\tnoun\\ta place for coffee'\).*"),
        ("partial", r"an unfinished build is in '.*corpus\.partial'; its settings or inputs differ .*"),
        ("partial-file", r"'.*corpus\.partial' is a file, but the build keeps its unfinished work there; .*"),
    ],
)
def test_hostile_build_inputs_are_one_line(tiny_model_dir, tmp_path, monkeypatch, capsys, case, message):
    if case == "unreadable":  # chmod 000 does not stop root, so the refusal is simulated
        def refuse(path, *args, **kwargs):
            raise PermissionError(13, "Permission denied", str(path))

        monkeypatch.setattr(lines_module, "open", refuse, raising=False)
    argv = ["corpus", "build", "--tokenizer", str(tiny_model_dir("bert")), *_hostile(tmp_path, case)]
    assert main(argv) == 2
    err = capsys.readouterr().err.splitlines()[-1]
    assert re.fullmatch(f"defemb: error: {message}", err) and len(err) < 500, err
    assert not (tmp_path / "corpus").exists()


def test_partial_build_with_a_damaged_config_starts_over_with_force(tiny_model_dir, tmp_path):
    argv = ["corpus", "build", "--tokenizer", str(tiny_model_dir("bert")), *_hostile(tmp_path, "partial")]
    (tmp_path / "corpus.partial" / "config.json").unlink()
    (tmp_path / "corpus.partial" / "config.json").mkdir()  # not even a file
    assert main(argv) == 2
    assert main([*argv, "--force"]) == 0 and (tmp_path / "corpus" / "train.jsonl").exists()


def test_stats_json_is_checked_before_the_work(tiny_model_dir, tmp_path, capsys):
    model = str(tiny_model_dir("bert"))
    build_corpus(CorpusConfig(tokenizer=model, sources=[f"tsv:{_tsv(tmp_path)}"]), tmp_path / "corpus")
    stats = ["corpus", "stats", str(tmp_path / "corpus"), "--tokenizer", model, "--json"]
    assert main([*stats, str(tmp_path / "c.json")]) == 0
    capsys.readouterr()
    for target, extra, message in [
        ("c.json", [], "output '.*c.json' already exists; pass --force to overwrite it"),
        ("corpus", ["--force"], "cannot write '.*corpus': it is a directory; give a file name"),
        ("dict.tsv/c.json", [], "cannot write '.*c.json': '.*dict.tsv' is not a directory"),
    ]:
        assert main([*stats, str(tmp_path / target), *extra]) == 2
        assert re.fullmatch(f"defemb: error: {message}", capsys.readouterr().err.splitlines()[-1])
    assert main([*stats, str(tmp_path / "c.json"), "--force"]) == 0
