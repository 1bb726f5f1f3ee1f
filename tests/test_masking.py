"""What each strategy hides: every occurrence of the word and every other copy of its tokens; every form a target."""

from __future__ import annotations

import torch

from defemb.method.masking import Vocabulary, copies, corrupt_encoder, definition_first, mask_encoder
from defemb.models import load_tokenizer

# "park" is marked twice (two forms); its token also appears unmarked inside the definition (position 6).
RECORD = {"word": "park", "input_ids": [2, 10, 11, 12, 20, 21, 10, 22, 3], "word_positions": [[1], [2, 3]]}


def _vocab(tiny_model_dir, family):
    return Vocabulary.from_tokenizer(load_tokenizer(str(tiny_model_dir(family))))


def test_copies_are_unmarked_positions_of_the_words_tokens():
    assert copies(RECORD) == {6}
    assert copies({"input_ids": [5, 6, 7], "word_positions": [[1]]}) == set()


def test_encoder_training_and_embedding_hide_every_copy(tiny_model_dir):
    vocab = _vocab(tiny_model_dir, "bert")
    generator = torch.Generator().manual_seed(0)
    for _ in range(50):
        example = corrupt_encoder(RECORD, vocab, generator)
        assert example.input_ids[6] == vocab.mask_id and example.positions == [1, 2, 3]
    example = mask_encoder(RECORD, vocab)
    assert example.positions == [1, 2, 3] and example.targets == [10, 11, 12]
    assert [example.input_ids[p] for p in (1, 2, 3, 6)] == [vocab.mask_id] * 4
    assert [example.input_ids[p] for p in (0, 4, 5, 7, 8)] == [2, 20, 21, 22, 3]


def test_decoder_hides_every_form_and_trains_each(tiny_model_dir):
    vocab = _vocab(tiny_model_dir, "gpt2")
    context = [2, 20, 21, 22, 3][: 5 - vocab.trailing_specials]
    for group, word in ((0, [10]), (1, [11, 12])):
        example = definition_first(RECORD, vocab, group=group)
        assert example.input_ids == context + word and example.targets == word
        assert [example.input_ids[p + 1] for p in example.positions] == word
    generator = torch.Generator().manual_seed(0)
    drawn = {tuple(definition_first(RECORD, vocab, generator).targets) for _ in range(40)}
    assert drawn == {(10,), (11, 12)}  # training sees every form, not only the last
    assert definition_first(RECORD, vocab).targets == [11, 12]  # no generator, no group: the last form
