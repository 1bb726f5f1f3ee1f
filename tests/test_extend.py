"""`defemb extend`: new tokens whose rows are what DefinitionEMB predicts from their definitions, on every family."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModel, AutoTokenizer

from defemb.cli import main
from defemb.config import CorpusConfig, TrainConfig
from defemb.corpus.build import Tokenizing, build_corpus, make_records
from defemb.dictionaries import Entry, SkipLog
from defemb.method.train import train
from defemb.models import get_table, load_model
from tiny_models import FAMILY_FACTS

WORDS = ["park", "garden", "station", "market", "city", "river", "office", "library", "green"]
NEW = {"gardenpark": "a park with a garden in the city", "riverkeep": "a river station in the city"}


def write_dictionary(folder):
    tsv = folder / "dict.tsv"
    rows = [f"{w}\tnoun\ta {w} is a place in the city where people meet {k}" for k in range(5) for w in WORDS]
    tsv.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return tsv


@pytest.fixture(scope="module")
def trained_run(tiny_model_dir, tmp_path_factory):
    """``trained_run(family) -> (model dir, run dir)``: a 5-step DefinitionEMB run, built once per family."""
    cache = {}

    def factory(family: str):
        if family not in cache:
            folder = tmp_path_factory.mktemp(f"extend-{family}")
            model = str(tiny_model_dir(family))
            build_corpus(CorpusConfig(tokenizer=model, sources=[f"tsv:{write_dictionary(folder)}"], numbers=False),
                         folder / "corpus")
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                train(TrainConfig(model=model, corpus=str(folder / "corpus"), steps=5, eval_every=5), folder / "run")
            finally:
                torch.set_num_threads(threads)  # later tests (resume bit-identity) compare against subprocesses
            cache[family] = (model, folder / "run")
        return cache[family]

    return factory


def expected_row(run, word: str, definition: str) -> np.ndarray:
    """The row DefinitionEMB predicts for a new word, computed here from the run's body and W by hand: hidden
    state at the first hidden occurrence (encoder: one mask for the whole word), after the first sentinel
    (encoder-decoder), after the definition with the word left out (decoder). # (h,)"""
    loaded = load_model(str(run / "model"))
    W = load_file(run / "head.safetensors")["weight"]  # (h_e, h_s)
    tok = Tokenizing.load(str(run / "model"), 128)
    record = make_records([Entry(word, "noun", definition, "test", "test:1")], tok, SkipLog())[0]
    ids, groups = record["input_ids"], record["word_positions"]
    word_positions = {p for g in groups for p in g}
    own = {ids[p] for p in word_positions}
    copied = {p for p, t in enumerate(ids) if t in own and p not in word_positions}  # hidden, as in training
    kind, tokenizer = loaded.kind, loaded.tokenizer
    with torch.no_grad():
        if kind == "encoder":
            keep, at = [], None
            for p, t in enumerate(ids):
                starts = [g for g in groups if g[0] == p]
                if starts:
                    at = len(keep) if at is None else at
                    keep.append(tokenizer.mask_token_id)
                elif p in copied:
                    keep.append(tokenizer.mask_token_id)
                elif p not in word_positions:
                    keep.append(t)
            state = loaded.model.base_model(input_ids=torch.tensor([keep])).last_hidden_state[0, at]
        elif kind == "decoder":
            context = [t for p, t in enumerate(ids) if p not in word_positions | copied]
            state = loaded.model.base_model(input_ids=torch.tensor([context])).last_hidden_state[0, -1]
        else:
            sentinel = [tokenizer.convert_tokens_to_ids(f"<extra_id_{k}>") for k in range(len(groups))]
            if tokenizer.mask_token_id is not None and "<extra_id_0>" not in tokenizer.get_vocab():
                sentinel = [tokenizer.mask_token_id] * len(groups)
            encoder_ids = []
            for p, t in enumerate(ids):
                k = next((k for k, g in enumerate(groups) if g[0] == p), None)
                if k is not None:
                    encoder_ids.append(sentinel[k])
                elif p not in word_positions:
                    encoder_ids.append(t)
            start = loaded.model.config.decoder_start_token_id
            out = loaded.model(input_ids=torch.tensor([encoder_ids]), decoder_input_ids=torch.tensor([[start,
                               sentinel[0]]]), output_hidden_states=True)
            state = out.decoder_hidden_states[-1][0, 1]
    return (W @ state).numpy()


def extend_cli(model, run, folder, *extra):
    entities = folder / "entities.tsv"
    entities.write_text("".join(f"{w}\tnoun\t{d}\n" for w, d in NEW.items()) + "blorf\tnot a definition line\n",
                        encoding="utf-8")
    task = folder / "task.txt"
    task.write_text("The gardenpark is near the riverkeep station.\nA riverkeep, a gardenpark and a park!\n"
                    "Blorfwizzle blorfwizzle; qwertyuiop once.\n", encoding="utf-8")
    return main(["extend", model, "--run", str(run), "--task-data", str(task), "--entities", str(entities),
                 *extra])


@pytest.mark.parametrize("family", ["bert", "roberta", "gpt2", "t5", "llama"])
def test_extend_rows_are_what_definitionemb_predicts(trained_run, tmp_path, family, capsys):
    model, run = trained_run(family)
    out = tmp_path / "extended"
    assert extend_cli(model, run, tmp_path, "--out", str(out)) == 0
    assert "added 2 tokens" in capsys.readouterr().out
    tokenizer = AutoTokenizer.from_pretrained(out)
    with open(out / "added.tsv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    assert [r["word"] for r in rows] == ["gardenpark", "riverkeep"]  # by count, then alphabetically
    assert [r["definition"] for r in rows] == list(NEW.values()) and all(r["count"] == "2" for r in rows)
    assert all(len(r["neighbours"].split()) == 5 and r["piece_ids"] for r in rows)
    ids = [int(r["id"]) for r in rows]
    for word, i in zip(NEW, ids, strict=True):
        # running text: the leading-space form (BPE/SentencePiece) or the whole word (WordPiece) is one token
        text = tokenizer(f"a {word} here", add_special_tokens=False)["input_ids"]
        assert i in text and [t for t in text if t != i] == tokenizer("a here", add_special_tokens=False)["input_ids"]
        assert tokenizer.decode(text) == f"a {word} here"
    extended = load_model(str(out))
    table = json.loads((out / "defemb.json").read_text())["table"]
    E = get_table(extended.model, table)
    assert E.shape[0] >= len(tokenizer)
    for word, i in zip(NEW, ids, strict=True):
        np.testing.assert_allclose(E[i], expected_row(run, word, NEW[word]), rtol=1e-4, atol=1e-5)
    if FAMILY_FACTS[family]["tied_output"] is False:  # untied head: the new output rows are predicted too
        np.testing.assert_array_equal(get_table(extended.model, "output")[ids], E[ids])
    original = AutoModel.from_pretrained(model).get_input_embeddings().weight.detach().numpy()
    np.testing.assert_array_equal(get_table(extended.model, "input")[: len(original)], original)


def similarity_sets(folder):
    sets = folder / "sets"
    sets.mkdir()
    pairs = [("gardenpark", "park", 9.0), ("gardenpark", "garden", 8.0), ("riverkeep", "river", 7.5),
             ("riverkeep", "station", 6.0), ("gardenpark", "money", 1.0), ("riverkeep", "dog", 2.0),
             ("park", "garden", 7.0), ("city", "river", 4.0), ("money", "dog", 0.5), ("office", "library", 5.0)]
    (sets / "sim.txt").write_text("".join(f"{a}\t{b}\t{s}\n" for a, b, s in pairs), encoding="utf-8")
    return sets


def test_wordsim_add_tokens_scores_four_initialisations(trained_run, tmp_path):
    from defemb.extend import extension_from_checkpoint, initialisations

    model, run = trained_run("bert")
    extended = tmp_path / "extended"
    assert extend_cli(model, run, tmp_path, "--out", str(extended)) == 0
    sets = similarity_sets(tmp_path)
    assert main(["evaluate", "wordsim", "--add-tokens", str(extended), "--sets", str(sets), "--min-pairs", "3",
                 "--out", str(tmp_path / "ws")]) == 0
    assert main(["evaluate", "wordsim", "--models", f"original={model}", "--sets", str(sets),
                 "--out", str(tmp_path / "plain")]) == 0
    metrics = {p.parent.parent.name: json.loads(p.read_text())["metrics"]
               for p in (tmp_path / "ws").rglob("result.json")}
    assert sorted(metrics) == ["definitionemb", "desc_init", "pieces", "resize"]
    assert all(m["sim/new/pairs"] == 6 and m["new/words"] == 2 and "new/mean/spearman" in m for m in metrics.values())
    plain = json.loads(next((tmp_path / "plain").rglob("result.json")).read_text())["metrics"]
    assert metrics["pieces"]["sim/spearman"] == pytest.approx(plain["sim/spearman"])  # no new token: the plain vector
    assert metrics["definitionemb"]["sim/new/spearman"] != metrics["resize"]["sim/new/spearman"]

    ext = extension_from_checkpoint(extended)
    rows = initialisations(ext)
    E = get_table(load_model(model).model)
    tokenizer = AutoTokenizer.from_pretrained(model)
    np.testing.assert_allclose(rows["resize"], np.tile(E.mean(axis=0), (2, 1)), rtol=1e-5, atol=1e-6)
    for k, word in enumerate(NEW):
        pieces = [i for i in tokenizer(word, add_special_tokens=False)["input_ids"] if i != tokenizer.unk_token_id]
        definition = tokenizer(NEW[word], add_special_tokens=False)["input_ids"]
        np.testing.assert_allclose(rows["pieces"][k], E[pieces or [tokenizer.unk_token_id]].mean(axis=0), atol=1e-6)
        np.testing.assert_allclose(rows["desc_init"][k], E[definition].mean(axis=0), atol=1e-6)
        np.testing.assert_allclose(rows["definitionemb"][k], expected_row(run, word, NEW[word]), rtol=1e-4, atol=1e-5)

    # a training run: every split set word a source defines is added in memory, nothing is written
    entities = tmp_path / "entities.tsv"
    assert main(["evaluate", "wordsim", "--add-tokens", str(run), "--source", f"entities:{entities}", "--sets",
                 str(sets), "--min-pairs", "3", "--out", str(tmp_path / "ws-run")]) == 0
    from_run = {p.parent.parent.name: json.loads(p.read_text())["metrics"]
                for p in (tmp_path / "ws-run").rglob("result.json")}
    assert from_run["definitionemb"]["sim/new/spearman"] == pytest.approx(metrics["definitionemb"]["sim/new/spearman"])


def test_extend_dry_run_counts_and_lists(trained_run, tmp_path, capsys):
    model, run = trained_run("bert")
    out = tmp_path / "never"
    assert extend_cli(model, run, tmp_path, "--dry-run", "--out", str(out)) == 0
    printed = capsys.readouterr().out
    # the, is, near, station, a, and, park: one token each; qwertyuiop and once: seen once; blorfwizzle: undefined
    assert "candidates 12, in vocabulary 7, below min count 2, no definition 1" in printed
    assert "no definition: blorfwizzle" in printed and "gardenpark (2x): a park with a garden" in printed
    assert "dry run: 2 words would be added" in printed and not out.exists()
    assert extend_cli(model, run, tmp_path, "--dry-run", "--max-words", "1", "--min-count", "1") == 0
    assert "over max words 1" in capsys.readouterr().out
    words = tmp_path / "words.txt"
    words.write_text("gardenpark\nGardenpark\nthe\nqqqzzz\n", encoding="utf-8")  # uncased: Gardenpark repeats
    assert main(["extend", model, "--run", str(run), "--words", str(words), "--entities",
                 str(tmp_path / "entities.tsv"), "--dry-run"]) == 0
    assert "candidates 3, in vocabulary 1, no definition 1, duplicates 1" in capsys.readouterr().out


@pytest.mark.parametrize("case", ["empty", "binary", "foreign-run", "no-word", "both-inputs", "table"])
def test_extend_bad_input_is_one_line_and_writes_nothing(trained_run, tmp_path, capsys, case):
    model, run = trained_run("bert")
    capsys.readouterr()  # the fixture's training output
    out = tmp_path / "out"
    task = tmp_path / "task.txt"
    task.write_text("gardenpark gardenpark\n", encoding="utf-8")
    args = ["extend", model, "--run", str(run), "--task-data", str(task), "--out", str(out)]
    expected = {"empty": "no words in this task file", "binary": "looks binary", "foreign-run": "vocabulary differs",
                "no-word": "no word to add", "both-inputs": "not both", "table": "cannot get rows"}[case]
    if case == "empty":
        task.write_text("", encoding="utf-8")
    elif case == "binary":
        task.write_bytes(b"\x00\x01gardenpark\xff\xfe" * 100)
    elif case == "foreign-run":  # same width (32), another tokenizer
        args[1] = str(trained_run("roberta")[0])
        capsys.readouterr()
    elif case == "no-word":  # gardenpark has no definition in GCIDE
        pass
    elif case == "both-inputs":
        args += ["--words", str(task)]
    else:
        args += ["--table", "output"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("defemb: error: ") and err.count("\n") == 1 and expected in err, err
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_extend_takes_the_runs_table(tiny_model_dir, tmp_path, capsys):
    """A T5Gemma run trained on the decoder table writes decoder rows (the encoder table is another space)."""
    model = str(tiny_model_dir("t5gemma"))
    build_corpus(CorpusConfig(tokenizer=model, sources=[f"tsv:{write_dictionary(tmp_path)}"], numbers=False),
                 tmp_path / "corpus")
    run = tmp_path / "run"
    train(TrainConfig(model=model, corpus=str(tmp_path / "corpus"), steps=5, eval_every=5, table="decoder"), run)
    out = tmp_path / "extended"
    assert extend_cli(model, run, tmp_path, "--out", str(out)) == 0
    summary = json.loads((out / "defemb.json").read_text())
    assert summary["table"] == "decoder" and summary["tables_with_mean_rows"] == ["input", "encoder"]
    extended = load_model(str(out))
    ids = [int(line.split("\t")[1]) for line in (out / "added.tsv").read_text().splitlines()[1:]]
    decoder, encoder = get_table(extended.model, "decoder"), get_table(extended.model, "encoder")
    for word, i in zip(NEW, ids, strict=True):
        np.testing.assert_allclose(decoder[i], expected_row(run, word, NEW[word]), rtol=1e-4, atol=1e-5)
    assert not np.allclose(encoder[ids], decoder[ids])
    capsys.readouterr()
    assert extend_cli(model, run, tmp_path, "--table", "encoder", "--out", str(tmp_path / "other")) == 2
    assert "mimic the decoder table" in capsys.readouterr().err and not (tmp_path / "other").exists()


@pytest.mark.parametrize("family", ["bert", "llama"])
def test_extend_init_baselines_on_the_same_words(trained_run, tmp_path, family, capsys):
    """`--init` writes a baseline's rows for the very words DefinitionEMB would add, computed from each table's
    own original rows (an untied output head gets its pieces' mean, not the input table's)."""
    model, run = trained_run(family)
    untied = FAMILY_FACTS[family]["tied_output"] is False
    E = {t: get_table(load_model(model).model, t) for t in ("input", "output") if t == "input" or untied}
    tokenizer = AutoTokenizer.from_pretrained(model)
    for init in ("pieces", "desc_init", "resize", "definitionemb+pieces"):
        out = tmp_path / init
        assert extend_cli(model, run, tmp_path, "--init", init, "--out", str(out)) == 0
        assert "rows in the" in capsys.readouterr().out
        with open(out / "added.tsv", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle, delimiter="\t"))
        assert [r["word"] for r in rows] == ["gardenpark", "riverkeep"]
        extended = load_model(str(out))
        for table in E:
            old = E[table][: len(tokenizer)]
            for r in rows:
                if init == "pieces":
                    want = old[[int(i) for i in r["piece_ids"].split()]].mean(axis=0)
                elif init == "definitionemb+pieces":  # each table: the predicted row and that table's pieces' mean
                    want = (expected_row(run, r["word"], r["definition"])
                            + old[[int(i) for i in r["piece_ids"].split()]].mean(axis=0)) / 2
                elif init == "desc_init":
                    want = old[tokenizer(r["definition"], add_special_tokens=False)["input_ids"]].mean(axis=0)
                else:
                    want = old.mean(axis=0)
                np.testing.assert_allclose(get_table(extended.model, table)[int(r["id"])], want, rtol=1e-5,
                                           atol=1e-6)
    assert json.loads((tmp_path / "resize" / "defemb.json").read_text())["init"] == "resize"


def test_senses_average_the_rows_predicted_from_each_definition(trained_run, tmp_path, capsys):
    """--senses K: a word's row is the mean of the rows predicted from its first K definitions (desc_init reads
    the same K definitions); with K = 1 only the first counts."""
    model, run = trained_run("bert")
    second = "a place of trees and grass where children play"
    entities = tmp_path / "senses.tsv"
    entities.write_text(f"gardenpark\tnoun\t{NEW['gardenpark']}\ngardenpark\tnoun\t{second}\n"
                        f"gardenpark\tnoun\ta third sense never read\n", encoding="utf-8")
    words = tmp_path / "words.txt"
    words.write_text("gardenpark\n", encoding="utf-8")
    one, two = (expected_row(run, "gardenpark", d) for d in (NEW["gardenpark"], second))
    for senses, want in ((1, one), (2, (one + two) / 2)):
        out = tmp_path / f"senses-{senses}"
        assert main(["extend", model, "--run", str(run), "--words", str(words), "--entities", str(entities),
                     "--senses", str(senses), "--out", str(out)]) == 0
        with open(out / "added.tsv", encoding="utf-8") as handle:
            (row,) = list(csv.DictReader(handle, delimiter="\t"))
        assert row["senses"] == str(senses) and row["definition"] == NEW["gardenpark"]
        np.testing.assert_allclose(get_table(load_model(str(out)).model)[int(row["id"])], want, rtol=1e-4, atol=1e-5)
    out = tmp_path / "desc"
    assert main(["extend", model, "--run", str(run), "--words", str(words), "--entities", str(entities),
                 "--senses", "2", "--init", "desc_init", "--out", str(out)]) == 0
    tokenizer = AutoTokenizer.from_pretrained(model)
    E = get_table(load_model(model).model)
    text = tokenizer(f"{NEW['gardenpark']} {second}", add_special_tokens=False)["input_ids"]
    np.testing.assert_allclose(get_table(load_model(str(out)).model)[len(tokenizer)], E[text].mean(axis=0), atol=1e-6)
    assert main(["extend", model, "--run", str(run), "--words", str(words), "--senses", "0", "--out",
                 str(tmp_path / "never")]) == 2
    assert "--senses must be at least 1" in capsys.readouterr().err


def test_definitions_of_a_word_take_turns_across_dictionaries(tmp_path):
    """Three senses from the first dictionary must not crowd out the second one's (limit 3)."""
    from defemb.extend import find_definitions

    first, second = tmp_path / "a.tsv", tmp_path / "b.tsv"
    first.write_text("".join(f"parkland\tnoun\tfirst {k}\n" for k in range(3)) + "Stile\tnoun\tcapital\n")
    second.write_text("parkland\tnoun\tsecond 0\nparkland\tnoun\tsecond 1\nstile\tnoun\tlower\n")
    found = find_definitions(["parkland", "Stile"], [f"tsv:{first}", f"tsv:{second}"], str, SkipLog(), limit=3)
    assert [e.definition for e in found["parkland"]] == ["first 0", "second 0", "first 1"]
    assert [e.definition for e in found["Stile"]] == ["capital"]  # as written first, before the lowercase
    only_first = find_definitions(["parkland"], [f"tsv:{first}"], str, SkipLog(), limit=2)
    assert [e.definition for e in only_first["parkland"]] == ["first 0", "first 1"]
