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
from safetensors.torch import load_file, save_file

from defemb.cli import main
from defemb.config import MAX_PROMPTS
from defemb.embeddings import load_embeddings
from defemb.errors import DefembError
from defemb.method import embed as embed_module
from defemb.method.data import load_records
from defemb.method.embed import assign, embed, load_run
from defemb.models import load_model


@pytest.fixture(scope="module")
def runs(tiny_model_dir, tmp_path_factory):
    """Factory: ``runs("bert")`` -> a finished-run folder holding the tiny model and a random band head (W, a
    correction per band, tokens given to the bands at random, so a row read by the wrong map shows)."""
    folder = tmp_path_factory.mktemp("runs")

    def make(family: str) -> Path:
        run = folder / family
        if not run.exists():
            loaded = load_model(str(tiny_model_dir(family)))
            loaded.model.save_pretrained(run / "model")
            loaded.tokenizer.save_pretrained(run / "model")
            hidden = loaded.model.config.get_text_config(decoder=True).hidden_size
            rows = loaded.model.get_input_embeddings().weight.shape[1]
            generator = torch.Generator().manual_seed(0)
            head = {"weight": torch.randn(rows, hidden, generator=generator) * hidden**-0.5,
                    "band_delta": torch.randn(3, rows, hidden, generator=generator) * hidden**-0.5,
                    "head_of_token": torch.randint(0, 3, (len(loaded.tokenizer),), generator=generator)}
            save_file(head, run / "head.safetensors", metadata={"maps": "frequent,medium,rare"})
            (run / "config.json").write_text(json.dumps({"model": str(tiny_model_dir(family)), "table": "input"}))
        return run

    return make


def _embed(run: Path, corpus: Path, out: Path, **options) -> dict[int, np.ndarray]:
    options.setdefault("aggregate", "first")  # these tests follow one prompt to one row; the default is "mean"
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


def _hidden(record: dict) -> set[int]:
    """Every marked position and every other copy of the word's tokens, computed independently."""
    marked = {p for group in record["word_positions"] for p in group}
    own = {record["input_ids"][p] for p in marked}
    return {p for p, token in enumerate(record["input_ids"]) if token in own}


def _tokens(run: Path) -> list[str]:
    tokenizer = load_run(run)[1].tokenizer
    return tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))


def _row(model, state: torch.Tensor, token: int) -> np.ndarray:
    """W of the token's band (the shared map plus that band's correction) applied to one state. # (h_e,)"""
    k = int(model.head.head_of_token[token])
    return ((model.head.weight + model.head.band_delta[k]) @ state).numpy()


@torch.no_grad()
def _masked_row(model, tokenizer, record: dict, position: int) -> np.ndarray:
    """Encoder: the row read at ``position`` with every occurrence and copy of the word masked, built by hand."""
    ids = list(record["input_ids"])
    for p in _hidden(record):
        ids[p] = tokenizer.mask_token_id
    state = model.body.base_model(input_ids=torch.tensor([ids])).last_hidden_state[0, position]
    return _row(model, state, record["input_ids"][position])


def test_mean_averages_the_prompts_predictions_and_first_keeps_the_first(runs, corpora, tmp_path):
    run, corpus = runs("bert"), corpora("bert")
    model, loaded, _ = load_run(run)
    records = _records(run, corpus)
    means = _embed(run, corpus, tmp_path / "mean.safetensors", aggregate="mean", max_prompts=3)
    firsts = _embed(run, corpus, tmp_path / "first.safetensors", aggregate="first")
    sources = assign(records, _tokens(run), 3)
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


@pytest.mark.parametrize("family", ["bert", "gpt2"])
def test_no_copy_of_a_target_token_is_in_view(runs, corpora, tmp_path, monkeypatch, family):
    """Nothing of the word is left in the input that predicts it: not another occurrence, not another copy."""
    leaks, reads = [], []
    collate = embed_module.collate

    def spying(examples, pad_id):
        for example in examples:
            reads.append(len(example.targets))
            visible = set(example.input_ids) if family == "bert" else set(example.input_ids[: example.positions[0] + 1])
            leaks.extend(t for t in example.targets if t in visible)
        return collate(examples, pad_id)

    monkeypatch.setattr(embed_module, "collate", spying)
    _embed(runs(family), corpora(family), tmp_path / "e.safetensors")
    assert sum(reads) > 20 and leaks == []


def test_prompts_of_the_tokens_own_headword_and_number_definitions_come_first():
    tokens = ["[PAD]", "wolf", "7", "aard", "##wolf"]
    records = [
        {"word": "aard-wolf", "location": "gcide:a", "input_ids": [3, 1], "word_positions": [[0, 1]]},
        {"word": "24/7", "location": "gcide:b", "input_ids": [2], "word_positions": [[0]]},
        {"word": "7", "location": "gcide:c", "input_ids": [2], "word_positions": [[0]]},
        {"word": "wolf", "location": "gcide:d", "input_ids": [1], "word_positions": [[0]]},
        {"word": "7", "location": "numbers:7", "input_ids": [2], "word_positions": [[0]]},
        {"word": "Wolf", "location": "gcide:e", "input_ids": [1, 1], "word_positions": [[0], [1]]},
    ]
    sources = assign(records, tokens, 3)
    assert [r for r, _, _ in sources[1]] == [3, 5, 0]  # wolf: its headwords (any case), then the compound
    assert sources[1][1] == (5, 0, 0)  # one source per prompt: the first occurrence
    assert [r for r, _, _ in sources[2]] == [4, 2, 1]  # 7: the number definition, the headword, then 24/7
    assert [r for r, _, _ in assign(records, tokens, 1)[3]] == [0]  # no headword of its own: the compound


def test_dictionaries_take_turns_among_equally_preferred_prompts():
    """Five senses from the first dictionary must not crowd out the second one's."""
    tokens = ["[PAD]", "park", "garden"]
    records = [{"word": "park", "source": "gcide", "location": f"gcide:{k}", "input_ids": [1], "word_positions": [[0]]}
               for k in range(5)]
    records += [{"word": "garden-park", "source": "tabular", "location": "t:1", "input_ids": [2, 1],
                 "word_positions": [[0, 1]]},
                {"word": "park", "source": "tabular", "location": "t:2", "input_ids": [1], "word_positions": [[0]]},
                {"word": "park", "source": "tabular", "location": "t:3", "input_ids": [1], "word_positions": [[0]]}]
    assert [r for r, _, _ in assign(records, tokens, 5)[1]] == [0, 6, 1, 7, 2]  # headwords, taking turns
    assert [r for r, _, _ in assign(records, tokens, 8)[1]][-1] == 5  # the compound only after every headword
    one_source = [dict(r, source="gcide") for r in records]
    assert [r for r, _, _ in assign(one_source, tokens, 5)[1]] == [0, 1, 2, 3, 4]  # one source: corpus order





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
    return _row(model, out.decoder_hidden_states[-1][0, label_of[position]], ids[position])


@torch.no_grad()
def _decoder_row(model, loaded, record: dict, position: int) -> np.ndarray:
    """Definition first without any occurrence or copy of the word, then the form that holds ``position``; the
    state before each word token gives its row."""
    ids, groups = record["input_ids"], record["word_positions"]
    assert loaded.tokenizer("a")["input_ids"] == loaded.tokenizer("a", add_special_tokens=False)["input_ids"]
    (form,) = [group for group in groups if position in group]
    hidden = _hidden(record)
    context = [token for p, token in enumerate(ids) if p not in hidden]
    sequence = context + [ids[q] for q in form]
    state = model.body.base_model(input_ids=torch.tensor([sequence])).last_hidden_state[0]
    return _row(model, state[len(context) - 1 + form.index(position)], ids[position])


@pytest.mark.parametrize("family, kind, expected_row", [("t5", "encoder-decoder", _seq2seq_row),
                                                        ("gpt2", "decoder", _decoder_row)])
def test_each_row_comes_from_the_state_that_predicts_its_token(runs, corpora, tmp_path, family, kind, expected_row):
    run, corpus = runs(family), corpora(family)
    model, loaded, _ = load_run(run)
    records = _records(run, corpus)
    rows = _embed(run, corpus, tmp_path / "e.safetensors")
    sources = assign(records, _tokens(run), 1)
    assert sorted(rows) == sorted(sources) and len(rows) > 5
    # every marked form is a target: a token that only occurs in a prompt's first form still gets a row
    firsts = {records[r]["input_ids"][p] for r, record in enumerate(records) for p in record["word_positions"][0]}
    assert firsts <= set(rows)
    for token, [(r, _, p)] in sources.items():
        assert records[r]["input_ids"][p] == token
        np.testing.assert_allclose(rows[token], expected_row(model, loaded, records[r], p), rtol=1e-4, atol=1e-5,
                                   err_msg=loaded.tokenizer.convert_ids_to_tokens(token))


def test_a_bf16_run_is_read_in_bf16(runs, corpora, tmp_path):
    """Rows come in the precision the run trained and validated in (W was fitted to those states): a run
    trained with --bf16 is read under bfloat16 autocast, by `embed` and by `add-tokens`/`extend` alike."""
    from defemb.method.add_tokens import predict_rows
    from defemb.method.masking import Vocabulary

    corpus = corpora("gpt2")
    rows, predicted = {}, {}
    for bf16 in (False, True):
        run = tmp_path / f"bf16-{bf16}"
        shutil.copytree(runs("gpt2"), run)
        config = json.loads((run / "config.json").read_text())
        (run / "config.json").write_text(json.dumps({**config, "bf16": bf16}))
        rows[bf16] = _embed(run, corpus, tmp_path / f"{bf16}.safetensors")
        model, loaded, _ = load_run(run)
        assert model.bf16 is bf16
        predicted[bf16] = predict_rows(model, Vocabulary.for_model(loaded), _records(run, corpus)[:8])
    plain, half = (np.stack([rows[b][t] for t in sorted(rows[False])]) for b in (False, True))
    for a, b in ((plain, half), (predicted[False], predicted[True])):
        assert not np.allclose(a, b, rtol=1e-4, atol=1e-5)  # bf16 rounding shows: the autocast was on
        np.testing.assert_allclose(a, b, rtol=0.1, atol=0.05)  # and it is the same predictor


def test_new_words_take_the_shared_map_and_runs_before_band_heads_their_one_w(runs, corpora, tmp_path):
    """`add-tokens`/`extend` read a new word with a band head's shared W (no band's correction; measured best
    for new words) unless a band is named; a run written before band heads (W alone) still loads, as one map
    for every token; a head file whose map index does not fit the model is a clear error naming it."""
    from defemb.method.add_tokens import predict_rows
    from defemb.method.masking import Vocabulary

    run, corpus = runs("gpt2"), corpora("gpt2")
    model, loaded, _ = load_run(run)
    vocab, records = Vocabulary.for_model(loaded), _records(run, corpus)[:6]
    shared = predict_rows(model, vocab, records)
    np.testing.assert_array_equal(shared, predict_rows(model, vocab, records, band="shared"))
    assert not np.allclose(shared, predict_rows(model, vocab, records, band="rare"))
    with pytest.raises(DefembError, match="unknown map 'huge'"):
        predict_rows(model, vocab, records, band="huge")

    old = tmp_path / "old"
    shutil.copytree(run, old)
    head = load_file(run / "head.safetensors")
    save_file({"weight": head["weight"]}, old / "head.safetensors")
    single, _, _ = load_run(old)
    assert single.head.names == ("all",) and single.head.band_delta is None
    for band in ("shared", "rare"):  # one W for every map, the band head's W without a correction
        np.testing.assert_allclose(predict_rows(single, vocab, records, band=band), shared, rtol=1e-5, atol=1e-6)

    save_file({**head, "head_of_token": head["head_of_token"][:-1]}, old / "head.safetensors",
              metadata={"maps": "frequent,medium,rare"})
    with pytest.raises(DefembError, match="head.safetensors' is damaged"):
        load_run(old)


def test_embed_averages_ten_prompts_unless_told(runs, corpora, tmp_path):
    """The default is the mean over up to 10 prompts (measured better on MiniLM's word similarity), from the
    CLI and the library alike; the file says so."""
    run, corpus = runs("bert"), corpora("bert")
    assert main(["embed", str(run), "--corpus", str(corpus), "--out", str(tmp_path / "cli.safetensors")]) == 0
    embed(run, corpus, tmp_path / "lib.safetensors")
    assert MAX_PROMPTS == 10
    means = _embed(run, corpus, tmp_path / "mean.safetensors", aggregate="mean", max_prompts=MAX_PROMPTS)
    for name in ("cli", "lib"):
        table = load_embeddings(tmp_path / f"{name}.safetensors")
        assert table.metadata["aggregate"] == "mean"
        rows = dict(zip(table.token_ids.tolist(), table.embeddings, strict=True))
        assert sorted(rows) == sorted(means)
        for token, row in rows.items():
            np.testing.assert_allclose(row, means[token], rtol=1e-5, atol=1e-6)
