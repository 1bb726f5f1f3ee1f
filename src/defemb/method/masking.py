"""Turn a corpus record into a model input with target positions, one strategy per architecture (METHOD §7).

Every strategy returns an `Example`: the token ids the model reads (for encoder-decoders also the
decoder ids), the positions whose last hidden state predicts a row, and the token ids whose pretrained
rows are the targets. Randomness comes from a caller-supplied ``torch.Generator``, so a run seeded per
step masks identically after a resume.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from defemb.tokens import padding_id, special_frame

MASK_SHARE, RANDOM_SHARE = 0.5, 0.25  # BERT-style corruption: 50 % mask, 25 % random, 25 % kept


@dataclass
class Example:
    input_ids: list[int]
    positions: list[int]  # where the prediction is read (in decoder_input_ids for encoder-decoders)
    targets: list[int]  # token ids whose pretrained rows are the targets
    decoder_input_ids: list[int] | None = None


@dataclass
class Vocabulary:
    """Token facts the strategies need, resolved once from the tokenizer."""

    mask_id: int | None
    sentinels: list[int]  # <extra_id_0>, <extra_id_1>, ... or [mask_id] for BART-style models
    special_ids: frozenset[int]
    size: int
    decoder_start_id: int | None = None
    trailing_specials: int = 0  # tokens the tokenizer appends after a text (e.g. </s>, [SEP])
    pad_id: int = 0  # GPT-2/Llama have no pad token: padding is masked out, so EOS (or 0) serves

    @classmethod
    def for_model(cls, loaded) -> Vocabulary:
        """From a `LoadedModel`: its tokenizer and, for encoder-decoders, the decoder start id."""
        return cls.from_tokenizer(loaded.tokenizer, getattr(loaded.model.config, "decoder_start_token_id", None))

    @classmethod
    def from_tokenizer(cls, tokenizer, decoder_start_id: int | None = None) -> Vocabulary:
        vocab = tokenizer.get_vocab()
        numbered = sorted(
            ((int(m.group(1)), i) for t, i in vocab.items() if (m := re.fullmatch(r"<extra_id_(\d+)>", t))),
        )
        mask_id = tokenizer.mask_token_id
        sentinels = [i for _, i in numbered] or ([mask_id] if mask_id is not None else [])
        trailing = len(special_frame(tokenizer)[1])
        return cls(mask_id, sentinels, frozenset(tokenizer.all_special_ids), len(tokenizer), decoder_start_id,
                   trailing, padding_id(tokenizer))


def copies(record: dict) -> set[int]:
    """Positions outside the marked word spans whose token is one of the word's own tokens.

    A prompt can hold the word's token elsewhere ("park" in the definition of "parks", a piece inside a
    compound): left visible, the model copies it instead of reading the definition, so training and
    embedding hide these copies too (METHOD §8).
    """
    ids = record["input_ids"]
    marked = {p for group in record["word_positions"] for p in group}
    own = {ids[p] for p in marked}
    return {p for p, token in enumerate(ids) if token in own and p not in marked}


def corrupt_encoder(record: dict, vocab: Vocabulary, generator: torch.Generator) -> Example:
    """Encoder-only: corrupt every token of every occurrence; predict each at its own position.

    Other copies of the word's tokens are always masked (never targets)."""
    if vocab.mask_id is None:
        raise ValueError("the tokenizer has no mask token; encoder-only training needs one")
    ids = list(record["input_ids"])
    positions = [p for group in record["word_positions"] for p in group]
    draws = torch.rand(len(positions), generator=generator).tolist()
    randoms = torch.randint(0, vocab.size, (len(positions),), generator=generator).tolist()
    targets = [ids[p] for p in positions]
    for p, draw, random_id in zip(positions, draws, randoms, strict=True):
        if draw < MASK_SHARE:
            ids[p] = vocab.mask_id
        elif draw < MASK_SHARE + RANDOM_SHARE:
            ids[p] = random_id if random_id not in vocab.special_ids else vocab.mask_id
    for p in copies(record):
        ids[p] = vocab.mask_id
    return Example(ids, positions, targets)


def mask_encoder(record: dict, vocab: Vocabulary, generator: torch.Generator | None = None) -> Example:
    """Encoder-only, for `embed`: every occurrence of the word and every copy of its tokens masked, each marked
    position read — the masked case of training, with nothing of the word left in view."""
    if vocab.mask_id is None:
        raise ValueError("the tokenizer has no mask token; encoder-only models need one")
    ids = list(record["input_ids"])
    positions = [p for group in record["word_positions"] for p in group]
    targets = [ids[p] for p in positions]
    for p in [*positions, *copies(record)]:
        ids[p] = vocab.mask_id
    return Example(ids, positions, targets)


def sentinel_seq2seq(record: dict, vocab: Vocabulary, generator: torch.Generator | None = None) -> Example:
    """Encoder-decoder: each occurrence becomes a sentinel; the decoder reads ``<M1> w1 <M2> w2 ...``.

    With teacher forcing the decoder state at index t (input: label t−1) predicts label t, so the
    positions are those of the word tokens in the label sequence.
    """
    if not vocab.sentinels or vocab.decoder_start_id is None:
        raise ValueError("the tokenizer has neither <extra_id_N> sentinels nor a mask token")
    ids = record["input_ids"]
    groups = record["word_positions"]
    start_of = {group[0]: k for k, group in enumerate(groups)}
    skip = {p for group in groups for p in group}
    encoder_ids, labels, label_is_word = [], [], []
    for p, token in enumerate(ids):
        if p in start_of:
            k = start_of[p]
            sentinel = vocab.sentinels[min(k, len(vocab.sentinels) - 1)]
            encoder_ids.append(sentinel)
            labels.append(sentinel)
            label_is_word.append(False)
            for q in groups[k]:
                labels.append(ids[q])
                label_is_word.append(True)
        elif p not in skip:
            encoder_ids.append(token)
    decoder_input_ids = [vocab.decoder_start_id, *labels[:-1]]
    positions = [t for t, is_word in enumerate(label_is_word) if is_word]
    return Example(encoder_ids, positions, [labels[t] for t in positions], decoder_input_ids)


def definition_first(record: dict, vocab: Vocabulary, generator: torch.Generator | None = None,
                     group: int | None = None) -> Example:
    """Decoder-only: the prompt without the word, then one form of the word; each of its tokens is predicted from
    the state before it (its position minus one).

    Every marked form is a target: ``group`` picks one; otherwise training draws one with ``generator`` (so over
    the epochs each form of each prompt is trained) and without a generator the last is used. The context
    hides every occurrence of every form (and other copies of their tokens): reading one form while predicting
    another would let the model copy the pretrained row instead of reading the definition.
    """
    ids = record["input_ids"]
    groups = record["word_positions"]
    if group is None:
        group = int(torch.randint(len(groups), (1,), generator=generator)) if generator is not None else len(groups) - 1
    skip = {p for g in groups for p in g} | copies(record)
    end = len(ids) - vocab.trailing_specials
    context = [token for p, token in enumerate(ids[:end]) if p not in skip]
    word = [ids[p] for p in groups[group]]
    sequence = context + word
    positions = list(range(len(context) - 1, len(sequence) - 1))
    return Example(sequence, positions, word)


STRATEGIES = {"encoder": corrupt_encoder, "encoder-decoder": sentinel_seq2seq, "decoder": definition_first}
