"""`defemb embed`: which state gives each row, what the model sees there, aggregation, and bad input.

The runs here are untrained (the tiny model as body, a random W): embed's job is to read the right state
from the right input, which a random model shows as well as a trained one, and much faster.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from defemb.cli import main
from defemb.embeddings import load_embeddings
from defemb.method import embed as embed_module
from defemb.method.data import load_records
from defemb.method.embed import assign, embed, load_run
from defemb.models import load_model


@pytest.fixture(scope="module")
def runs(tiny_model_dir, tmp_path_factory):
    """Factory: ``runs("bert")`` -> a finished-run folder holding the tiny model and a random W."""
    folder = tmp_path_factory.mktemp("runs")

    def make(family: str) -> Path:
        run = folder / family
        if not run.exists():
            loaded = load_model(str(tiny_model_dir(family)))
            loaded.model.save_pretrained(run / "model")
            loaded.tokenizer.save_pretrained(run / "model")
            hidden = loaded.model.config.get_text_config(decoder=True).hidden_size
            rows = loaded.model.get_input_embeddings().weight.shape[1]
            head = torch.randn(rows, hidden, generator=torch.Generator().manual_seed(0)) * hidden**-0.5
            save_file({"weight": head}, run / "head.safetensors")
            (run / "config.json").write_text(json.dumps({"model": str(tiny_model_dir(family)), "table": "input"}))
        return run

    return make


def _embed(run: Path, corpus: Path, out: Path, **options) -> dict[int, np.ndarray]:
    embed(run, corpus, out, **options)
    table = load_embeddings(out)
    return dict(zip(table.token_ids.tolist(), table.embeddings, strict=True))


def _records(run: Path, corpus: Path) -> list[dict]:
    size = len(load_run(run)[1].tokenizer)
    return load_records(corpus, "train", size) + load_records(corpus, "valid", size)


def test_empty_corpus_and_max_prompts_below_one_are_one_line_errors(runs, corpora, tmp_path, capsys):
    corpus = tmp_path / "empty"
    shutil.copytree(corpora("bert"), corpus)
    for split in ("train", "valid"):
        (corpus / f"{split}.jsonl").write_text("", encoding="utf-8")
    out = tmp_path / "e.safetensors"
    assert main(["embed", str(runs("bert")), "--corpus", str(corpus), "--out", str(out)]) == 2
    for value in ("0", "-1"):
        assert main(["embed", str(runs("bert")), "--corpus", str(corpora("bert")), "--out", str(out),
                     "--aggregate", "mean", "--max-prompts", value]) == 2
    out.mkdir()
    assert main(["embed", str(runs("bert")), "--corpus", str(corpora("bert")), "--out", str(out), "--force"]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("defemb: error:")]
    assert len(lines) == 4 and "has no records" in lines[0] and "is a directory" in lines[3]
    assert all("--max-prompts must be a positive whole number" in line for line in lines[1:3])
    assert not any(out.iterdir()) and sorted(p.name for p in tmp_path.iterdir()) == ["e.safetensors", "empty"]


@torch.no_grad()
def _masked_row(model, tokenizer, record: dict, position: int) -> np.ndarray:
    """Encoder: the row read at ``position`` with that token replaced by the mask token, built by hand."""
    ids = list(record["input_ids"])
    ids[position] = tokenizer.mask_token_id
    state = model.body.base_model(input_ids=torch.tensor([ids])).last_hidden_state[0, position]
    return model.head(state).numpy()


def test_mean_averages_single_masked_predictions_and_first_keeps_the_first(runs, corpora, tmp_path):
    run, corpus = runs("bert"), corpora("bert")
    model, loaded, _ = load_run(run)
    records = _records(run, corpus)
    means = _embed(run, corpus, tmp_path / "mean.safetensors", aggregate="mean", max_prompts=3)
    firsts = _embed(run, corpus, tmp_path / "first.safetensors", aggregate="first")
    sources = assign(records, "encoder", 3)
    assert sorted(means) == sorted(firsts) == sorted(sources) and any(len(s) > 1 for s in sources.values())
    for token, found in sources.items():
        assert all(records[r]["input_ids"][p] == token for r, _, p in found)
        singles = [_masked_row(model, loaded.tokenizer, records[r], p) for r, _, p in found]
        np.testing.assert_allclose(means[token], np.mean(singles, axis=0), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(firsts[token], singles[0], rtol=1e-4, atol=1e-5)


def test_every_read_position_holds_the_mask_token(runs, corpora, tmp_path, monkeypatch):
    seen = []
    collate = embed_module.collate

    def spying(examples, pad_id):
        batch = collate(examples, pad_id)
        seen.append(batch.input_ids[batch.rows, batch.positions])
        return batch

    monkeypatch.setattr(embed_module, "collate", spying)
    _, loaded, _ = load_run(runs("bert"))
    _embed(runs("bert"), corpora("bert"), tmp_path / "e.safetensors")
    assert seen and all(bool((ids == loaded.tokenizer.mask_token_id).all()) for ids in seen)


@torch.no_grad()
def _seq2seq_row(model, loaded, record: dict, position: int) -> np.ndarray:
    """Each occurrence replaced by its own sentinel; the decoder reads <M0> w0 <M1> w1 ...; the state whose
    next label is the token at ``position`` gives its row."""
    ids, groups = record["input_ids"], record["word_positions"]
    sentinels = loaded.tokenizer.convert_tokens_to_ids([f"<extra_id_{k}>" for k in range(len(groups))])
    start_of = {group[0]: k for k, group in enumerate(groups)}
    in_word = {p for group in groups for p in group}
    encoder, labels, label_of = [], [], {}
    for p, token in enumerate(ids):
        if p in start_of:
            k = start_of[p]
            encoder.append(sentinels[k])
            labels.append(sentinels[k])
            for q in groups[k]:
                label_of[q] = len(labels)
                labels.append(ids[q])
        elif p not in in_word:
            encoder.append(token)
    decoder = [loaded.model.config.decoder_start_token_id, *labels[:-1]]
    out = model.body(input_ids=torch.tensor([encoder]), decoder_input_ids=torch.tensor([decoder]),
                     output_hidden_states=True)
    return model.head(out.decoder_hidden_states[-1][0, label_of[position]]).numpy()


@torch.no_grad()
def _decoder_row(model, loaded, record: dict, position: int) -> np.ndarray:
    """Definition first without any occurrence of the word, then the word's last occurrence; the state
    before each word token gives its row."""
    ids, groups = record["input_ids"], record["word_positions"]
    assert loaded.tokenizer("a")["input_ids"] == loaded.tokenizer("a", add_special_tokens=False)["input_ids"]
    in_word = {p for group in groups for p in group}
    context = [token for p, token in enumerate(ids) if p not in in_word]
    sequence = context + [ids[q] for q in groups[-1]]
    state = model.body.base_model(input_ids=torch.tensor([sequence])).last_hidden_state[0]
    return model.head(state[len(context) - 1 + groups[-1].index(position)]).numpy()


@pytest.mark.parametrize("family, kind, expected_row", [("t5", "encoder-decoder", _seq2seq_row),
                                                        ("gpt2", "decoder", _decoder_row)])
def test_each_row_comes_from_the_state_that_predicts_its_token(runs, corpora, tmp_path, family, kind, expected_row):
    run, corpus = runs(family), corpora(family)
    model, loaded, _ = load_run(run)
    records = _records(run, corpus)
    rows = _embed(run, corpus, tmp_path / "e.safetensors")
    sources = assign(records, kind, 1)
    assert sorted(rows) == sorted(sources) and len(rows) > 5
    for token, [(r, _, p)] in sources.items():
        assert records[r]["input_ids"][p] == token
        np.testing.assert_allclose(rows[token], expected_row(model, loaded, records[r], p), rtol=1e-4, atol=1e-5,
                                   err_msg=loaded.tokenizer.convert_ids_to_tokens(token))
