"""`defemb evaluate classification`: task readers, input checks before training, runs, failures, resume, seeds."""

from __future__ import annotations

import itertools
import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, f1_score

from defemb.cli import main
from defemb.errors import DefembError
from defemb.evaluation import classification as cls
from defemb.evaluation.classification import (
    ClassificationConfig,
    encode,
    evaluate_classification,
    length_grouped_batches,
    load_for_classification,
    score,
    training_config,
)
from defemb.evaluation.records import read_record, read_records
from defemb.evaluation.tasks import Example, load_task

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
WORDS = "alice saw the old dog near park bob wrote book river green car city".split()
MARKER = "money"


def marker_examples(n: int, seed: int) -> list[tuple[str, str, str]]:
    """(sentence1, sentence2, label): label 'yes' exactly when sentence1 holds the marker word."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        words = [rng.choice(WORDS) for _ in range(5)]
        if i % 2:
            words[rng.randrange(5)] = MARKER
        rows.append((" ".join(words), " ".join(rng.choice(WORDS) for _ in range(3)), "yes" if i % 2 else "no"))
    return rows


def write_task(folder: Path, n: tuple[int, int, int] = (40, 20, 20), pair: bool = True) -> Path:
    """A tiny `tsv:` task (train/dev/test) on the marker rule; returns the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, count, seed in zip(("train", "dev", "test"), n, (0, 1, 2), strict=True):
        header = "sentence1\tsentence2\tlabel" if pair else "sentence1\tlabel"
        lines = [header] + [f"{a}\t{b}\t{y}" if pair else f"{a}\t{y}" for a, b, y in marker_examples(count, seed)]
        (folder / f"{split}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def config(task_dir: Path, models: list[str], seeds="1", **training) -> ClassificationConfig:
    options = {"epochs": 1.0, "batch_size": 8, "lr": 1e-3, **training}
    task = f"tsv:{task_dir}"
    training_options = training_config("small", task, **options)
    return ClassificationConfig(task=task, models=models, seeds=seeds, training=training_options)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def no_training(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("training started although the input was bad")

    monkeypatch.setattr(cls, "train", fail)
    monkeypatch.setattr(cls, "run_one", fail)


# ------------------------------------------------------------------------------------------- readers


def _needs(path: Path):
    return pytest.mark.skipif(not path.exists(), reason=f"shared data {path} not present")


@_needs(DATA / "glue-mrpc")
def test_mrpc_reader_counts_and_quotes():
    task = load_task("mrpc", DATA / "glue-mrpc")
    assert {s: len(v) for s, v in task.splits.items()} == {"train": 3668, "dev": 408, "test": 1725}
    assert task.labels == ["0", "1"]
    assert sum(e.label for e in task.splits["test"]) == 1147
    assert sum(e.label for e in task.splits["train"]) == 2474
    first = task.splits["dev"][0]  # QUOTE_NONE keeps the unbalanced quote inside the sentence
    assert first.text_b.startswith('"The foodservice pie business') and first.label == 1
    assert task.files["test"].name == "msr_paraphrase_test.txt"


@_needs(DATA / "glue-rte")
def test_rte_reader_counts_and_no_test():
    task = load_task("rte", DATA / "glue-rte")
    assert {s: len(v) for s, v in task.splits.items()} == {"train": 2490, "dev": 277}
    assert task.labels == ["entailment", "not_entailment"]
    assert sum(e.label == 0 for e in task.splits["dev"]) == 146
    assert any("no labels" in note for note in task.notes)


def test_tsv_reader_labels_single_sentence_and_unlabelled_test(tmp_path):
    folder = write_task(tmp_path / "t", pair=False)
    (folder / "test.tsv").write_text("sentence1\nhello there\n", encoding="utf-8")
    task = load_task(f"tsv:{folder}")
    assert task.labels == ["no", "yes"]  # sorted: id 1 ('yes') is the positive class
    assert set(task.splits) == {"train", "dev"} and "no 'label' column" in task.notes[0]
    first = task.splits["train"][1]
    assert first.text_b is None and MARKER in first.text_a and first.label == 1
    numeric = write_task(tmp_path / "n")
    for split in ("train", "dev", "test"):
        path = numeric / f"{split}.tsv"
        path.write_text(path.read_text().replace("\tyes\n", "\t10\n").replace("\tno\n", "\t2\n"))
    assert load_task(f"tsv:{numeric}").labels == ["2", "10"]  # numbers sort numerically


def _bad_column(folder: Path) -> None:
    path = folder / "train.tsv"
    path.write_text(path.read_text().replace("sentence1", "text", 1))


def _bad_fields(folder: Path) -> None:
    with open(folder / "dev.tsv", "a", encoding="utf-8") as handle:
        handle.write("one\ttwo\tthree\tfour\n")


def _binary(folder: Path) -> None:
    (folder / "train.tsv").write_bytes(bytes(range(256)) * 8)


def _huge_header(folder: Path) -> None:
    path = folder / "train.tsv"
    path.write_text("x" * 10_000_000 + path.read_text())


def _bad_label(folder: Path) -> None:
    with open(folder / "dev.tsv", "a", encoding="utf-8") as handle:
        handle.write("a b\tc d\tmaybe\n")


@pytest.mark.parametrize(
    ("name", "damage", "message"),
    [
        ("missing file", lambda f: (f / "dev.tsv").unlink(), "dev.tsv' does not exist"),
        ("missing column", _bad_column, "train.tsv: no column 'sentence1' (header line 'text\\tsentence2"),
        ("binary", _binary, "train.tsv: task file looks binary"),
        ("10 MB header", _huge_header, "train.tsv: no column 'sentence1' (header line 'xxxxxxxx"),
        ("field count", _bad_fields, "dev.tsv:22: 4 tab-separated fields"),
        ("unknown label", _bad_label, "dev.tsv:22: label 'maybe' is not one of 'no', 'yes'"),
    ],
)  # fmt: skip
def test_bad_task_files_fail_before_training(tmp_path, tiny_model_dir, no_training, name, damage, message):
    folder = write_task(tmp_path / "task")
    damage(folder)
    with pytest.raises(DefembError, match=None) as info:
        evaluate_classification(config(folder, [str(tiny_model_dir("bert"))]), tmp_path / "out")
    assert message in str(info.value) and len(str(info.value)) < 400
    assert not (tmp_path / "out").exists()


def test_bad_settings_fail_before_training(tmp_path, tiny_model_dir, no_training):
    folder = write_task(tmp_path / "task")
    bert = str(tiny_model_dir("bert"))
    with pytest.raises(DefembError, match=r"unknown task 'qqp'; known tasks: mrpc, rte, tsv:DIR"):
        ClassificationConfig(task="qqp", models=[bert])
    with pytest.raises(DefembError, match="more than once: 1"):
        config(folder, [bert], seeds="1,1")
    with pytest.raises(DefembError, match="mrpc and rte only"):
        training_config("roberta", f"tsv:{folder}")
    with pytest.raises(DefembError, match="--warmup-ratio"):
        training_config("small", "mrpc", warmup_ratio=1.5)
    with pytest.raises(DefembError, match="does not exist"):
        evaluate_classification(config(folder, [bert, str(tmp_path / "nowhere")]), tmp_path / "out")
    no_tokenizer = tmp_path / "no-tokenizer"
    no_tokenizer.mkdir()
    shutil.copy(Path(bert) / "config.json", no_tokenizer)
    with pytest.raises(DefembError, match="no-tokenizer' has no tokenizer files"):
        evaluate_classification(config(folder, [bert, str(no_tokenizer)]), tmp_path / "out")
    (tmp_path / "file").write_text("x")
    with pytest.raises(DefembError, match="is a file"):
        evaluate_classification(config(folder, [bert]), tmp_path / "file")
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"task": "mrpc"}))
    with pytest.raises(DefembError, match="other settings"):
        evaluate_classification(config(folder, [bert]), other)
    assert not (tmp_path / "out").exists()


def test_config_round_trip_and_paper_presets(tmp_path):
    roberta = training_config("roberta", "mrpc")
    assert (roberta.steps, roberta.batch_size, roberta.lr, roberta.weight_decay) == (2296, 16, 1e-5, 0.1)
    assert round(roberta.warmup_ratio * roberta.steps) == 137 and roberta.adam_betas == (0.9, 0.98)
    bart = training_config("bart", "rte")
    assert (bart.steps, round(bart.warmup_ratio * bart.steps), bart.batch_size, bart.lr) == (1020, 61, 32, 1e-5)
    assert training_config("roberta", "mrpc", epochs=2).steps is None  # --epochs replaces the update count
    original = config(write_task(tmp_path / "t"), ["a=x", "b"], seeds="3", lr=2e-4)
    restored = ClassificationConfig.from_dict(json.loads(json.dumps(original.to_dict())))
    assert restored == original and restored.seeds == [0, 1, 2] and restored.training.lr == 2e-4


# ------------------------------------------------------------------------------------------- pieces


def test_length_grouped_batches_cover_everything_once_and_follow_the_seed():
    lengths = np.random.default_rng(0).integers(1, 100, size=1000)
    batches = length_grouped_batches(lengths, 8, np.random.default_rng(1))
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(1000)) and all(len(b) <= 8 for b in batches)
    padding = sum(lengths[b].max() * len(b) for b in batches) - lengths.sum()
    shuffled = np.random.default_rng(1).permutation(1000)
    plain = sum(lengths[shuffled[i : i + 8]].max() * 8 for i in range(0, 1000, 8)) - lengths.sum()
    assert padding < plain / 4  # grouping by length removes most of the padding
    again = length_grouped_batches(lengths, 8, np.random.default_rng(1))
    assert all((a == b).all() for a, b in zip(batches, again, strict=True))
    other = length_grouped_batches(lengths, 8, np.random.default_rng(2))
    assert not all(len(a) == len(b) and (a == b).all() for a, b in zip(batches, other, strict=False))


def test_score_matches_sklearn():
    rng = np.random.default_rng(0)
    gold, predicted = rng.integers(0, 2, 200), rng.integers(0, 2, 200)
    metrics, per_example = score("dev", predicted, gold, 2)
    assert metrics["dev/accuracy"] == pytest.approx(accuracy_score(gold, predicted))
    assert metrics["dev/f1"] == pytest.approx(f1_score(gold, predicted))
    assert np.mean(per_example["dev/accuracy"]) == pytest.approx(metrics["dev/accuracy"])
    assert "dev/f1" not in score("dev", predicted, gold, 3)[0]


def test_longest_first_matches_one_token_at_a_time():
    for len_a, len_b, budget in itertools.product(range(7), range(7), range(12)):
        a, b = len_a, len_b
        while a + b > budget:  # transformers' longest_first, written out
            if a > b:
                a -= 1
            else:
                b -= 1
        assert cls.longest_first(len_a, len_b, budget) == (a, b)


@pytest.mark.parametrize("family", ["gpt2", "llama", "bert", "roberta"])
def test_sentence_pairs_are_separated(tiny_model_dir, family):
    from defemb.models import load_tokenizer

    tokenizer = load_tokenizer(str(tiny_model_dir(family)))
    examples = [Example("Alice saw the dog.", "Bob wrote a long letter to the city.", 1)]
    ids = encode(tokenizer, examples, 64).features["input_ids"][0]
    native = tokenizer(examples[0].text_a, examples[0].text_b)["input_ids"]
    plain_a = tokenizer(examples[0].text_a, add_special_tokens=False)["input_ids"]
    plain_b = tokenizer(examples[0].text_b, add_special_tokens=False)["input_ids"]
    if family in ("bert", "roberta"):  # their own pair template already separates the texts
        assert ids == native
        return
    separator = tokenizer.eos_token_id
    single = tokenizer(examples[0].text_a)["input_ids"]  # the single-text template: Llama's <s>, nothing for GPT-2
    assert ids == single + [separator] + plain_b and single[len(single) - len(plain_a) :] == plain_a
    assert separator not in native[len(single) : -len(plain_b)]  # the bug: no EOS between the texts
    cut = encode(tokenizer, examples * 2, 9).features["input_ids"]
    assert all(len(row) == 9 and separator in row[1:-1] for row in cut)


def test_decoder_padding_does_not_change_predictions(tiny_model_dir):
    """GPT-2 has no pad token: it pads with EOS, and the head reads each example's last real token."""
    model, tokenizer = load_for_classification(str(tiny_model_dir("gpt2")), ["no", "yes"])
    assert tokenizer.pad_token_id == tokenizer.eos_token_id == model.config.pad_token_id
    examples = [Example("Alice saw the dog.", None, 0), Example("Bob wrote a long letter to the city.", None, 1)]
    data = encode(tokenizer, examples, 64)
    model.eval()
    with torch.inference_mode():
        together = model(**cls.collate(data, [0, 1], tokenizer.pad_token_id)).logits[0]
        alone = model(**cls.collate(data, [0], tokenizer.pad_token_id)).logits[0]
    assert data.lengths[0] < data.lengths[1]
    torch.testing.assert_close(together, alone, rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------------------------------- runs


def test_three_families_run_and_save(tmp_path, tiny_model_dir):
    folder = write_task(tmp_path / "task")
    models = [f"{f}={tiny_model_dir(f)}" for f in ("bert", "gpt2", "bart")]
    out = tmp_path / "out"
    cfg = config(folder, models)
    cfg.save_models = True
    records = evaluate_classification(cfg, out)
    assert [(r.label, r.status) for r in records] == [("bert", "ok"), ("gpt2", "ok"), ("bart", "ok")]
    for r in records:
        assert set(r.metrics) == {"dev/accuracy", "dev/f1", "test/accuracy", "test/f1"}
        assert len(r.per_example["dev/accuracy"]) == 20 and len(r.per_example["test/accuracy"]) == 20
        assert np.mean(r.per_example["dev/accuracy"]) == pytest.approx(r.metrics["dev/accuracy"])
        assert r.wall_s > 0 and r.config["train"]["examples_per_s"] > 0 and r.config["train"]["updates"] == 5
        assert r.config["splits"] == ["dev", "test"] and r.config["training"]["lr"] == 1e-3
    saved = json.loads((out / "config.json").read_text())
    assert saved["training"]["batch_size"] == 8 and saved["task"] == f"tsv:{folder}"
    from transformers import AutoModelForSequenceClassification

    reloaded = AutoModelForSequenceClassification.from_pretrained(out / "gpt2" / "seed-0" / "model")
    assert reloaded.config.id2label == {0: "no", 1: "yes"} and reloaded.config.pad_token_id is not None
    assert (out / "bart" / "seed-0" / "model" / "model.safetensors").is_file()


def test_crash_is_a_failed_record_and_rerun_resumes(tmp_path, tiny_model_dir, monkeypatch):
    folder = write_task(tmp_path / "task")
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir("bert"), broken)
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    out = tmp_path / "out"
    cfg = config(folder, [f"good={tiny_model_dir('bert')}", f"broken={broken}"], seeds="2")
    records = evaluate_classification(cfg, out)
    assert [(r.label, r.seed, r.status) for r in records] == [
        ("good", 0, "ok"), ("good", 1, "ok"), ("broken", 0, "failed"), ("broken", 1, "failed")]  # fmt: skip
    failed = read_record(out / "broken" / "seed-0" / "result.json")
    assert failed.error and "\n" not in failed.error and (out / "broken" / "seed-0" / "error.txt").is_file()

    calls = []
    real = cls.run_one
    monkeypatch.setattr(cls, "run_one", lambda spec, *a, **k: calls.append(spec.label) or real(spec, *a, **k))
    again = evaluate_classification(cfg, out)  # same command: ok runs are skipped, failed ones retried
    assert calls == ["broken", "broken"]
    assert [r.metrics for r in again[:2]] == [r.metrics for r in records[:2]]
    calls.clear()
    evaluate_classification(config(folder, [f"good={tiny_model_dir('bert')}"], seeds="3"), out)
    assert calls == ["good"]  # only the new seed 2
    calls.clear()
    evaluate_classification(config(folder, [f"good={tiny_model_dir('bert')}"], seeds="1"), out, force=True)
    assert calls == ["good"] and not (out / "broken").exists()  # --force starts afresh
    assert len(read_records(out)) == 1


def test_same_seed_same_result_and_learning_happens(tmp_path, tiny_model_dir):
    """A tiny BERT learns 'label = the marker word is present' well above chance; reruns with a seed match."""
    folder = write_task(tmp_path / "task", n=(80, 60, 20), pair=False)
    bert = f"bert={tiny_model_dir('bert')}"
    options = {"epochs": 8.0, "batch_size": 16, "lr": 3e-3}
    first = evaluate_classification(config(folder, [bert], seeds="0,1", **options), tmp_path / "a")
    second = evaluate_classification(config(folder, [bert], seeds="1", **options), tmp_path / "b")
    assert first[0].metrics == second[0].metrics and first[0].per_example == second[0].per_example
    assert first[0].config["train"]["final_loss"] == second[0].config["train"]["final_loss"]
    assert first[1].config["train"]["final_loss"] != first[0].config["train"]["final_loss"]
    assert min(r.metrics["dev/accuracy"] for r in first) >= 0.8


def test_cli_prints_table_and_bad_input_exits_2(tmp_path, tiny_model_dir, capsys):
    folder = write_task(tmp_path / "task")
    out = tmp_path / "out"
    argv = ["evaluate", "classification", "--task", f"tsv:{folder}", "--models", f"tiny={tiny_model_dir('bert')}",
            "--seeds", "1", "--out", str(out), "--epochs", "1", "--batch-size", "8"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "tiny" in printed and "dev acc" in printed and "test F1" in printed
    assert read_record(out / "tiny" / "seed-0" / "result.json").config["training"]["batch_size"] == 8
    assert main([*argv[:3], "qqp", *argv[4:]]) == 2
    assert "unknown task 'qqp'" in capsys.readouterr().err


def test_bf16_autocast_still_learns_and_is_recorded(tmp_path, tiny_model_dir, linear_dtypes):
    """--bf16 runs the matmuls in bfloat16 (checked on a Linear) and still learns the marker task."""
    folder = write_task(tmp_path / "task", n=(80, 60, 20), pair=False)
    options = {"epochs": 8.0, "batch_size": 16, "lr": 3e-3, "bf16": True}
    (record,) = evaluate_classification(config(folder, [f"bert={tiny_model_dir('bert')}"], seeds="1", **options),
                                        tmp_path / "out")
    assert torch.bfloat16 in linear_dtypes and record.config["training"]["bf16"] is True
    assert record.metrics["dev/accuracy"] >= 0.8


@_needs(DATA / "glue-rte")
def test_resume_without_data_when_it_is_found_by_name(tmp_path, tiny_model_dir, monkeypatch):
    """`--data DIR` then a rerun that finds DIR by name are the same setting: the rerun resumes."""
    monkeypatch.setattr(cls, "run_models", lambda *args, **kwargs: [])
    bert = str(tiny_model_dir("bert"))
    out = tmp_path / "out"
    evaluate_classification(ClassificationConfig(task="rte", models=[bert], data=str(DATA / "glue-rte")), out)
    monkeypatch.setenv("DEFEMB_DATA", str(DATA))
    evaluate_classification(ClassificationConfig(task="rte", models=[bert]), out)  # found by name: resumes
    saved = json.loads((out / "config.json").read_text())
    assert saved["data"] == str((DATA / "glue-rte").resolve())
    copy = shutil.copytree(DATA / "glue-rte" / "glue-format", tmp_path / "rte" / "glue-format")
    with pytest.raises(DefembError, match="other settings"):  # another folder is still another setting
        evaluate_classification(ClassificationConfig(task="rte", models=[bert], data=str(copy.parent)), out)
