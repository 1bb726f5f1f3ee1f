"""evaluate lm-finetune: held-out loss while fine-tuning every weight or only the added rows."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from defemb.cli import main
from defemb.errors import DefembError
from defemb.evaluation import lm_finetune
from defemb.evaluation.lm_finetune import LmFinetuneConfig, finetune, prepare
from defemb.extend import ADDED_FILE, add_word_tokens, added_ids
from defemb.models import load_model

WORDS = ["gardenpark", "riverkeep"]
FAST = ["--steps", "6", "--eval-every", "3", "--batch-size", "4", "--max-length", "32", "--max-docs", "100"]


def write_text(folder):
    """Documents of a few sentences, most with a new word (never opening its sentence)."""
    rng = random.Random(0)
    names, places = ["Anna", "Ben", "Clara", "David"], ["the city", "the station", "the old market", "the office"]
    docs = []
    for _ in range(16):
        sentences = [f"{rng.choice(names)} walked to the {rng.choice(WORDS)} near {rng.choice(places)}.",
                     f"The {rng.choice(WORDS)} was green and quiet in {rng.choice(['May', 'June', 'July'])}.",
                     f"People met in {rng.choice(places)} every day."]
        docs.append(" ".join(sentences))
    path = folder / "docs.txt"
    path.write_text("\n".join(docs) + "\n", encoding="utf-8")
    return path


def extend_tiny(base, out, seed: int):
    """A tiny `extend`-like output: the words as tokens (as extend adds them), rows drawn with ``seed``."""
    model, tokenizer = AutoModelForCausalLM.from_pretrained(base), AutoTokenizer.from_pretrained(base)
    ids = add_word_tokens(tokenizer, WORDS)
    model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    rows = torch.randn(len(ids), model.config.hidden_size, generator=torch.Generator().manual_seed(seed)) * 0.1
    with torch.no_grad():
        for table in {id(t): t for t in (model.get_input_embeddings().weight, model.get_output_embeddings().weight)
                      }.values():
            table[torch.as_tensor(ids)] = rows
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / ADDED_FILE).write_text("word\tid\n" + "".join(f"{w}\t{i}\n" for w, i in zip(WORDS, ids, strict=True)),
                                  encoding="utf-8")
    return out


@pytest.fixture(scope="module")
def setup(tiny_model_dir, tmp_path_factory):
    """Text, the original tiny GPT-2 and two extended copies (different starts of the new rows)."""
    folder = tmp_path_factory.mktemp("lm-finetune")
    base = tiny_model_dir("gpt2")
    words = folder / "words.txt"
    words.write_text("\n".join(WORDS) + "\n", encoding="utf-8")
    return {"data": write_text(folder), "original": base, "words": words,
            "a": extend_tiny(base, folder / "ext-a", 1), "b": extend_tiny(base, folder / "ext-b", 2)}


def run(setup, out, models, *extra):
    args = ["evaluate", "lm-finetune", "--models", *[f"{m}={setup[m]}" for m in models], "--words",
            str(setup["words"]), "--data", str(setup["data"]), *FAST, "--out", str(out), *extra]
    return main(args)


def records(out):
    return {p.parent.parent.name: json.loads(p.read_text()) for p in out.rglob("result.json")}


def test_all_mode_lowers_the_held_out_loss(setup, tmp_path):
    assert run(setup, tmp_path / "out", ["a"], "--lr", "3e-3") == 0
    metrics = records(tmp_path / "out")["a"]["metrics"]
    assert metrics["heldout/loss"] < metrics["heldout/loss@0"] - 0.05
    assert set(metrics) >= {"heldout/loss@3", "heldout/loss@6", "word/nll", "after/nll", "train/loss"}


@pytest.mark.parametrize("family", ["gpt2", "llama"])  # tied head; untied head (its added rows train too)
def test_new_mode_changes_only_the_added_rows(tiny_model_dir, setup, tmp_path, family):
    path = extend_tiny(tiny_model_dir(family), tmp_path / "ext", 3)
    ids = added_ids(path)
    config = LmFinetuneConfig(models=[str(path)], words=str(setup["words"]), data=str(setup["data"]), steps=4,
                              train="new", batch_size=4, max_length=32, eval_every=2)
    split, _ = prepare(config)
    loaded = load_model(str(path))
    before = {name: p.detach().clone() for name, p in loaded.model.named_parameters()}
    metrics, _, _ = finetune(loaded.model, loaded.tokenizer, split, config, ids)
    tables = {"transformer.wte.weight", "model.embed_tokens.weight", "lm_head.weight"}
    moved = []
    for name, param in loaded.model.named_parameters():
        if name in tables:
            rest = np.setdiff1d(np.arange(param.shape[0]), ids)
            assert torch.equal(param[rest], before[name][rest]), name
            assert not torch.equal(param[ids], before[name][ids]), name
            moved.append(name)
        else:
            assert torch.equal(param, before[name]), name
    assert len(moved) == (1 if family == "gpt2" else 2)
    assert metrics["heldout/loss"] != metrics["heldout/loss@0"]


def test_bf16_trains_under_autocast_and_scores_in_float32(setup, monkeypatch):
    """--precision bf16: the training forward pass rounds (its losses differ a little from float32), while the
    held-out evaluation stays float32 (step 0 is the same); auto follows the measurement of defemb.precision."""
    curves = {}
    for precision in ("fp32", "bf16"):
        config = LmFinetuneConfig(models=["a"], words=str(setup["words"]), data=str(setup["data"]), steps=3,
                                  batch_size=4, max_length=32, eval_every=3, precision=precision)
        loaded = load_model(str(setup["a"]))
        metrics, _, curves[precision] = finetune(loaded.model, loaded.tokenizer, prepare(config)[0], config, None)
        assert metrics["train/bf16"] == float(precision == "bf16")
    fp32, bf16 = (np.array(curves[p]["train_loss"]) for p in ("fp32", "bf16"))
    assert not np.array_equal(fp32, bf16) and np.allclose(fp32, bf16, rtol=0.02)
    assert curves["fp32"]["heldout_loss"][0] == curves["bf16"]["heldout_loss"][0]
    config = LmFinetuneConfig(models=["a"], words="w", precision="auto")
    for measured in (True, False):
        monkeypatch.setattr("defemb.precision.use_bf16", lambda device, answer=measured: answer)
        assert config.bf16("cpu") is measured
    with pytest.raises(DefembError, match="--precision must be one of auto, bf16, fp32, got 'fp16'"):
        LmFinetuneConfig(models=["a"], words="w", precision="fp16")


def test_same_seed_same_curves_and_one_split_for_every_model(setup, tmp_path):
    """The second run lists the models the other way round: a curve must not depend on the models before it."""
    assert run(setup, tmp_path / "one", ["original", "a"]) == 0
    assert run(setup, tmp_path / "two", ["a", "original"]) == 0
    curves = [json.loads((tmp_path / out / "curves.json").read_text())["models"] for out in ("one", "two")]
    for label in ("original", "a"):
        for key in ("steps", "heldout_loss", "train_loss"):
            assert curves[0][label][key] == curves[1][label][key]
    runs = records(tmp_path / "one")
    assert runs["original"]["per_example"].keys() == runs["a"]["per_example"].keys() >= {"word/nll"}
    assert len(runs["original"]["per_example"]["word/nll"]) == len(runs["a"]["per_example"]["word/nll"])
    config = LmFinetuneConfig(models=["x"], words=str(setup["words"]), data=str(setup["data"]))
    first, second = prepare(config)[0], prepare(config)[0]
    assert first.held_out == second.held_out and np.array_equal(first.batches, second.batches)
    assert not set(first.held_out) & set(first.train) and {s for _, s, _ in first.examples} == set(first.held_out)
    other = prepare(LmFinetuneConfig(models=["x"], words=str(setup["words"]), data=str(setup["data"]), seed=1))[0]
    assert other.held_out != first.held_out


def test_new_mode_without_added_tsv_fails_that_model_only(setup, tmp_path, capsys):
    assert run(setup, tmp_path / "out", ["original", "a"], "--train", "new") == 0
    runs = records(tmp_path / "out")
    assert runs["a"]["status"] == "ok"
    assert runs["original"]["status"] == "failed"
    assert "no added.tsv" in runs["original"]["error"] and "--train all" in runs["original"]["error"]
    assert "\n" not in runs["original"]["error"]
    assert "original: failed" in (tmp_path / "out" / "curves.md").read_text()


def test_command_writes_curves_and_a_rerun_resumes(setup, tmp_path, monkeypatch):
    out = tmp_path / "out"
    assert run(setup, out, ["original", "a", "b"]) == 0
    for name in ("curves.json", "curves.md", "curves.png"):
        assert (out / name).stat().st_size > 0
    table = (out / "curves.md").read_text()
    assert "| step | original | a | b |" in table and "| 6 |" in table
    assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG"
    first = records(out)

    def no_training(*args, **kwargs):
        raise AssertionError("a finished model was trained again")

    monkeypatch.setattr(lm_finetune, "finetune", no_training)
    (out / "curves.md").unlink()
    assert run(setup, out, ["original", "a", "b"]) == 0
    assert records(out) == first
    assert (out / "curves.md").read_text() == table


@pytest.mark.parametrize("bad, message", [
    (["--steps", "0"], "--steps must be a whole number >= 1"),
    (["--held-out", "1.5"], "--held-out is the share"),
])
def test_bad_settings_are_one_line(setup, tmp_path, capsys, bad, message):
    assert run(setup, tmp_path / "out", ["a"], *bad) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_words_in_no_sentence_is_one_line(setup, tmp_path, capsys):
    words = tmp_path / "words.txt"
    words.write_text("zyzzyva\n", encoding="utf-8")
    args = ["evaluate", "lm-finetune", "--models", f"a={setup['a']}", "--words", str(words), "--data",
            str(setup["data"]), "--out", str(tmp_path / "out")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "none of the 1 words" in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("mode", ["all", "new"])
def test_an_interrupted_model_resumes_from_its_checkpoint_bit_for_bit(setup, tmp_path, monkeypatch, mode):
    """Killed after step 5 (checkpoint at step 4): the rerun trains steps 5-6 only and ends with the curve and
    scores of a run never interrupted; the checkpoint is gone once the record is written."""
    extra = ["--train", mode, "--lr", "3e-3"]
    assert run(setup, tmp_path / "whole", ["a"], *extra, "--eval-every", "2") == 0
    real, calls = lm_finetune.lm_loss, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(lm_finetune, "lm_loss", interrupted)
    assert run(setup, tmp_path / "cut", ["a"], *extra, "--eval-every", "2") == 130
    checkpoint = tmp_path / "cut" / "a" / "seed-0" / lm_finetune.CHECKPOINT
    assert json.loads((checkpoint / "state.json").read_text())["step"] == 4
    calls.clear()
    assert run(setup, tmp_path / "cut", ["a"], *extra, "--eval-every", "2") == 0
    assert len(calls) == 2 and not checkpoint.exists()
    whole, cut = (records(tmp_path / out)["a"] for out in ("whole", "cut"))
    timing = {"train/ms_per_step"}
    assert {k: v for k, v in cut["metrics"].items() if k not in timing} == \
        {k: v for k, v in whole["metrics"].items() if k not in timing}
    assert cut["per_example"] == whole["per_example"]
    whole, cut = (json.loads((tmp_path / out / "curves.json").read_text())["models"]["a"] for out in ("whole", "cut"))
    assert all(whole[key] == cut[key] for key in ("steps", "heldout_loss", "train_loss"))


def test_a_damaged_checkpoint_fails_that_model_in_one_line_and_is_kept(setup, tmp_path):
    out = tmp_path / "out"
    checkpoint = out / "a" / "seed-0" / lm_finetune.CHECKPOINT
    config = LmFinetuneConfig(models=[f"a={setup['a']}"], words=str(setup["words"]), data=str(setup["data"]),
                              steps=6, batch_size=4, max_length=32, eval_every=3, max_docs=100)
    assert run(setup, out, ["b"]) == 0  # the folder exists, with its settings
    checkpoint.mkdir(parents=True)
    key = lm_finetune.checkpoint_key(config, str(setup["a"]), None)
    (checkpoint / "state.json").write_text(json.dumps({"key": key, "step": 3, "curve": {}}))
    (checkpoint / "weights.safetensors").write_bytes(b"not safetensors")
    assert run(setup, out, ["a"]) == 0
    record = records(out)["a"]
    assert record["status"] == "failed" and "is damaged" in record["error"] and "\n" not in record["error"]
    assert checkpoint.is_dir()
    assert key != lm_finetune.checkpoint_key(config, str(setup["b"]), None)
