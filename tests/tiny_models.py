"""Tiny, randomly initialised Hugging Face models of every architecture family, built in-process.

Nothing here touches a model hub: tokenizers are trained with the ``tokenizers`` library on a small,
deterministic English corpus (:func:`training_corpus`) and models are constructed from configs with
``torch.manual_seed(0)``.  :func:`build_tiny_model` saves model and tokenizer into one directory so
that code under test can load it with ``AutoModel.from_pretrained(dir)`` /
``AutoTokenizer.from_pretrained(dir)``.

Families (see :data:`FAMILY_FACTS` for what tests may assert about each):

========  ===============  =============  ======================================================
family    kind             tokenizer      output head
========  ===============  =============  ======================================================
bert      encoder          wordpiece      none (plain ``BertModel``, saved like all-MiniLM-L6-v2)
roberta   encoder          bpe            MLM head tied to the input table
bart      encoder-decoder  bpe            LM head tied to the single shared table
t5        encoder-decoder  sentencepiece  LM head tied to the single shared table
t5gemma   encoder-decoder  sentencepiece  LM head tied to the decoder table; encoder has its own
gpt2      decoder          bpe            LM head tied to the input table
llama     decoder          sentencepiece  untied LM head (``tie_word_embeddings=False``)
========  ===============  =============  ======================================================

Vocabulary sizes (== embedding rows): bert 500, roberta/bart/gpt2 600, t5 510 (500 + 10 sentinels),
t5gemma 500, llama 500.  Builds are byte-for-byte reproducible across processes.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, TypedDict

import torch
from tokenizers import (
    AddedToken,
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)
from transformers import (
    BartConfig,
    BartForConditionalGeneration,
    BertConfig,
    BertModel,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerFast,
    RobertaConfig,
    RobertaForMaskedLM,
    T5Config,
    T5ForConditionalGeneration,
    T5GemmaConfig,
    T5GemmaForConditionalGeneration,
)

__all__ = [
    "BERT_SPECIALS",
    "BPE_VOCAB_SIZE",
    "FAMILIES",
    "FAMILY_FACTS",
    "GEMMA_SPECIALS",
    "GPT2_SPECIALS",
    "HIDDEN_SIZE",
    "LLAMA_SPECIALS",
    "ROBERTA_SPECIALS",
    "T5_SENTINELS",
    "T5_SPECIALS",
    "VOCAB_SIZE",
    "FamilyFacts",
    "build_tiny_model",
    "build_tokenizer",
    "bytelevel_bpe_tokenizer",
    "digit_tokens",
    "sentencepiece_tokenizer",
    "training_corpus",
    "wordpiece_tokenizer",
]

# --------------------------------------------------------------------------------------------------
# Expected facts
# --------------------------------------------------------------------------------------------------

FAMILIES: tuple[str, ...] = ("bert", "roberta", "bart", "t5", "t5gemma", "gpt2", "llama")

HIDDEN_SIZE = 32
#: Target size of the *trained* WordPiece / Unigram vocabulary (T5 adds its ten sentinels on top).
VOCAB_SIZE = 500
#: Byte-level BPE spends 256 entries on its byte alphabet, so it gets a larger budget for merges.
BPE_VOCAB_SIZE = 600


class FamilyFacts(TypedDict):
    """What a test may assert about a tiny model of one family."""

    #: "encoder" | "encoder-decoder" | "decoder"
    kind: Literal["encoder", "encoder-decoder", "decoder"]
    #: "wordpiece" | "bpe" | "sentencepiece"
    tokenizer_kind: Literal["wordpiece", "bpe", "sentencepiece"]
    #: True: output projection *is* an input embedding table; False: separate tensor; None: no head.
    tied_output: bool | None
    #: encoder-decoder only: True if encoder and decoder share one table, False if separate; else None.
    shared_encoder_decoder_embeddings: bool | None
    #: Name of the ``transformers`` class that :func:`build_tiny_model` instantiates and saves.
    model_class: str
    #: Marker on word-initial ("Ġ", "▁") or word-continuing ("##") pieces in the raw vocabulary.
    subword_marker: str
    #: Whether the tokenizer defines a padding token (GPT-2 and Llama, like the real ones, do not).
    has_pad_token: bool


FAMILY_FACTS: dict[str, FamilyFacts] = {
    "bert": FamilyFacts(
        kind="encoder",
        tokenizer_kind="wordpiece",
        tied_output=None,
        shared_encoder_decoder_embeddings=None,
        model_class="BertModel",
        subword_marker="##",
        has_pad_token=True,
    ),
    "roberta": FamilyFacts(
        kind="encoder",
        tokenizer_kind="bpe",
        tied_output=True,
        shared_encoder_decoder_embeddings=None,
        model_class="RobertaForMaskedLM",
        subword_marker="Ġ",
        has_pad_token=True,
    ),
    "bart": FamilyFacts(
        kind="encoder-decoder",
        tokenizer_kind="bpe",
        tied_output=True,
        shared_encoder_decoder_embeddings=True,
        model_class="BartForConditionalGeneration",
        subword_marker="Ġ",
        has_pad_token=True,
    ),
    "t5": FamilyFacts(
        kind="encoder-decoder",
        tokenizer_kind="sentencepiece",
        tied_output=True,
        shared_encoder_decoder_embeddings=True,
        model_class="T5ForConditionalGeneration",
        subword_marker="▁",
        has_pad_token=True,
    ),
    "t5gemma": FamilyFacts(
        kind="encoder-decoder",
        tokenizer_kind="sentencepiece",
        tied_output=True,
        shared_encoder_decoder_embeddings=False,
        model_class="T5GemmaForConditionalGeneration",
        subword_marker="▁",
        has_pad_token=True,
    ),
    "gpt2": FamilyFacts(
        kind="decoder",
        tokenizer_kind="bpe",
        tied_output=True,
        shared_encoder_decoder_embeddings=None,
        model_class="GPT2LMHeadModel",
        subword_marker="Ġ",
        has_pad_token=False,
    ),
    "llama": FamilyFacts(
        kind="decoder",
        tokenizer_kind="sentencepiece",
        tied_output=False,
        shared_encoder_decoder_embeddings=None,
        model_class="LlamaForCausalLM",
        subword_marker="▁",
        has_pad_token=False,
    ),
}

# --------------------------------------------------------------------------------------------------
# Training corpus
# --------------------------------------------------------------------------------------------------

_NAMES = (
    "Alice", "Bob", "Carol", "David", "Emma", "Frank", "Grace", "Henry", "Maria", "John",
    "Sarah", "Peter", "Anna", "James", "Laura", "Michael", "Paris", "London", "Berlin", "Tokyo",
    "Google", "Microsoft", "Monday", "Friday", "January", "March", "England", "France",
)  # fmt: skip
_NOUNS = (
    "time", "year", "people", "way", "day", "man", "woman", "child", "world", "life", "hand",
    "part", "place", "week", "case", "point", "number", "group", "problem", "fact", "house",
    "book", "car", "city", "water", "money", "school", "family", "friend", "story", "game",
    "apple", "dog", "cat", "tree", "road", "letter", "table", "window", "river", "train",
)  # fmt: skip
_VERBS = (
    "saw", "found", "bought", "read", "wrote", "made", "took", "gave", "sold", "wanted",
    "liked", "needed", "counted", "opened", "kept", "moved", "painted", "carried", "washed",
)  # fmt: skip
_ADJS = (
    "good", "new", "first", "last", "long", "great", "little", "old", "big", "high",
    "small", "large", "young", "important", "red", "green", "happy", "early", "quiet",
)  # fmt: skip
_DAYS = ("Monday", "Friday")
_MONTHS = ("January", "March")
_PLACES = ("the park", "the station", "the market", "the library", "the office", "the garden", "the city")
#: Numbers that every vocabulary must contain as plain-digit tokens; repeated often in the corpus.
_KEY_NUMBERS = ("12", "102", "100", "2024", "1999", "20", "10")


def training_corpus(n_sentences: int = 600) -> list[str]:
    """A deterministic English corpus: common words, capitalised names and plenty of numbers.

    Numbers appear both as separate words ("in 1999") and glued to punctuation ("$102", "#12",
    "(2024)", "12:30") so that pure-digit pieces are learnt by every tokenizer family, including
    whitespace-only pre-tokenizers (Metaspace) where a bare word would become "▁102".
    """
    rng = random.Random(0)
    sentences: list[str] = []
    templates = (
        "{Name} {verb} {n} {adj} {noun}s in {year}.",
        "The {adj} {noun} was {n} years old.",
        "In {year}, {Name} and {Name2} {verb} a {adj} {noun} near {place}.",
        "{Name} paid ${k} for the {noun} on {date}.",
        "Room #{k} is on the {adj} floor of {place}.",
        "There were {n} {noun}s and {m} {noun2}s ({year}).",
        "At {k}:30, {Name} {verb} the {noun} with {Name2}.",
        "Chapter {k} ({year}) tells the story of a {adj} {noun}.",
        "We {verb} {n} of the {noun}s, not {k}.",
        "{Name} lives in {City} with {n} {noun}s and a {adj} {noun2}.",
        "Why did {Name} sell the {noun} for {n} dollars in {year}?",
        "Is the {adj} {noun} bigger than the {noun2}?",
        "It is {adj} that the {noun} and the {noun2} are here, but they were not there before.",
        "This is one of the {n} best {noun}s that {Name} has ever {verb}.",
    )
    cities = ("Paris", "London", "Berlin", "Tokyo")
    for i in range(n_sentences):
        template = templates[i % len(templates)]
        sentences.append(
            template.format(
                Name=rng.choice(_NAMES),
                Name2=rng.choice(_NAMES),
                City=rng.choice(cities),
                verb=rng.choice(_VERBS),
                adj=rng.choice(_ADJS),
                noun=rng.choice(_NOUNS),
                noun2=rng.choice(_NOUNS),
                place=rng.choice(_PLACES),
                n=i % 201,  # every number 0..200 appears at least once
                m=rng.randrange(0, 201),
                k=rng.choice(_KEY_NUMBERS),
                year=rng.choice(("1999", "2024", "2024", "1999", "2000", "1850", "2010")),
                date=f"{rng.choice(_DAYS)} {rng.randrange(1, 29)} {rng.choice(_MONTHS)}",
            )
        )
    # A few explicit lines so the key numbers are frequent enough to become whole tokens.
    for _ in range(20):
        sentences.append(" ".join(f"{k} (${k}) #{k}" for k in _KEY_NUMBERS))
    sentences.append(" ".join(str(n) for n in range(201)))
    return sentences


# --------------------------------------------------------------------------------------------------
# Tokenizers
# --------------------------------------------------------------------------------------------------

BERT_SPECIALS: tuple[str, ...] = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
ROBERTA_SPECIALS: tuple[str, ...] = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")
GPT2_SPECIALS: tuple[str, ...] = ("<|endoftext|>",)
T5_SPECIALS: tuple[str, ...] = ("<pad>", "</s>", "<unk>")
#: T5 sentinels; appended after the trained vocabulary so that, as in real T5, ``<extra_id_0>`` has the
#: highest id.
T5_SENTINELS: tuple[str, ...] = tuple(f"<extra_id_{i}>" for i in range(10))
LLAMA_SPECIALS: tuple[str, ...] = ("<unk>", "<s>", "</s>")
GEMMA_SPECIALS: tuple[str, ...] = ("<pad>", "<eos>", "<bos>", "<unk>", "<mask>")


def _special_kwargs(specials: Sequence[str], names: dict[str, str]) -> dict[str, str]:
    """``{"pad_token": "<pad>", ...}`` for those roles whose token is among ``specials``."""
    return {f"{role}_token": tok for role, tok in names.items() if tok in specials}


def _learn_wordpiece_vocab(word_counts: dict[str, int], specials: Sequence[str], size: int) -> list[str]:
    """Deterministic BPE-style WordPiece vocabulary learning (what ``WordPieceTrainer`` does).

    ``tokenizers.trainers.WordPieceTrainer`` is *not* reproducible: it numbers the ``##x`` pieces in
    hash-map iteration order, which varies from run to run, and merge ties are broken by those ids,
    so the learnt vocabulary itself changes between runs.  This re-implementation breaks every tie
    by the pair's text.  Returns specials, then the sorted alphabet (``x`` and ``##x``), then merges.
    """
    splits = {w: [w[0], *("##" + c for c in w[1:])] for w in sorted(word_counts)}
    vocab = list(specials) + sorted({piece for pieces in splits.values() for piece in pieces})
    known = set(vocab)
    while len(vocab) < size:
        pair_counts: dict[tuple[str, str], int] = {}
        for word, pieces in splits.items():
            for pair in zip(pieces, pieces[1:], strict=False):
                pair_counts[pair] = pair_counts.get(pair, 0) + word_counts[word]
        if not pair_counts:
            break
        (left, right), _ = min(pair_counts.items(), key=lambda item: (-item[1], item[0]))
        merged = left + right.removeprefix("##")
        for word, pieces in splits.items():
            out: list[str] = []
            i = 0
            while i < len(pieces):
                if i + 1 < len(pieces) and pieces[i] == left and pieces[i + 1] == right:
                    out.append(merged)
                    i += 2
                else:
                    out.append(pieces[i])
                    i += 1
            splits[word] = out
        if merged not in known:
            known.add(merged)
            vocab.append(merged)
    return vocab


def wordpiece_tokenizer(vocab_size: int = VOCAB_SIZE) -> PreTrainedTokenizerFast:
    """BERT-style uncased WordPiece tokenizer: ``[CLS] $A [SEP]``, ``##`` continuation pieces.

    Specials ``[PAD]=0 [UNK]=1 [CLS]=2 [SEP]=3 [MASK]=4``.  The vocabulary is learnt by
    :func:`_learn_wordpiece_vocab` (reproducible) on words produced by the tokenizer's own
    ``BertNormalizer(lowercase=True)`` + ``BertPreTokenizer``.
    """
    normalizer = normalizers.BertNormalizer(lowercase=True, clean_text=True, handle_chinese_chars=True)
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    word_counts: dict[str, int] = {}
    for sentence in training_corpus():
        for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(sentence)):
            word_counts[word] = word_counts.get(word, 0) + 1
    vocab = _learn_wordpiece_vocab(word_counts, BERT_SPECIALS, vocab_size)
    tok = Tokenizer(
        models.WordPiece(
            {piece: i for i, piece in enumerate(vocab)},
            unk_token="[UNK]",
            continuing_subword_prefix="##",
            max_input_chars_per_word=100,
        )
    )
    tok.normalizer = normalizer
    tok.pre_tokenizer = pre_tokenizer
    tok.add_special_tokens(list(BERT_SPECIALS))
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    tok.decoder = decoders.WordPiece(prefix="##")
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=128,
    )


def bytelevel_bpe_tokenizer(
    special_tokens: Sequence[str] = ROBERTA_SPECIALS, vocab_size: int = BPE_VOCAB_SIZE
) -> PreTrainedTokenizerFast:
    """GPT-2 / RoBERTa / BART byte-level BPE tokenizer (``Ġ`` marks a preceding space).

    ``special_tokens`` get the first ids, in order.  If both ``<s>`` and ``</s>`` are among them the
    RoBERTa template ``<s> $A </s>`` is added; otherwise (GPT-2: ``("<|endoftext|>",)``) no special
    tokens are added on encoding and ``<|endoftext|>`` serves as bos, eos and unk, with no pad token.
    """
    specials = list(special_tokens)
    tok = Tokenizer(models.BPE(unk_token="<unk>" if "<unk>" in specials else None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(training_corpus(), trainer=trainer)
    if "<s>" in specials and "</s>" in specials:
        tok.post_processor = processors.RobertaProcessing(
            ("</s>", tok.token_to_id("</s>")),
            ("<s>", tok.token_to_id("<s>")),
            trim_offsets=True,
            add_prefix_space=False,
        )
        kwargs = _special_kwargs(
            specials,
            {
                "bos": "<s>",
                "eos": "</s>",
                "cls": "<s>",
                "sep": "</s>",
                "pad": "<pad>",
                "unk": "<unk>",
                "mask": "<mask>",
            },
        )
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
        first = specials[0]
        kwargs = {"bos_token": first, "eos_token": first, "unk_token": first}
    return PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=128, **kwargs)


def _canonical_unigram_pieces(trained: list[list], specials: Sequence[str]) -> list[tuple[str, float]]:
    """Make a trained Unigram vocabulary reproducible: same pieces, scores and ids on every run.

    ``UnigramTrainer`` learns the same piece *set* every time, but (i) scores differ in their last
    bits (hash-map summation order), and (ii) the characters it must keep but did not learn are
    appended with scores ``min, min - 1e-4, min - 2e-4, ...`` handed out in hash-map order.  So:
    the pieces of that trailing 1e-4-spaced run are re-assigned to the run's scores in text order,
    every score is rounded to 6 decimals, and pieces are ordered by (score descending, text).
    """
    pieces = sorted(((str(p), float(sc)) for p, sc in trained if p not in specials), key=lambda x: -x[1])
    start = len(pieces) - 1
    while start > 0 and pieces[start - 1][1] - pieces[start][1] <= 1.5e-4:
        start -= 1
    tail_pieces = sorted(piece for piece, _ in pieces[start:])
    tail_scores = sorted((score for _, score in pieces[start:]), reverse=True)
    pieces = pieces[:start] + list(zip(tail_pieces, tail_scores, strict=True))
    return sorted(((piece, round(score, 6)) for piece, score in pieces), key=lambda x: (-x[1], x[0]))


def sentencepiece_tokenizer(
    special_tokens: Sequence[str] = T5_SPECIALS,
    extra_special_tokens: Sequence[str] = T5_SENTINELS,
    vocab_size: int = VOCAB_SIZE,
    template: str = "$A </s>",
) -> PreTrainedTokenizerFast:
    """SentencePiece-style Unigram tokenizer (Metaspace ``▁`` marks a preceding space).

    Defaults give T5: ``<pad>=0 </s>=1 <unk>=2``, trained pieces, then the ten sentinels
    ``<extra_id_9> ... <extra_id_0>`` (so ``<extra_id_0>`` has the highest id), ``$A </s>`` template.
    Llama: ``sentencepiece_tokenizer(LLAMA_SPECIALS, (), template="<s> $A")``.
    Gemma/T5Gemma: ``sentencepiece_tokenizer(GEMMA_SPECIALS, (), template="<bos> $A")``.
    """
    specials = list(special_tokens)
    pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    scratch = Tokenizer(models.Unigram())
    scratch.pre_tokenizer = pre_tokenizer
    trainer = trainers.UnigramTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        unk_token="<unk>",
        show_progress=False,
        max_piece_length=8,
    )
    # Unigram's EM drops pieces whose expected count is below 0.5, so on a small corpus it would stop
    # far short of ``vocab_size``; repeating the corpus scales the counts without changing the text.
    scratch.train_from_iterator(training_corpus() * 3, trainer=trainer)
    vocab = [(piece, 0.0) for piece in specials] + _canonical_unigram_pieces(
        json.loads(scratch.to_str())["model"]["vocab"], specials
    )
    tok = Tokenizer(models.Unigram(vocab, unk_id=specials.index("<unk>"), byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizer
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    tok.add_special_tokens(specials)
    sentinels = list(reversed(list(extra_special_tokens)))
    if sentinels:
        tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in sentinels])
    template_specials = [t for t in template.split() if t != "$A"]
    tok.post_processor = processors.TemplateProcessing(
        single=template,
        pair=f"{template} {template.replace('$A', '$B:1')}",
        special_tokens=[(t, tok.token_to_id(t)) for t in template_specials],
    )
    roles = {
        "pad": "<pad>",
        "unk": "<unk>",
        "mask": "<mask>",
        "bos": "<bos>" if "<bos>" in specials else "<s>",
        "eos": "<eos>" if "<eos>" in specials else "</s>",
    }
    kwargs = _special_kwargs(specials, roles)
    if sentinels:
        kwargs["additional_special_tokens"] = list(extra_special_tokens)
    return PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=128, **kwargs)


def build_tokenizer(family: str) -> PreTrainedTokenizerFast:
    """The tokenizer that :func:`build_tiny_model` saves for ``family``."""
    if family == "bert":
        return wordpiece_tokenizer()
    if family in ("roberta", "bart"):
        return bytelevel_bpe_tokenizer(ROBERTA_SPECIALS)
    if family == "gpt2":
        return bytelevel_bpe_tokenizer(GPT2_SPECIALS)
    if family == "t5":
        return sentencepiece_tokenizer(T5_SPECIALS, T5_SENTINELS, template="$A </s>")
    if family == "t5gemma":
        return sentencepiece_tokenizer(GEMMA_SPECIALS, (), template="<bos> $A")
    if family == "llama":
        return sentencepiece_tokenizer(LLAMA_SPECIALS, (), template="<s> $A")
    raise ValueError(f"unknown family {family!r}; expected one of {FAMILIES}")


def digit_tokens(tokenizer: PreTrainedTokenizerFast, *, strip_markers: bool = False) -> set[str]:
    """Vocabulary entries made only of ASCII digits.

    With ``strip_markers`` the family markers ``##``, ``Ġ`` and ``▁`` are removed first, so "▁102"
    counts as "102".
    """
    out: set[str] = set()
    for token in tokenizer.get_vocab():
        surface = token
        if strip_markers:
            surface = surface.removeprefix("##").lstrip("Ġ▁")
        if surface and surface.isascii() and surface.isdigit():
            out.add(surface)
    return out


# --------------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------------


def _build_model(family: str, tokenizer: PreTrainedTokenizerFast) -> PreTrainedModel:
    vocab = len(tokenizer)
    ids = tokenizer.convert_tokens_to_ids
    if family == "bert":
        config = BertConfig(
            vocab_size=vocab,
            hidden_size=HIDDEN_SIZE,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=128,
            type_vocab_size=2,
            pad_token_id=tokenizer.pad_token_id,
        )
        return BertModel(config)
    if family == "roberta":
        config = RobertaConfig(
            vocab_size=vocab,
            hidden_size=HIDDEN_SIZE,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=130,  # 128 positions + padding_idx offset, as in real RoBERTa
            type_vocab_size=1,
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            tie_word_embeddings=True,
        )
        return RobertaForMaskedLM(config)
    if family == "bart":
        config = BartConfig(
            vocab_size=vocab,
            d_model=HIDDEN_SIZE,
            encoder_layers=1,
            decoder_layers=1,
            encoder_attention_heads=2,
            decoder_attention_heads=2,
            encoder_ffn_dim=64,
            decoder_ffn_dim=64,
            max_position_embeddings=128,
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            decoder_start_token_id=tokenizer.eos_token_id,  # as in facebook/bart-*
            forced_eos_token_id=tokenizer.eos_token_id,
            tie_word_embeddings=True,
        )
        return BartForConditionalGeneration(config)
    if family == "t5":
        config = T5Config(
            vocab_size=vocab,
            d_model=HIDDEN_SIZE,
            d_kv=16,
            d_ff=64,
            num_layers=1,
            num_decoder_layers=1,
            num_heads=2,
            relative_attention_num_buckets=8,
            relative_attention_max_distance=32,
            feed_forward_proj="relu",
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            decoder_start_token_id=tokenizer.pad_token_id,  # T5 starts decoding from <pad>
            tie_word_embeddings=True,
        )
        return T5ForConditionalGeneration(config)
    if family == "t5gemma":
        special_ids = {
            "pad_token_id": tokenizer.pad_token_id,
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
        }
        module = dict(
            vocab_size=vocab,
            hidden_size=HIDDEN_SIZE,
            intermediate_size=64,
            num_hidden_layers=2,  # one "sliding_attention" and one "full_attention" layer
            num_attention_heads=2,
            num_key_value_heads=1,
            head_dim=16,
            query_pre_attn_scalar=16,
            max_position_embeddings=128,
            sliding_window=64,
            **special_ids,
        )
        config = T5GemmaConfig(
            encoder=dict(module),
            decoder=dict(module),
            vocab_size=vocab,
            tie_word_embeddings=True,
            decoder_start_token_id=tokenizer.bos_token_id,
            **special_ids,
        )
        return T5GemmaForConditionalGeneration(config)
    if family == "gpt2":
        config = GPT2Config(
            vocab_size=vocab,
            n_embd=HIDDEN_SIZE,
            n_layer=2,
            n_head=2,
            n_inner=64,
            n_positions=128,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            tie_word_embeddings=True,
        )
        return GPT2LMHeadModel(config)
    if family == "llama":
        config = LlamaConfig(
            vocab_size=vocab,
            hidden_size=HIDDEN_SIZE,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=1,
            head_dim=16,
            max_position_embeddings=128,
            bos_token_id=ids("<s>"),
            eos_token_id=ids("</s>"),
            pad_token_id=None,
            tie_word_embeddings=False,
        )
        return LlamaForCausalLM(config)
    raise ValueError(f"unknown family {family!r}; expected one of {FAMILIES}")


def build_tiny_model(family: str, out_dir: str | Path) -> Path:
    """Build a tiny random model of ``family`` with its tokenizer and save both into ``out_dir``.

    Deterministic: the tokenizer is trained on :func:`training_corpus` and the weights are drawn after
    ``torch.manual_seed(0)``.  The embedding table has exactly ``len(tokenizer)`` rows.  Returns
    ``out_dir`` as a :class:`~pathlib.Path`.
    """
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; expected one of {FAMILIES}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(family)
    torch.manual_seed(0)
    model = _build_model(family, tokenizer)
    model.eval()
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
