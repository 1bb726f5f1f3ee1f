"""Numeric probe: the classifier on arrays, the word lists, the states, the evaluator on tiny and real models."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from defemb.errors import DefembError
from defemb.evaluation.probe import (
    LARGE,
    OTHER,
    SMALL,
    ProbeConfig,
    build_probe_data,
    candidate_tokens,
    fit_probe,
    label_of,
    read_words,
    run_probe,
    special_frame,
    word_states,
)
from defemb.evaluation.records import read_records
from defemb.models import get_table, load_model, save_model, set_table
from defemb.tokens import integer_value, surface

WORDS = ["house", "city", "park", "river", "garden", "office", "market", "station", "library", "dog", "cat",
         "woman", "man", "table", "road", "long", "year", "floor", "story", "chapter", "room", "paid", "tokyo"]


pytestmark = pytest.mark.usefixtures("one_thread")


def test_labels():
    assert [label_of(w) for w in ("0", "999", "1000", "1999", "Ġ12", "▁2024", "house", "12a")] == \
        [SMALL, SMALL, LARGE, LARGE, SMALL, LARGE, OTHER, OTHER]


# --- the classifier on arrays ---------------------------------------------------------------------------------

def _blobs(labels: np.ndarray, rng: np.random.Generator, spread: float) -> np.ndarray:
    """Features = one-hot class in 3 of 8 dimensions + Gaussian noise. # (n, 8)"""
    X = rng.normal(0, spread, size=(len(labels), 8))
    X[np.arange(len(labels)), labels] += 1.0
    return X


def test_separable_states_score_one_and_shuffled_labels_score_chance():
    rng = np.random.default_rng(0)
    y_train, y_valid, y_test = (rng.integers(0, 3, size=n) for n in (600, 60, 300))
    X_train, X_valid, X_test = (_blobs(y, rng, 0.05) for y in (y_train, y_valid, y_test))
    metrics, predicted = fit_probe(X_train, y_train, X_valid, y_valid, X_test, y_test, seed=0)
    assert metrics["test/accuracy"] == 1.0 and metrics["valid/accuracy"] == 1.0
    assert metrics["test/accuracy_numeric"] == 1.0 and metrics["test/accuracy_other"] == 1.0
    np.testing.assert_array_equal(predicted, y_test)
    shuffled, _ = fit_probe(X_train, rng.permutation(y_train), X_valid, y_valid, X_test, y_test, seed=0)
    assert 0.2 < shuffled["test/accuracy"] < 0.47


def test_accuracy_parts_follow_the_classes():
    rng = np.random.default_rng(1)
    y = np.array([SMALL, LARGE, OTHER] * 50)
    X = _blobs(y, rng, 0.05)
    X_test = _blobs(np.array([SMALL, SMALL, OTHER, OTHER]), rng, 0.05)
    X_test[2] = X_test[0]  # an "other" token that looks numeric: one wrong answer of two
    metrics, _ = fit_probe(X, y, X, y, X_test, np.array([SMALL, SMALL, OTHER, OTHER]), seed=0)
    assert metrics["test/accuracy_numeric"] == 1.0 and metrics["test/accuracy_other"] == 0.5
    assert metrics["test/accuracy"] == 0.75
    only_numeric, _ = fit_probe(X, y, X, y, X_test[:2], np.array([SMALL, SMALL]), seed=0)
    assert "test/accuracy_other" not in only_numeric


# --- word lists ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def bert(tiny_model_dir):
    return load_model(str(tiny_model_dir("bert")))


@pytest.fixture(scope="module")
def bert_candidates(bert):
    return candidate_tokens(bert.tokenizer, "wordpiece", len(bert.tokenizer), None)


@pytest.fixture(scope="module")
def bert_data(bert, bert_candidates):
    return build_probe_data(bert.tokenizer, bert_candidates, WORDS, seed=0, n_test=8, n_other=15)


def test_test_tokens_are_rare_word_initial_and_balanced(bert, bert_data):
    d = bert_data
    assert len(d.test_ids) == 16 and list(d.test_labels).count(OTHER) == 8
    assert d.test_ids[:8] == sorted(d.test_ids[:8]) and d.test_ids[8:] == sorted(d.test_ids[8:])
    assert all(integer_value(t) is not None for t in d.test_tokens[:8])
    assert all(surface(t).isalpha() and not t.startswith("##") for t in d.test_tokens[8:])


def test_train_and_test_do_not_overlap(bert_data):
    d = bert_data
    seen = {w.lower() for w in d.train_words + d.valid_words}
    assert not seen & {surface(t).lower() for t in d.test_tokens}
    numbers = [w for w in d.train_words + d.valid_words if integer_value(w) is not None]
    assert len(numbers) == 2000 - sum(1 for t in d.test_tokens if (v := integer_value(t)) is not None and v < 2000)
    assert len(d.valid_words) == round(0.1 * len(numbers)) + round(0.1 * 15)
    assert not set(d.train_words) & set(d.valid_words)


def test_same_seed_same_lists_other_seed_other_lists(bert, bert_candidates, bert_data):
    again = build_probe_data(bert.tokenizer, bert_candidates, WORDS, seed=0, n_test=8, n_other=15)
    assert again.test_ids == bert_data.test_ids and again.train_words == bert_data.train_words
    other = build_probe_data(bert.tokenizer, bert_candidates, WORDS, seed=1, n_test=8, n_other=15)
    assert other.test_ids != bert_data.test_ids or other.train_words != bert_data.train_words


def test_no_rare_numbers_is_an_error(tiny_model_dir):
    t5 = load_model(str(tiny_model_dir("t5"))).tokenizer  # index ranking: no numeric token in its rare band
    with pytest.raises(DefembError, match="0 word-initial numeric"):
        build_probe_data(t5, candidate_tokens(t5, "sentencepiece", len(t5), "index"), WORDS, seed=0)


# --- hidden states -------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("family", "before", "after"), [("bert", 1, 1), ("gpt2", 0, 0), ("t5", 0, 1),
                                                         ("llama", 1, 0), ("bart", 1, 1)])
def test_specials_frame_the_word(tiny_model_dir, family, before, after):
    frame = special_frame(load_model(str(tiny_model_dir(family))).tokenizer)
    assert (len(frame[0]), len(frame[1])) == (before, after)


@pytest.mark.parametrize("family", ["bert", "t5", "gpt2"])
def test_word_state_is_the_mean_over_the_words_tokens(tiny_model_dir, family):
    loaded = load_model(str(tiny_model_dir(family)))
    words = [[5, 6, 7], [8], [9, 10]]  # different lengths: padded in one batch
    states = word_states(loaded, words, batch_size=8)
    before, after = special_frame(loaded.tokenizer)
    body = loaded.model.get_encoder() if loaded.kind == "encoder-decoder" else loaded.model.base_model
    for k, ids in enumerate(words):
        with torch.no_grad():
            hidden = body(input_ids=torch.tensor([before + ids + after])).last_hidden_state[0]
        expected = hidden[len(before) : len(before) + len(ids)].mean(0).numpy()
        np.testing.assert_allclose(states[k], expected, atol=1e-5)


# --- the evaluator -------------------------------------------------------------------------------------------

def test_run_is_paired_across_models_deterministic_and_resumable(tiny_model_dir, tmp_path):
    original = tiny_model_dir("bert")
    shifted_dir = tiny_model_dir("bert", fresh=True)
    shifted = load_model(str(shifted_dir))
    E = get_table(shifted.model)
    set_table(shifted.model, E + np.random.default_rng(0).normal(0, 0.5, size=E.shape).astype(np.float32))
    save_model(shifted, shifted_dir)
    config = ProbeConfig(models=[f"a={original}", f"b={shifted_dir}"], seeds=[0, 1], n_test=8, n_other=20)
    out = tmp_path / "out"
    records = run_probe(config, out, words=WORDS)
    assert [(r.label, r.seed, r.status) for r in records] == [("a", 0, "ok"), ("a", 1, "ok"), ("b", 0, "ok"),
                                                              ("b", 1, "ok")]
    for r in records:
        assert r.primary == "test/accuracy" and len(r.per_example["test/accuracy"]) == 16
        assert np.mean(r.per_example["test/accuracy"]) == pytest.approx(r.metrics["test/accuracy"])
        assert {"test/accuracy_numeric", "test/accuracy_other", "valid/accuracy"} <= set(r.metrics)
    tokens = {(label, seed): [line.split("\t")[:3] for line in (out / label / f"seed-{seed}" / "tokens.tsv")
                              .read_text().splitlines()] for label in "ab" for seed in (0, 1)}
    assert tokens["a", 0] == tokens["b", 0] and tokens["a", 1] == tokens["b", 1]  # paired
    assert tokens["a", 0] != tokens["a", 1]
    assert run_probe(config, out, words=WORDS) == []  # resumed: nothing left to do
    rerun = run_probe(ProbeConfig(models=[f"a={original}"], seeds=[0], n_test=8, n_other=20), tmp_path / "again",
                      words=WORDS)
    assert rerun[0].metrics == records[0].metrics and rerun[0].per_example == records[0].per_example


def test_command_with_a_word_file(tiny_model_dir, tmp_path, capsys):
    from defemb.cli import main

    words = tmp_path / "words.txt"
    words.write_text("# pool of other words\n" + "\n".join(WORDS) + "\n")
    out = tmp_path / "out"
    # the tiny BERT: wordfreq scores the tiny T5's few word-initial numbers as common words, none is rare
    assert main(["evaluate", "probe", "--models", f"tiny={tiny_model_dir('bert')}", "--words", str(words),
                 "--test-tokens", "2", "--other-words", "10", "--out", str(out)]) == 0
    assert "numeric probe" in capsys.readouterr().out
    (record,) = read_records(out)
    assert record.status == "ok" and record.config["test_tokens"] == 4
    words.write_text("two words\n")
    assert main(["evaluate", "probe", "--models", str(tiny_model_dir("t5")), "--words", str(words),
                 "--out", str(tmp_path / "o2")]) == 2


def test_word_file_errors_are_one_short_line(tmp_path):
    binary = tmp_path / "words.bin"
    binary.write_bytes(b"\xff\xfe" + bytes(200))
    with pytest.raises(DefembError, match="words.bin: --words file looks binary"):
        read_words(binary)
    long_line = tmp_path / "words.txt"
    long_line.write_text("seven " * 100_000)
    with pytest.raises(DefembError, match="words.txt:1: 'seven seven") as info:
        read_words(long_line)
    assert len(str(info.value)) < 300


@pytest.mark.slow
def test_minilm_probe_on_gcide(minilm_dir, tmp_path):
    records = run_probe(ProbeConfig(models=[f"minilm={minilm_dir}"], seeds=[0]), tmp_path / "out")
    (record,) = records
    assert record.status == "ok", record.error
    assert record.config["test_tokens"] == 156 and record.config["train_words"] > 2000
    assert record.metrics["test/accuracy"] > 0.8
