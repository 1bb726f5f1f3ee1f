"""add-tokens and the one-command pipeline, end to end on tiny models."""

from __future__ import annotations

import csv
import dataclasses
import json
import shutil

import numpy as np
import pytest
from transformers import AutoTokenizer

from defemb.cli import main
from defemb.config import CorpusConfig, TrainConfig
from defemb.corpus.build import build_corpus
from defemb.embeddings import load_embeddings
from defemb.method.data import load_records
from defemb.method.embed import assign
from defemb.method.train import train
from defemb.models import get_table, load_model
from defemb.pipeline import DECODER_PRESETS, PIPELINE_PRESETS, PipelinePreset, run_pipeline
from test_extend import expected_row

TEST_PRESET = PipelinePreset(steps=20, warmup=1, tokens=1024, eval_every=10, alpha=50.0, contrast=0.5,
                             token_weight=0.25)
WORDS = ["park", "garden", "station", "market", "city", "river", "office", "library", "green"]


def _dictionary(folder):
    tsv = folder / "dict.tsv"
    rows = [f"{w}\tnoun\ta {w} is a place in the city where people meet {k}" for k in range(5) for w in WORDS]
    tsv.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return tsv


@pytest.mark.parametrize("family", ["bert", "gpt2", "t5"])
def test_add_tokens(tiny_model_dir, tmp_path, family):
    model = str(tiny_model_dir(family))
    build_corpus(CorpusConfig(tokenizer=model, sources=[f"tsv:{_dictionary(tmp_path)}"], numbers=False),
                 tmp_path / "corpus")
    train(TrainConfig(model=model, corpus=str(tmp_path / "corpus"), steps=5, eval_every=5), tmp_path / "run")
    words = tmp_path / "words.tsv"
    words.write_text("gardenpark\tnoun\ta park with a garden\nzzyzx\tnoun\ta river station in the city\n"
                     "the\tnoun\talready a token\n", encoding="utf-8")
    out = tmp_path / "extended"
    assert main(["add-tokens", model, "--run", str(tmp_path / "run"), "--words", str(words), "--out", str(out)]) == 0
    tokenizer = AutoTokenizer.from_pretrained(out)
    with open(out / "added.tsv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    ids = [int(r["id"]) for r in rows]
    assert [r["word"] for r in rows] == ["gardenpark", "zzyzx"]  # "the" is one token already: skipped
    table = get_table(load_model(str(out)).model)
    for r, i in zip(rows, ids, strict=True):  # the rows DefinitionEMB predicts, not what resizing gives
        assert i in tokenizer(f"the {r['word']} is", add_special_tokens=False)["input_ids"]
        np.testing.assert_allclose(table[i], expected_row(tmp_path / "run", r["word"], r["definition"]),
                                   rtol=1e-4, atol=1e-5)
    assert main(["add-tokens", model, "--run", str(tmp_path / "run"), "--words", str(words), "--out", str(out)]) == 2


NEW = {"gardenpark": "a park with a garden in the city", "riverkeep": "a river station in the city"}


def _similarity_data(folder):
    """A DEFEMB_DATA folder whose only similarity set holds 22 pairs with a new word (MIN_PAIRS is 20)."""
    sets = folder / "data" / "word-sim" / "eval-word-vectors"
    sets.mkdir(parents=True)
    pairs = [(new, old) for new in NEW for old in [*WORDS, "money", "dog"]] + [("park", "garden"), ("city", "river")]
    scores = np.random.default_rng(0).uniform(0, 10, size=len(pairs))
    lines = [f"{a}\t{b}\t{s:.2f}\n" for (a, b), s in zip(pairs, scores, strict=True)]
    (sets / "EN-TEST.txt").write_text("".join(lines), encoding="utf-8")
    return folder / "data"


def test_pipeline_runs_and_continues(tiny_model_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(PIPELINE_PRESETS, "test", TEST_PRESET)
    monkeypatch.setenv("DEFEMB_DATA", str(_similarity_data(tmp_path)))
    model = str(tiny_model_dir("bert"))
    out = tmp_path / "pipeline"
    # two dictionaries: the new words are defined only in the second, so both the corpus and the extension
    # must read every source
    extra = tmp_path / "extra.tsv"
    extra.write_text("".join(f"{w}\tnoun\t{d}\n" for w, d in NEW.items()), encoding="utf-8")
    sources = [f"tsv:{_dictionary(tmp_path)}", f"tsv:{extra}"]
    report = run_pipeline(out, preset="test", model=model, sources=sources)
    assert json.loads((out / "corpus" / "config.json").read_text())["sources"] == sources
    for name in ("before/report.html", "corpus/train.jsonl", "train/head.safetensors", "definitions.safetensors",
                 "model/replaced.tsv", "after/report.html", "before_after.md", "report.html", "extended/added.tsv"):
        assert (out / name).exists(), name
    assert "| measure | before | after |" in report and "mean-row predictor" in report
    assert "Per token, rare band: its own mean row" in report
    # the extension half: the split words with a definition became tokens, scored four ways on their pairs
    with open(out / "extended" / "added.tsv", encoding="utf-8") as handle:
        assert sorted(r["word"] for r in csv.DictReader(handle, delimiter="\t")) == sorted(NEW)
    assert "## Extension: word similarity of the new tokens" in report
    assert "| EN-TEST/new (22) |" in report
    assert "| set (pairs) | resize | pieces | desc_init | definitionemb |" in report
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "Extension: new tokens and their nearest old tokens" in page and "gardenpark" in page
    replaced = (out / "model" / "replaced.tsv").read_text().splitlines()
    assert len(replaced) > 1
    trained = json.loads((out / "train" / "config.json").read_text())
    assert (trained["contrast"], trained["token_weight"]) == (0.5, 0.25)  # the preset's, passed on
    written = json.loads((out / "model" / "defemb.json").read_text())
    assert written["numbers"] == "within" and written["spread"] == "directions"  # the paper's rule, calibrated
    assert "`replace --numbers all`" in report  # the all-numbers variant is measured beside it
    before = json.loads((out / "before" / "analysis.json").read_text())["bands"]["rare"]["isotropy"]
    after = json.loads((out / "after" / "analysis.json").read_text())["bands"]["rare"]["isotropy"]
    assert before != after  # rare rows were replaced
    capsys.readouterr()
    run_pipeline(out, preset="test", model=model, sources=sources)
    assert capsys.readouterr().out.count("already done, skipped") == 10
    # a stage redone (its output folder removed) makes the before | after page stale: it is rebuilt
    shutil.rmtree(out / "after")
    run_pipeline(out, preset="test", model=model, sources=sources)
    printed = capsys.readouterr().out
    assert "analyze (after): running" in printed and "report (before | after): running" in printed


def test_decoder_preset_embeds_only_the_rows_it_replaces(tiny_model_dir, tmp_path, monkeypatch):
    """A decoder reads each row in a pass of its own, so its presets embed only what replace rebuilds (and
    what the all-numbers variant measures), train with their own lr and validation size, and the report
    says how long each stage took."""
    monkeypatch.setitem(PIPELINE_PRESETS, "test", TEST_PRESET)
    monkeypatch.setitem(DECODER_PRESETS, "test", dataclasses.replace(TEST_PRESET, lr=3e-4, max_valid=7,
                                                                     ridge_examples=9, embed_replaced_only=True,
                                                                     gradient_checkpointing=True, contrast=0.0))
    monkeypatch.setenv("DEFEMB_DATA", str(_similarity_data(tmp_path)))
    model, out = str(tiny_model_dir("gpt2")), tmp_path / "pipeline"
    report = run_pipeline(out, preset="test", model=model, sources=[f"tsv:{_dictionary(tmp_path)}"])
    trained = json.loads((out / "train" / "config.json").read_text())
    assert (trained["lr"], trained["max_valid"], trained["ridge_examples"], trained["contrast"]) == (3e-4, 7, 9, 0.0)
    assert trained["gradient_checkpointing"]
    with open(out / "model" / "replaced.tsv", encoding="utf-8") as handle:
        replaced = {int(r["id"]) for r in csv.DictReader(handle, delimiter="\t")}
    embedded = set(load_embeddings(out / "definitions.safetensors").token_ids.tolist())
    records = load_records(out / "corpus", "train", 10**6) + load_records(out / "corpus", "valid", 10**6)
    tokenizer = AutoTokenizer.from_pretrained(model)
    covered = set(assign(records, tokenizer.convert_ids_to_tokens(list(range(len(tokenizer)))), 1))
    assert replaced and replaced <= embedded < covered
    seconds = json.loads((out / "stages.json").read_text())
    assert {"corpus", "train", "embed", "replace"} <= set(seconds) and all(v >= 0 for v in seconds.values())
    assert "## Time per stage" in report and "| total |" in report


def test_pipeline_says_when_no_word_can_be_added(tiny_model_dir, tmp_path, monkeypatch):
    """Every split word lacks a definition: the extension half says so instead of failing the run."""
    monkeypatch.setitem(PIPELINE_PRESETS, "test", PipelinePreset(steps=4, warmup=1, tokens=1024, eval_every=2,
                                                                 alpha=50.0))
    monkeypatch.setenv("DEFEMB_DATA", str(_similarity_data(tmp_path)))
    out = tmp_path / "pipeline"
    report = run_pipeline(out, preset="test", model=str(tiny_model_dir("bert")),
                          sources=[f"tsv:{_dictionary(tmp_path)}"])
    assert "No word to add" in report and not (out / "extended").exists()
    assert json.loads((out / "extended.json").read_text())["no_definition"] == 2


def test_ctrl_c_says_rerun_continues(tiny_model_dir, tmp_path, monkeypatch, capsys):
    import defemb.pipeline as pipeline

    monkeypatch.setitem(PIPELINE_PRESETS, "test", TEST_PRESET)
    model = str(tiny_model_dir("bert"))

    def interrupted_embed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "embed", interrupted_embed)
    args = ["run", "--preset", "test", "--model", model, "--source", f"tsv:{_dictionary(tmp_path)}",
            "--out", str(tmp_path / "p")]
    assert main(args) == 130
    err = capsys.readouterr().err
    assert "finished stages are kept in" in err and "rerun the same `defemb run` command" in err
    assert "--resume" not in err
    assert (tmp_path / "p" / "train" / "head.safetensors").exists()  # the stages before embed are kept
