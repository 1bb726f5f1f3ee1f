"""Loading every architecture family, finding its tables, and keeping ties when writing them."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from defemb.errors import DefembError
from defemb.models import (
    config_kind,
    get_table,
    load_model,
    load_tokenizer,
    resolve_model_name,
    set_table,
    tables_present,
    tying,
)
from tiny_models import FAMILIES, FAMILY_FACTS


@pytest.mark.parametrize("family", FAMILIES)
def test_family_facts(tiny_model_dir, family):
    facts = FAMILY_FACTS[family]
    loaded = load_model(str(tiny_model_dir(family)))
    assert type(loaded.model).__name__ == facts["model_class"]
    assert loaded.kind == facts["kind"] == config_kind(str(tiny_model_dir(family)))  # with and without weights
    assert loaded.tokenizer_kind == facts["tokenizer_kind"]
    ties = tying(loaded.model)
    if facts["tied_output"] is None:
        assert ties["output_tied_to"] is None and "output" not in ties["tables"]
    elif facts["tied_output"]:
        expected = "decoder" if family == "t5gemma" else "input"
        assert expected in ties["output_tied_to"]
    else:
        assert "output" in ties["tables"] and ties["output_tied_to"] is None
    if facts["shared_encoder_decoder_embeddings"] is not None:
        assert ties["encoder_decoder_shared"] == facts["shared_encoder_decoder_embeddings"]


@pytest.mark.parametrize("family", FAMILIES)
def test_set_table_keeps_ties(tiny_model_dir, family):
    loaded = load_model(str(tiny_model_dir(family)))
    table = "decoder" if family == "t5gemma" else "input"
    E = get_table(loaded.model, table)
    new = np.arange(E.size, dtype=np.float32).reshape(E.shape) / E.size
    set_table(loaded.model, new, table)
    np.testing.assert_array_equal(get_table(loaded.model, table), new)
    present = tables_present(loaded.model)
    if present["output"] and FAMILY_FACTS[family]["tied_output"]:
        np.testing.assert_array_equal(get_table(loaded.model, "output"), new)
    if family == "t5gemma":  # the encoder's own table is untouched
        assert not np.array_equal(get_table(loaded.model, "encoder"), new)


def test_t5gemma_tables_are_separate(tiny_model_dir):
    loaded = load_model(str(tiny_model_dir("t5gemma")))
    enc, dec = get_table(loaded.model, "encoder"), get_table(loaded.model, "decoder")
    assert enc.shape == dec.shape and not np.array_equal(enc, dec)
    np.testing.assert_array_equal(get_table(loaded.model, "input"), enc)


def test_missing_tables_are_clear_errors(tiny_model_dir):
    bert = load_model(str(tiny_model_dir("bert")))
    with pytest.raises(DefembError, match="no output-embedding table"):
        get_table(bert.model, "output")
    with pytest.raises(DefembError, match="not an encoder-decoder"):
        get_table(bert.model, "decoder")
    with pytest.raises(DefembError, match="unknown table"):
        get_table(bert.model, "middle")


def test_resolve_names(tmp_path):
    assert resolve_model_name(str(tmp_path)) == str(tmp_path)
    assert resolve_model_name("org/some-model") == "org/some-model"  # a hub name is passed through
    with pytest.raises(DefembError, match="does not exist"):
        resolve_model_name(str(tmp_path / "nope"))
    with pytest.raises(DefembError, match="does not exist"):
        resolve_model_name("./not/here/either")


def test_offline_hub_name_is_a_one_line_error():
    with pytest.raises(DefembError, match="cannot load") as info:
        load_model("defemb-test/definitely-not-a-model")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("family", ["bert", "gpt2"])
def test_folder_without_tokenizer_files_is_refused(tiny_model_dir, tmp_path, family):
    folder = tmp_path / family
    folder.mkdir()
    for name in ("config.json", "model.safetensors", "tokenizer_config.json"):  # the config alone makes no vocabulary
        shutil.copy(tiny_model_dir(family) / name, folder / name)
    for load in (load_tokenizer, load_model):
        with pytest.raises(DefembError, match=f"model folder '{folder}' has no tokenizer files .*tokenizer.json"):
            load(str(folder))


def test_minilm_alias(minilm_dir):
    loaded = load_model("minilm")
    assert loaded.path == str(minilm_dir)
    assert get_table(loaded.model).shape == (30522, 384)
    assert loaded.kind == "encoder" and loaded.tokenizer_kind == "wordpiece"
