"""`defemb train` / `embed` against hostile input: lost runs, half-written folders, bad corpus rows and options."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from defemb.cli import main
from defemb.errors import DefembError
from defemb.method import train as train_module

FINISHED = ("model/model.safetensors", "head.safetensors", "summary.json", "config.json", "checkpoint/state.json")


def _train_args(model: Path, corpus: Path, out: Path, *extra: str) -> list[str]:
    return ["train", str(model), "--corpus", str(corpus), "--out", str(out), "--steps", "4", "--eval-every", "2",
            "--save-every", "2", "--tokens", "256", "--no-warm-start", *extra]


def _fail_at_step(monkeypatch, step: int) -> None:
    """Make the run crash after ``step`` updates (a stand-in for a power cut, OOM or Ctrl-C)."""
    update = train_module.Trainer._update

    def crashing(self, model, plan):
        if self.step == step:
            raise DefembError("simulated crash")
        return update(self, model, plan)

    monkeypatch.setattr(train_module.Trainer, "_update", crashing)


def test_a_failed_force_keeps_the_finished_run(tiny_model_dir, corpora, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    args = _train_args(tiny_model_dir("bert"), corpora("bert"), out)
    assert main(args) == 0
    before = {name: (out / name).read_bytes() for name in FINISHED}
    _fail_at_step(monkeypatch, 3)
    assert main([*args, "--force", "--seed", "1"]) == 2
    assert "simulated crash" in capsys.readouterr().err
    assert {name: (out / name).read_bytes() for name in FINISHED} == before  # the old run, byte for byte
    monkeypatch.undo()
    assert main([*args, "--force", "--seed", "1"]) == 0  # a complete new run does replace it
    assert json.loads((out / "config.json").read_text())["seed"] == 1 and not (tmp_path / "run.partial").exists()


def test_an_interrupted_run_is_never_finished_and_says_what_to_do(tiny_model_dir, corpora, tmp_path, monkeypatch,
                                                                    capsys):
    out = tmp_path / "run"
    args = _train_args(tiny_model_dir("bert"), corpora("bert"), out)
    _fail_at_step(monkeypatch, 3)
    assert main(args) == 2
    monkeypatch.undo()
    capsys.readouterr()
    assert not out.exists()  # nothing at OUT looks like a run, finished or not
    assert main(["embed", str(out), "--corpus", str(corpora("bert")), "--out", str(tmp_path / "e.safetensors")]) == 2
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "interrupted run (last checkpoint at step 2)" in err and f"--resume {out}" in err and "--force" in err
    assert main(["train", "--resume", str(out)]) == 0
    assert all((out / name).exists() for name in FINISHED) and not (tmp_path / "run.partial").exists()
    assert main(["train", "--resume", str(out)]) == 2
    assert "finished run: nothing to resume" in capsys.readouterr().err


def test_force_starts_an_interrupted_run_over(tiny_model_dir, corpora, tmp_path, monkeypatch):
    out = tmp_path / "run"
    args = _train_args(tiny_model_dir("bert"), corpora("bert"), out)
    _fail_at_step(monkeypatch, 3)
    assert main(args) == 2
    monkeypatch.undo()
    assert main([*args, "--force"]) == 0
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [0, 2, 4]  # a fresh log, not the crashed run's lines followed by the new ones


@pytest.mark.parametrize("name", [".", "run/.."])
def test_a_run_directory_needs_a_folder_name(name):
    with pytest.raises(DefembError, match="must end in a folder name"):
        train_module.partial_dir(name)


@pytest.mark.parametrize("option, value", [
    ("--seed", "-1"), ("--warmup", "-1"), ("--patience", "-1"), ("--steps", "0"), ("--tokens", "0"), ("--lr", "0"),
    ("--lr", "nan"), ("--lr", "inf"), ("--head-lr-scale", "-1"), ("--grad-accum", "0"), ("--eval-every", "0"),
    ("--save-every", "-3"),
])
def test_nonsense_training_options_are_refused(tmp_path, capsys, option, value):
    out = tmp_path / "run"
    assert main(["train", "minilm", "--corpus", str(tmp_path), "--out", str(out), option, value]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"defemb: error: {option}") and err.count("\n") == 1 and value in err
    assert not out.exists() and not (tmp_path / "run.partial").exists()
