"""Token rankings and the 30/50/20 band split."""

from __future__ import annotations

import numpy as np
import pytest

from defemb.errors import DefembError
from defemb.frequency import band_split, parse_method, rank_tokens, special_ids
from defemb.models import load_model


@pytest.mark.parametrize("n", [10, 100, 30517, 7])
def test_band_sizes_are_30_50_20(n):
    bands = band_split(np.arange(n))
    sizes = [len(bands[b]) for b in ("frequent", "medium", "rare")]
    assert sum(sizes) == n
    assert sizes[0] == round(0.3 * n) and sizes[2] == round(0.2 * n)
    assert np.array_equal(np.concatenate(list(bands.values())), np.arange(n))


def test_parse_method_errors(tmp_path):
    assert parse_method("index") == ("index", None)
    for bad in ("zipf", "corpus", "index:3"):
        with pytest.raises(DefembError):
            parse_method(bad)
    with pytest.raises(DefembError, match="does not exist"):
        parse_method(f"corpus:{tmp_path / 'missing.txt'}")


@pytest.fixture(scope="module")
def gpt2(tiny_model_dir):
    return load_model(str(tiny_model_dir("gpt2")))


def test_index_ranking_skips_specials_and_follows_ids(gpt2):
    n_rows = gpt2.model.get_input_embeddings().weight.shape[0]
    ranking = rank_tokens(gpt2.tokenizer, n_rows, "index")
    assert np.all(np.diff(ranking.order) > 0)
    assert not set(ranking.order) & special_ids(gpt2.tokenizer)
    assert len(ranking.order) == len(gpt2.tokenizer) - len(special_ids(gpt2.tokenizer))


def test_corpus_ranking_counts_tokens(gpt2, tmp_path):
    corpus = tmp_path / "text.txt"
    corpus.write_text("the cat\n" * 50 + "102 102 102\n" * 5 + "\n", encoding="utf-8")
    n_rows = len(gpt2.tokenizer)
    ranking = rank_tokens(gpt2.tokenizer, n_rows, f"corpus:{corpus}", "bpe")
    counts = dict(zip(ranking.order.tolist(), ranking.scores.tolist(), strict=True))
    ids_cat = gpt2.tokenizer("the cat", add_special_tokens=False)["input_ids"]
    assert all(counts[i] >= 50 for i in ids_cat)
    top = set(ranking.order[: len(set(ids_cat))].tolist())
    assert top == set(ids_cat)
    assert np.all(np.diff(ranking.scores) <= 0)


def test_wordfreq_ranking_puts_common_words_first(minilm_dir):
    loaded = load_model(str(minilm_dir))
    ranking = rank_tokens(loaded.tokenizer, 30522, "wordfreq", "wordpiece")
    position = {t: k for k, t in enumerate(ranking.order.tolist())}
    vocab = loaded.tokenizer.get_vocab()
    words = [t for t in loaded.tokenizer.convert_ids_to_tokens(ranking.order[:100].tolist()) if t.isalpha()]
    assert words[0] == "the"
    assert position[vocab["sediment"]] < position[vocab["[unused5]"]]
    assert vocab["[unused5]"] in set(ranking.bands["rare"].tolist())
    assert vocab["[CLS]"] not in position


def test_wordfreq_ranking_scores_numbers_as_wordfreq_does(minilm_dir):
    import wordfreq

    from defemb.tokens import integer_value

    loaded = load_model(str(minilm_dir))
    ranking = rank_tokens(loaded.tokenizer, 30522, "wordfreq", "wordpiece")
    score = dict(zip(ranking.order.tolist(), ranking.scores.tolist(), strict=True))
    vocab = loaded.tokenizer.get_vocab()
    # wordfreq stores "2011" as the template "0000"; it must not score 0 and fall among the junk tokens
    assert score[vocab["2011"]] >= wordfreq.word_frequency("2011", "en") * 0.99
    assert score[vocab["2011"]] > score[vocab["[unused5]"]]
    band = ranking.band_of(30522)
    numbers = [i for t, i in vocab.items() if integer_value(t) is not None and len(t.lstrip("#")) > 1]
    assert sum(band[i] == "rare" for i in numbers) < len(numbers) / 2
    assert band[vocab["2011"]] == "frequent"


def test_wordfreq_ranking_does_not_call_ascii_punctuation_rare(minilm_dir):
    """wordfreq strips punctuation, so "," scored 0 and ranked rare: α 20 rebuilt MiniLM's comma row. ASCII
    punctuation now ranks with the frequent words; a symbol wordfreq does not list stays rare."""
    loaded = load_model(str(minilm_dir))
    ranking = rank_tokens(loaded.tokenizer, 30522, "wordfreq", "wordpiece")
    band = ranking.band_of(30522)
    vocab = loaded.tokenizer.get_vocab()
    for token in (",", ".", "-", "&", "/", "+", "(", "?"):
        assert band[vocab[token]] == "frequent", token
    score = dict(zip(ranking.order.tolist(), ranking.scores.tolist(), strict=True))
    unlisted = [i for t, i in vocab.items() if i in score and len(t) == 1 and not t.isascii() and not t.isalnum()
                and score[i] == 0]
    assert unlisted and all(band[i] == "rare" for i in unlisted)
    assert band[vocab["##,"]] == "rare"  # BERT's tokenizer never produces it
