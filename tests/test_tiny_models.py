"""The tiny-model fixtures really are what the other tests assume they are."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
import transformers
from safetensors import safe_open
from transformers import AutoConfig, AutoModel, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from conftest import TinyModelFactory
from tiny_models import (
    FAMILIES,
    FAMILY_FACTS,
    HIDDEN_SIZE,
    T5_SENTINELS,
    build_tiny_model,
    build_tokenizer,
    digit_tokens,
    training_corpus,
)

SENTENCE = "Alice paid $12 for 102 apples in London in 2024."

#: Expected ``config.model_type`` per family.
MODEL_TYPES = {f: f for f in FAMILIES}
#: Model type of the backend ``tokenizers`` model per tokenizer kind.
BACKEND_MODEL = {"wordpiece": "WordPiece", "bpe": "BPE", "sentencepiece": "Unigram"}
#: (first, last) special tokens the tokenizer wraps a single sentence in; None = nothing added.
WRAPPING = {
    "bert": ("[CLS]", "[SEP]"),
    "roberta": ("<s>", "</s>"),
    "bart": ("<s>", "</s>"),
    "t5": (None, "</s>"),
    "t5gemma": ("<bos>", None),
    "gpt2": (None, None),
    "llama": ("<s>", None),
}
#: Token the decoder starts generating from (encoder-decoder families).
DECODER_START = {"bart": "</s>", "t5": "<pad>", "t5gemma": "<bos>"}


def _load(path: Path, family: str) -> PreTrainedModel:
    cls = getattr(transformers, FAMILY_FACTS[family]["model_class"])
    model = cls.from_pretrained(path)
    model.eval()
    return model


def _tables(model: PreTrainedModel, family: str) -> dict[str, torch.nn.Parameter]:
    """Every input embedding table of the model plus the output projection (if any), by role."""
    tables: dict[str, torch.nn.Parameter] = {"input": model.get_input_embeddings().weight}
    if FAMILY_FACTS[family]["kind"] == "encoder-decoder":
        tables["encoder"] = model.get_encoder().embed_tokens.weight
        tables["decoder"] = model.get_decoder().embed_tokens.weight
    out = model.get_output_embeddings()
    if out is not None:
        tables["output"] = out.weight
    return tables


@pytest.fixture(params=FAMILIES)
def family(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def built(family: str, tiny_model_dir: TinyModelFactory) -> Path:
    return tiny_model_dir(family)


def test_facts_cover_every_family() -> None:
    assert set(FAMILY_FACTS) == set(FAMILIES)
    assert len(FAMILIES) == len(set(FAMILIES)) == 7
    for facts in FAMILY_FACTS.values():
        assert facts["kind"] in ("encoder", "encoder-decoder", "decoder")
        assert facts["tokenizer_kind"] in BACKEND_MODEL
        assert (facts["shared_encoder_decoder_embeddings"] is None) == (facts["kind"] != "encoder-decoder")
        assert hasattr(transformers, facts["model_class"])


def test_hub_is_offline() -> None:
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert os.environ["TRANSFORMERS_OFFLINE"] == "1"


def test_corpus_is_deterministic_and_numeric() -> None:
    corpus = training_corpus()
    assert corpus == training_corpus()
    assert len(corpus) >= 300
    text = " ".join(corpus)
    words = set(text.replace(".", " ").replace(",", " ").split())
    assert {str(n) for n in range(201)} <= words
    assert {"1999", "2024", "Alice", "London", "the"} <= words


def test_reloads_with_auto_classes(family: str, built: Path) -> None:
    facts = FAMILY_FACTS[family]
    config = AutoConfig.from_pretrained(built)
    assert config.model_type == MODEL_TYPES[family]
    assert config.architectures == [facts["model_class"]]
    assert (built / "model.safetensors").is_file()
    assert (built / "tokenizer.json").is_file()

    tokenizer = AutoTokenizer.from_pretrained(built)
    assert isinstance(tokenizer, PreTrainedTokenizerBase)
    assert tokenizer.is_fast

    base = AutoModel.from_pretrained(built)
    specific = _load(built, family)
    assert type(specific).__name__ == facts["model_class"]
    if family == "bert":
        assert type(base) is transformers.BertModel
        assert base.pooler is not None  # saved like all-MiniLM-L6-v2: plain encoder with pooler
    # The base model loaded by AutoModel carries the same input table as the full model.
    assert torch.equal(base.get_input_embeddings().weight, specific.get_input_embeddings().weight)


def test_reloaded_tokenizer_matches_builder(family: str, built: Path) -> None:
    fresh = build_tokenizer(family)
    loaded = AutoTokenizer.from_pretrained(built)
    assert loaded.get_vocab() == fresh.get_vocab()
    assert loaded(SENTENCE)["input_ids"] == fresh(SENTENCE)["input_ids"]
    assert loaded.all_special_tokens == fresh.all_special_tokens
    ids = loaded(SENTENCE, add_special_tokens=False)["input_ids"]
    decoded = loaded.decode(ids).strip()
    if family == "bert":  # uncased, and the WordPiece decoder puts spaces around punctuation ("$ 12")
        assert decoded.replace(" ", "") == SENTENCE.lower().replace(" ", "")
    else:
        assert decoded == SENTENCE


def test_vocab_sizes_match(family: str, built: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(built)
    model = _load(built, family)
    vocab = len(tokenizer)
    assert 400 <= vocab <= 620
    assert model.config.vocab_size == vocab
    for role, table in _tables(model, family).items():
        assert tuple(table.shape) == (vocab, HIDDEN_SIZE), role
    assert max(tokenizer.get_vocab().values()) == vocab - 1


def test_tokenizer_family(family: str, built: Path) -> None:
    kind = FAMILY_FACTS[family]["tokenizer_kind"]
    tokenizer = AutoTokenizer.from_pretrained(built)
    backend = json.loads(tokenizer.backend_tokenizer.to_str())
    assert backend["model"]["type"] == BACKEND_MODEL[kind]
    vocab = list(tokenizer.get_vocab())
    counts = {marker: sum(t.startswith(marker) for t in vocab) for marker in ("##", "Ġ", "▁")}
    marker = FAMILY_FACTS[family]["subword_marker"]
    assert counts[marker] >= 50, counts
    assert all(n == 0 for m, n in counts.items() if m != marker), counts
    pieces = tokenizer.tokenize("Unbelievable zebras photographed")  # words not in the corpus
    assert any(marker in p for p in pieces), pieces
    if kind == "wordpiece":
        assert tokenizer.tokenize("Alice London") == ["alice", "london"]  # uncased
    else:
        assert "A" in "".join(tokenizer.tokenize("Alice"))  # cased


def test_digit_tokens_exist(family: str, built: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(built)
    bare = digit_tokens(tokenizer)
    assert {str(d) for d in range(10)} <= bare
    assert {"12", "102", "100"} <= bare, sorted(bare)
    assert len(bare - {str(d) for d in range(10)}) >= 5
    assert {"1999", "2024"} <= digit_tokens(tokenizer, strip_markers=True)
    # A standalone number from the corpus is a single token (possibly with its word marker).
    for number in ("12", "102", "2024"):
        pieces = [p.lstrip("Ġ▁") for p in tokenizer.tokenize(f"Alice paid {number} dollars")]
        assert number in pieces, (number, pieces)


def test_special_tokens_match_config(family: str, built: Path) -> None:
    facts = FAMILY_FACTS[family]
    tokenizer = AutoTokenizer.from_pretrained(built)
    config = AutoConfig.from_pretrained(built)
    assert tokenizer.unk_token is not None
    if facts["has_pad_token"]:
        assert tokenizer.pad_token is not None
        assert config.pad_token_id == tokenizer.pad_token_id
    else:
        assert tokenizer.pad_token is None
        assert getattr(config, "pad_token_id", None) is None
    if family == "bert":
        roles = (tokenizer.cls_token, tokenizer.sep_token, tokenizer.mask_token)
        assert roles == ("[CLS]", "[SEP]", "[MASK]")
    if family in ("roberta", "bart"):
        assert tokenizer.mask_token == "<mask>"
    if family == "t5":
        assert tokenizer.convert_ids_to_tokens(len(tokenizer) - 1) == "<extra_id_0>"
        assert set(T5_SENTINELS) <= set(tokenizer.all_special_tokens)
        assert tokenizer.tokenize("a <extra_id_3> b").count("<extra_id_3>") == 1
    for role in ("bos", "eos"):
        token_id = getattr(tokenizer, f"{role}_token_id")
        if family not in ("bert", "t5"):  # BERT has neither, T5 has no bos
            assert token_id is not None, role
            assert getattr(config, f"{role}_token_id") == token_id, role
    if facts["kind"] == "encoder-decoder":
        expected = tokenizer.convert_tokens_to_ids(DECODER_START[family])
        assert config.decoder_start_token_id == expected

    first, last = WRAPPING[family]
    ids = tokenizer(SENTENCE)["input_ids"]
    plain = tokenizer(SENTENCE, add_special_tokens=False)["input_ids"]
    assert len(ids) == len(plain) + (first is not None) + (last is not None)
    if first is not None:
        assert ids[0] == tokenizer.convert_tokens_to_ids(first)
    if last is not None:
        assert ids[-1] == tokenizer.convert_tokens_to_ids(last)


def test_tying_facts(family: str, built: Path) -> None:
    facts = FAMILY_FACTS[family]
    model = _load(built, family)
    tables = _tables(model, family)
    tied = facts["tied_output"]
    if tied is None:
        assert "output" not in tables
    else:
        # Tied heads are tied to the table the *decoding* side reads (the decoder's for enc-dec).
        source = tables["decoder" if facts["kind"] == "encoder-decoder" else "input"]
        assert (tables["output"] is source) == tied
        assert (tables["output"].data_ptr() == source.data_ptr()) == tied
        if not tied:
            assert not torch.equal(tables["output"], source)
    shared = facts["shared_encoder_decoder_embeddings"]
    if shared is not None:
        assert (tables["encoder"] is tables["decoder"]) == shared
        assert (tables["encoder"] is tables["input"]) and tables["input"] is not None
        if not shared:
            assert tables["encoder"].data_ptr() != tables["decoder"].data_ptr()
            assert not torch.equal(tables["encoder"], tables["decoder"])


def test_tying_spelled_out(tiny_model_dir: TinyModelFactory) -> None:
    gpt2 = _load(tiny_model_dir("gpt2"), "gpt2")
    assert gpt2.lm_head.weight is gpt2.transformer.wte.weight

    llama = _load(tiny_model_dir("llama"), "llama")
    assert llama.config.tie_word_embeddings is False
    assert llama.lm_head.weight is not llama.model.embed_tokens.weight
    assert not torch.equal(llama.lm_head.weight, llama.model.embed_tokens.weight)

    t5gemma = _load(tiny_model_dir("t5gemma"), "t5gemma")
    encoder, decoder = t5gemma.model.encoder.embed_tokens.weight, t5gemma.model.decoder.embed_tokens.weight
    assert encoder is not decoder and not torch.equal(encoder, decoder)
    assert t5gemma.lm_head.out_proj.weight is decoder
    assert (t5gemma.config.encoder.head_dim, t5gemma.config.encoder.num_attention_heads) == (16, 2)
    assert t5gemma.config.encoder.num_key_value_heads == 1
    assert set(t5gemma.config.decoder.layer_types) == {"sliding_attention", "full_attention"}

    bart = _load(tiny_model_dir("bart"), "bart")
    assert bart.model.encoder.embed_tokens.weight is bart.model.shared.weight
    assert bart.model.decoder.embed_tokens.weight is bart.model.shared.weight
    assert bart.lm_head.weight is bart.model.shared.weight

    roberta = _load(tiny_model_dir("roberta"), "roberta")
    assert roberta.lm_head.decoder.weight is roberta.roberta.embeddings.word_embeddings.weight


def test_safetensors_hold_separate_tables(tiny_model_dir: TinyModelFactory) -> None:
    """Code that reads the checkpoint directly finds every untied table stored under its own key."""

    def keys(family: str) -> set[str]:
        with safe_open(str(tiny_model_dir(family) / "model.safetensors"), framework="pt") as f:
            return set(f.keys())

    assert {"lm_head.weight", "model.embed_tokens.weight"} <= keys("llama")
    assert {"model.encoder.embed_tokens.weight", "model.decoder.embed_tokens.weight"} <= keys("t5gemma")
    assert "embeddings.word_embeddings.weight" in keys("bert")


def test_forward_pass(family: str, built: Path) -> None:
    facts = FAMILY_FACTS[family]
    tokenizer = AutoTokenizer.from_pretrained(built)
    model = _load(built, family)
    enc = tokenizer(SENTENCE, return_tensors="pt")
    length, vocab = enc["input_ids"].shape[1], len(tokenizer)
    kwargs = {}
    if facts["kind"] == "encoder-decoder":
        start = model.config.decoder_start_token_id
        kwargs["decoder_input_ids"] = torch.tensor([[start] + enc["input_ids"][0, :4].tolist()])
    with torch.no_grad():
        out = model(**enc, **kwargs)
    if facts["tied_output"] is None:
        assert out.last_hidden_state.shape == (1, length, HIDDEN_SIZE)
        assert torch.isfinite(out.last_hidden_state).all()
    else:
        expected_len = 5 if facts["kind"] == "encoder-decoder" else length
        assert out.logits.shape == (1, expected_len, vocab)
        assert torch.isfinite(out.logits).all()


def test_batched_forward_with_padding(tiny_model_dir: TinyModelFactory) -> None:
    path = tiny_model_dir("bert")
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = _load(path, "bert")
    enc = tokenizer(["Alice paid $12.", SENTENCE], padding=True, return_tensors="pt")
    assert (enc["input_ids"][0] == tokenizer.pad_token_id).any()
    with torch.no_grad():
        hidden = model(**enc).last_hidden_state
    assert hidden.shape[:2] == enc["input_ids"].shape


def test_builds_are_deterministic(family: str, built: Path, tmp_path: Path) -> None:
    again = build_tiny_model(family, tmp_path / family)
    assert (again / "tokenizer.json").read_text() == (built / "tokenizer.json").read_text()
    with (
        safe_open(str(built / "model.safetensors"), framework="pt") as a,
        safe_open(str(again / "model.safetensors"), framework="pt") as b,
    ):
        assert set(a.keys()) == set(b.keys())
        for key in a.keys():
            assert torch.equal(a.get_tensor(key), b.get_tensor(key)), key


def test_factory_caches_and_fresh_copies(tiny_model_dir: TinyModelFactory) -> None:
    first = tiny_model_dir("gpt2")
    assert tiny_model_dir("gpt2") == first
    fresh = tiny_model_dir("gpt2", fresh=True)
    assert fresh != first
    assert (fresh / "config.json").read_text() == (first / "config.json").read_text()
    with pytest.raises(ValueError, match="unknown family"):
        tiny_model_dir("nope")


def test_build_rejects_unknown_family(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown family"):
        build_tiny_model("xlnet", tmp_path)


def test_minilm_dir_is_real_all_minilm(minilm_dir: Path) -> None:
    config = AutoConfig.from_pretrained(minilm_dir)
    assert config.model_type == "bert"
    assert (config.hidden_size, config.num_hidden_layers, config.vocab_size) == (384, 6, 30522)
    tokenizer = AutoTokenizer.from_pretrained(minilm_dir)
    assert len(tokenizer) == 30522
    assert tokenizer.tokenize("Hello world") == ["hello", "world"]
    assert (minilm_dir / "model.safetensors").is_file()
