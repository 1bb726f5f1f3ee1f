"""`defemb tune-alpha`: replaced checkpoints per α, dev-only scoring (test never opened), choice, resume."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from transformers import AutoTokenizer

from defemb.cli import main
from defemb.embeddings import save_embeddings
from defemb.errors import DefembError
from defemb.evaluation import classification as cls
from defemb.evaluation import tasks
from defemb.evaluation.classification import training_config
from defemb.evaluation.records import read_records
from defemb.evaluation.tune_alpha import TuneAlphaConfig, choose, tune_alpha
from defemb.models import vocabulary_hash
from test_classification import write_task

pytestmark = pytest.mark.usefixtures("one_thread")


def write_embeddings(model_dir: Path, path: Path, vocab_hash: str | None = None) -> Path:
    """Random definition rows for every non-special token of the tiny model."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    ids = np.array(sorted(set(range(len(tokenizer))) - set(tokenizer.all_special_ids)))
    rows = np.random.default_rng(0).normal(size=(len(ids), 32)).astype(np.float32)
    metadata = {"vocab_hash": vocab_hash or vocabulary_hash(tokenizer), "table": "input", "model": str(model_dir),
                "aggregate": "first", "run": {"seed": 0}}
    return save_embeddings(path, ids, rows, metadata)


def poisoned_task(folder: Path) -> Path:
    """A task whose test.tsv is malformed: reading it anywhere in the task readers would raise."""
    write_task(folder)
    (folder / "test.tsv").write_text("sentence1\tsentence2\tlabel\nonly one field\n", encoding="utf-8")
    return folder


@pytest.fixture
def test_file_guard(monkeypatch):
    """Every file the task readers open; fails the test the moment a test.tsv is opened."""
    opened: list[Path] = []
    real = tasks._open

    def guarded(path):
        opened.append(Path(path))
        assert Path(path).name != "test.tsv", f"tune-alpha opened the test split {path}"
        return real(path)

    monkeypatch.setattr(tasks, "_open", guarded)
    return opened


def test_split_selection_never_opens_test(tmp_path):
    folder = poisoned_task(tmp_path / "task")
    with pytest.raises(DefembError, match="test.tsv:2"):
        tasks.load_task(f"tsv:{folder}")  # the poisoned file is caught when test is asked for ...
    task = tasks.load_task(f"tsv:{folder}", splits=("train", "dev"))  # ... and not looked at otherwise
    assert set(task.splits) == {"train", "dev"} and not task.notes


def test_tune_alpha_chooses_by_dev_writes_tables_and_resumes(tmp_path, tiny_model_dir, test_file_guard, monkeypatch,
                                                             capsys):
    bert = tiny_model_dir("bert")
    embeddings = write_embeddings(bert, tmp_path / "emb.safetensors")
    folder = poisoned_task(tmp_path / "task")
    out = tmp_path / "tune"
    argv = ["tune-alpha", str(bert), "--embeddings", str(embeddings), "--task", f"tsv:{folder}", "--grid", "1,100",
            "--seeds", "2", "--out", str(out), "--epochs", "1", "--batch-size", "8", "--lr", "1e-3"]
    assert main(argv) == 0
    assert "chosen: α" in capsys.readouterr().out
    assert test_file_guard and all(p.name in ("train.tsv", "dev.tsv") for p in test_file_guard)

    records = read_records(out / "runs")
    assert sorted({r.label for r in records}) == ["alpha-1-blend-1", "alpha-100-blend-1", "original"]
    assert all(r.status == "ok" and set(r.metrics) == {"dev/accuracy", "dev/f1"} for r in records)
    assert all(r.config["splits"] == ["dev"] for r in records)
    summary = json.loads((out / "models" / "alpha-1-blend-1" / "defemb.json").read_text())
    assert summary["alpha"] == 1 and summary["config"]["task_data"] == [str(folder / "train.tsv")]
    replaced_all = json.loads((out / "models" / "alpha-100-blend-1" / "defemb.json").read_text())["replaced"]
    assert 0 < summary["replaced"] < replaced_all

    means = {}  # the choice, recomputed from the records: best mean dev accuracy, ties -> smaller α
    for label, alpha in (("alpha-1-blend-1", 1.0), ("alpha-100-blend-1", 100.0)):
        means[alpha] = np.mean([r.metrics["dev/accuracy"] for r in records if r.label == label])
    best = min(means, key=lambda a: (-means[a], a))
    choice = json.loads((out / "choice.json").read_text())
    assert (choice["alpha"], choice["blend"]) == (best, 1.0)
    assert choice["mean"] == pytest.approx(means[best]) and choice["model"] == "models/alpha-" + f"{best:g}-blend-1"
    table = json.loads((out / "table.json").read_text())
    assert [row["label"] for row in table] == ["original", "alpha-1-blend-1", "alpha-100-blend-1"]
    assert table[0]["metrics"]["dev/accuracy"]["n"] == 2
    markdown = (out / "table.md").read_text()
    assert "| original |" in markdown and "(chosen)" in markdown and "test was not read" in markdown

    calls = {"replace": 0, "run": []}
    import defemb.replace

    real_replace, real_run = defemb.replace.replace, cls.run_one

    def count_replace(*args, **kwargs):
        calls["replace"] += 1
        return real_replace(*args, **kwargs)

    monkeypatch.setattr(defemb.replace, "replace", count_replace)
    monkeypatch.setattr(cls, "run_one", lambda spec, *a, **k:
                        calls["run"].append(spec.label) or real_run(spec, *a, **k))
    training = training_config("small", f"tsv:{folder}", epochs=1.0, batch_size=8, lr=1e-3)
    config = TuneAlphaConfig(model=str(bert), embeddings=str(embeddings), task=f"tsv:{folder}", grid="1,100",
                             seeds="2", training=training)
    assert tune_alpha(config, out)["choice"] == choice  # rerun: nothing replaced or trained again
    assert calls == {"replace": 0, "run": []}
    config.grid = [1.0, 20.0, 100.0]
    result = tune_alpha(config, out)  # a wider grid: only the new α is built and trained
    assert calls == {"replace": 1, "run": ["alpha-20-blend-1", "alpha-20-blend-1"]}
    assert [row["alpha"] for row in result["rows"]] == [None, 1.0, 20.0, 100.0]


def test_bad_input_fails_before_training(tmp_path, tiny_model_dir, monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("training started although the input was bad")

    monkeypatch.setattr(cls, "run_one", fail)
    bert = tiny_model_dir("bert")
    folder = write_task(tmp_path / "task")
    wrong = write_embeddings(bert, tmp_path / "wrong.safetensors", vocab_hash="0" * 64)
    config = TuneAlphaConfig(model=str(bert), embeddings=str(wrong), task=f"tsv:{folder}", grid="5")
    with pytest.raises(DefembError, match="made for another vocabulary"):
        tune_alpha(config, tmp_path / "out")
    with pytest.raises(DefembError, match=r"α must be in \(0, 100\]"):
        TuneAlphaConfig(model=str(bert), embeddings=str(wrong), task=f"tsv:{folder}", grid="0,5")
    with pytest.raises(DefembError, match="more than once"):
        TuneAlphaConfig(model=str(bert), embeddings=str(wrong), task=f"tsv:{folder}", blends="0.5,0.5")
    missing = TuneAlphaConfig(model=str(bert), embeddings=str(tmp_path / "none"), task=f"tsv:{folder}")
    with pytest.raises(DefembError, match="does not exist"):
        tune_alpha(missing, tmp_path / "out2")
    assert not (tmp_path / "out2").exists()


def test_choose_breaks_ties_towards_smaller_alpha_and_skips_failures():
    def row(label, alpha, blend, mean):
        return {"label": label, "alpha": alpha, "blend": blend, "replaced": 1,
                "metrics": {"dev/accuracy": {"mean": mean, "std": 0.0, "n": 0 if mean is None else 1}}}

    rows = [row("original", None, None, 0.9), row("a", 3.0, 1.0, 0.7), row("b", 10.0, 0.5, 0.8),
            row("c", 5.0, 1.0, 0.8), row("d", 5.0, 0.5, 0.8), row("e", 1.0, 1.0, None)]
    choice = choose(rows)
    assert (choice["alpha"], choice["blend"], choice["original"]) == (5.0, 0.5, 0.9)
    with pytest.raises(DefembError, match="no α setting finished"):
        choose([rows[0], rows[-1]])
