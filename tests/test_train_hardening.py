"""`defemb train` / `embed` against hostile input: lost runs, half-written folders, bad corpus rows and options."""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import pytest
from safetensors.torch import load_file

from defemb.cli import main
from defemb.config import TrainConfig
from defemb.errors import DefembError
from defemb.method import train as train_module
from defemb.method.data import load_records
from defemb.method.train import train

FINISHED = ("model/model.safetensors", "head.safetensors", "summary.json", "config.json", "checkpoint/state.json")


def _train_args(model: Path, corpus: Path, out: Path, *extra: str) -> list[str]:
    return ["train", str(model), "--corpus", str(corpus), "--out", str(out), "--steps", "4", "--eval-every", "2",
            "--save-every", "2", "--tokens", "256", "--no-warm-start", *extra]


def _finished_run(tiny_model_dir, corpora, tmp_path: Path) -> Path:
    out = tmp_path / "finished"
    assert main(_train_args(tiny_model_dir("bert"), corpora("bert"), out)) == 0
    return out


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


def test_ctrl_c_says_where_the_run_is_kept_and_how_to_continue(tiny_model_dir, corpora, tmp_path, monkeypatch,
                                                              capsys):
    out = tmp_path / "run"
    update = train_module.Trainer._update

    def interrupted(self, model, plan):
        if self.step == 3:
            raise KeyboardInterrupt
        return update(self, model, plan)

    monkeypatch.setattr(train_module.Trainer, "_update", interrupted)
    assert main(_train_args(tiny_model_dir("bert"), corpora("bert"), out)) == 130
    err = capsys.readouterr().err
    assert "no output was written" not in err and f"kept in '{tmp_path / 'run.partial'}'" in err
    assert "last checkpoint at step 2" in err and f"defemb train --resume {out}" in err
    monkeypatch.undo()
    assert main(["train", "--resume", str(out)]) == 0


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
    ("--save-every", "-3"), ("--max-valid", "0"),
])
def test_nonsense_training_options_are_refused(tmp_path, capsys, option, value):
    out = tmp_path / "run"
    assert main(["train", "minilm", "--corpus", str(tmp_path), "--out", str(out), option, value]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"defemb: error: {option}") and err.count("\n") == 1 and value in err
    assert not out.exists() and not (tmp_path / "run.partial").exists()


def _corpus_with(corpora, tmp_path: Path, lines: list[str], split: str = "train") -> Path:
    """A copy of the tiny BERT corpus whose ``split`` holds exactly ``lines``."""
    corpus = tmp_path / "corpus"
    shutil.copytree(corpora("bert"), corpus)
    (corpus / f"{split}.jsonl").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return corpus


def _first_record(corpora) -> dict:
    return json.loads((corpora("bert") / "train.jsonl").read_text().splitlines()[0])


@pytest.mark.parametrize("change, message", [
    (lambda r: None, "not a corpus record (a JSON object) (value 'null')"),
    (lambda r: r.pop("input_ids") and r, "the record has no 'input_ids'"),
    (lambda r: {**r, "input_ids": "park"}, "'input_ids' is not a non-empty list of token ids"),
    (lambda r: {**r, "input_ids": [*r["input_ids"][:-1], 999999]}, "token id 999999 is not in this model's vocab"),
    (lambda r: {**r, "input_ids": [-5, *r["input_ids"][1:]]}, "token id -5 is not in this model's vocabulary"),
    (lambda r: {**r, "input_ids": [True, *r["input_ids"][1:]]}, "'input_ids' is not a non-empty list"),
    (lambda r: {**r, "word_positions": [[-1]]}, "word position -1 is outside the prompt's"),
    (lambda r: {**r, "word_positions": [[len(r["input_ids"])]]}, "is outside the prompt's"),
    (lambda r: {**r, "word_positions": [[]]}, "'word_positions' is not a non-empty list of non-empty lists"),
    (lambda r: {**r, "word_positions": []}, "'word_positions' is not a non-empty list of non-empty lists"),
    (lambda r: {**r, "word_positions": [[1.5]]}, "'word_positions' is not a non-empty list of non-empty lists"),
    (lambda r: {**r, "word": 7}, "'word' is not a string"),
])
def test_bad_corpus_rows_are_named_by_file_and_line(corpora, tmp_path, change, message):
    good = _first_record(corpora)
    corpus = _corpus_with(corpora, tmp_path, [json.dumps(good), json.dumps(change(dict(good)))])
    with pytest.raises(DefembError) as caught:
        load_records(corpus, "train", 500)
    text = str(caught.value)
    assert text.startswith(f"{corpus / 'train.jsonl'}:2: ") and message in text and "\n" not in text


@pytest.mark.parametrize("line", [b"{not json", b"\xff\xfe{}", b"[" * 100_000])
def test_lines_that_are_not_json_are_named(corpora, tmp_path, line):
    corpus = _corpus_with(corpora, tmp_path, [])
    (corpus / "train.jsonl").write_bytes(line + b"\n")
    with pytest.raises(DefembError, match=r"train\.jsonl:1: not a JSON line"):
        load_records(corpus, "train", 500)


def test_train_embed_and_stats_refuse_a_bad_row_in_one_line(tiny_model_dir, corpora, tmp_path, capsys):
    bert = str(tiny_model_dir("bert"))
    corpus = _corpus_with(corpora, tmp_path, [json.dumps({**_first_record(corpora), "word_positions": [[-1]]})])
    out, finished = tmp_path / "run", _finished_run(tiny_model_dir, corpora, tmp_path)
    capsys.readouterr()
    assert main(["train", bert, "--corpus", str(corpus), "--out", str(out)]) == 2
    assert main(["corpus", "stats", str(corpus), "--tokenizer", bert]) == 2
    assert main(["embed", str(finished), "--corpus", str(corpus), "--out", str(tmp_path / "e.safetensors")]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 3 and all("train.jsonl:1: word position -1 is outside" in line for line in lines)
    assert not out.exists() and not (tmp_path / "run.partial").exists() and not (tmp_path / "e.safetensors").exists()


def test_a_single_target_trains_with_the_warm_start(tiny_model_dir, corpora, tmp_path):
    record = {**_first_record(corpora), "word_positions": [[1]]}
    corpus = _corpus_with(corpora, tmp_path, [json.dumps(record)])
    summary = train(TrainConfig(model=str(tiny_model_dir("bert")), corpus=str(corpus), steps=1), tmp_path / "run")
    assert summary["steps"] == 1 and (tmp_path / "run" / "head.safetensors").is_file()


def test_an_unwritable_output_folder_is_one_line(tiny_model_dir, corpora, tmp_path, monkeypatch, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    access = os.access
    # chmod does not stop root (tests may run as root): deny the permission where the code asks for it
    monkeypatch.setattr("defemb.outputs.os.access", lambda path, mode: Path(path) != locked and access(path, mode))
    finished = _finished_run(tiny_model_dir, corpora, tmp_path)
    assert main(_train_args(tiny_model_dir("bert"), corpora("bert"), locked / "run")) == 2
    assert main(["embed", str(finished), "--corpus", str(corpora("bert")), "--out", str(locked / "e.safetensors")]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("defemb: error:")]
    assert len(lines) == 2 and all(f"no permission to create files in '{locked}'" in line for line in lines)


@pytest.fixture(scope="module")
def interrupted_run(tiny_model_dir, corpora, tmp_path_factory) -> Path:
    """The ``OUT.partial`` folder of a run that crashed after its checkpoint at step 2 (copy it to use it)."""
    out = tmp_path_factory.mktemp("interrupted") / "run"
    with pytest.MonkeyPatch.context() as monkeypatch:
        _fail_at_step(monkeypatch, 3)
        assert main(_train_args(tiny_model_dir("bert"), corpora("bert"), out)) == 2
    return train_module.partial_dir(out)


class _Payload:
    """A pickle that would create a file when loaded without weights_only."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("name, content", [
    ("optimizer.pt", "malicious"), ("optimizer.pt", b"\x80\x04garbage"), ("model.safetensors", b"{}"),
    ("rng.safetensors", b"\x00" * 7), ("state.json", b'{"step": "x"'), ("state.json", b"[]"),
])
def test_a_damaged_checkpoint_is_named_on_resume(interrupted_run, tmp_path, capsys, name, content):
    shutil.copytree(interrupted_run, tmp_path / "run.partial")
    out = tmp_path / "run"
    damaged, marker = tmp_path / "run.partial" / "checkpoint" / name, tmp_path / "pwned"
    damaged.write_bytes(pickle.dumps(_Payload(marker)) if content == "malicious" else content)
    capsys.readouterr()
    assert main(["train", "--resume", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"defemb: error: '{damaged}' is damaged or not from this run (") and err.count("\n") == 1
    assert "--force" in err and not marker.exists() and not out.exists()


def test_a_run_interrupted_before_band_heads_resumes_with_its_one_w(tiny_model_dir, corpora, tmp_path, monkeypatch):
    """A run started before `--head` existed has no "head" in its config.json and one W in its checkpoint: it
    resumes as what it was, not as a band head whose checkpoint would not load."""
    out = tmp_path / "run"
    with monkeypatch.context() as patched:
        _fail_at_step(patched, 3)
        assert main(_train_args(tiny_model_dir("bert"), corpora("bert"), out, "--head", "single")) == 2
    config_file = train_module.partial_dir(out) / "config.json"
    config = json.loads(config_file.read_text())
    del config["head"]
    config_file.write_text(json.dumps(config))
    assert main(["train", "--resume", str(out)]) == 0
    assert json.loads((out / "config.json").read_text()).get("head", "single") == "single"
    assert set(load_file(out / "head.safetensors")) == {"weight", "head_of_token"}


def test_a_corpus_without_validation_records_is_refused(tiny_model_dir, corpora, tmp_path, capsys):
    corpus = _corpus_with(corpora, tmp_path, [], split="valid")
    assert main(_train_args(tiny_model_dir("bert"), corpus, tmp_path / "run")) == 2
    assert "has no validation records" in capsys.readouterr().err and not (tmp_path / "run.partial").exists()


def test_validation_sample_spans_the_whole_split_in_corpus_order():
    from defemb.method.train import validation_sample

    records = [{"i": i} for i in range(1000)]
    picked = [r["i"] for r in validation_sample(records, 50, seed=0)]
    assert len(picked) == 50 and picked == sorted(picked) and picked[-1] > 500  # not the first 50 headwords
    assert picked == [r["i"] for r in validation_sample(records, 50, seed=0)]
    assert picked != [r["i"] for r in validation_sample(records, 50, seed=1)]
    assert validation_sample(records[:10], 50, seed=0) == records[:10]


def test_encoder_validation_reads_only_masked_positions(tiny_model_dir, corpora, tmp_path, monkeypatch):
    """Validation scores what embed writes: every read position holds the mask token, every step."""
    seen = []
    validate = train_module.Trainer.validate

    def spying(self):
        examples = self._examples

        def record(records, generator, strategy=None):
            batch = examples(records, generator, strategy)
            seen.append(batch.input_ids[batch.rows, batch.positions])
            return batch

        self._examples = record
        try:
            return validate(self)
        finally:
            del self._examples

    monkeypatch.setattr(train_module.Trainer, "validate", spying)
    assert main(_train_args(tiny_model_dir("bert"), corpora("bert"), tmp_path / "run")) == 0
    from defemb.models import load_tokenizer

    mask_id = load_tokenizer(str(tiny_model_dir("bert"))).mask_token_id
    assert len(seen) >= 3 and all(bool((ids == mask_id).all()) for ids in seen)


@pytest.mark.parametrize("preset", ["roberta", "bart", "t5", "small"])
def test_every_preset_warm_starts_w_and_logs_it_beside_the_mean_row(tiny_model_dir, corpora, tmp_path, preset):
    """Issue 9: the paper presets started W random, ~100x above the mean row's error; now every one warm-starts
    (`--no-warm-start` keeps the paper's random W), and metrics.jsonl shows the step-0 error beside the mean row's."""
    assert TrainConfig(model="m", corpus="c", preset=preset).warm_start is True
    assert TrainConfig(model="m", corpus="c", preset=preset, warm_start=False).warm_start is False
    if preset != "roberta":
        return
    train(TrainConfig(model=str(tiny_model_dir("bert")), corpus=str(corpora("bert")), preset=preset, steps=1,
                      eval_every=1, tokens=256), tmp_path / "run")
    start, warm = (json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[:2])
    assert warm["event"] == "warm_start" and warm["valid_mse"] < start["valid_mse"] and "mean_row_mse" in start


def test_a_run_interrupted_after_its_warm_start_does_not_fit_it_again(tiny_model_dir, corpora, tmp_path, monkeypatch):
    """The warm start (minutes on SmolLM2) is checkpointed at step 0: a crash before the first save resumes
    without fitting W again and ends where an uninterrupted run ends, byte for byte."""
    def args(out: Path) -> list[str]:
        return ["train", str(tiny_model_dir("bert")), "--corpus", str(corpora("bert")), "--out", str(out),
                "--steps", "4", "--eval-every", "2", "--save-every", "2", "--tokens", "256"]

    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    assert main(args(whole)) == 0
    _fail_at_step(monkeypatch, 1)
    assert main(args(resumed)) == 2
    monkeypatch.undo()
    fits = []
    warm_start = train_module.Trainer.warm_start_head
    monkeypatch.setattr(train_module.Trainer, "warm_start_head", lambda self: fits.append(1) or warm_start(self))
    assert main(["train", "--resume", str(resumed)]) == 0
    assert fits == []

    def metrics(out: Path) -> list[dict]:  # all but the wall time
        return [{k: v for k, v in json.loads(line).items() if k != "seconds"}
                for line in (out / "metrics.jsonl").read_text().splitlines()]

    assert metrics(resumed) == metrics(whole) and any(m.get("event") == "warm_start" for m in metrics(resumed))
    heads = {out: load_file(out / "head.safetensors") for out in (whole, resumed)}
    assert heads[resumed].keys() == heads[whole].keys()
    for name, tensor in heads[whole].items():
        assert bool((heads[resumed][name] == tensor).all()), name


def test_a_run_checkpointed_before_per_token_selection_resumes(interrupted_run, tmp_path, capsys):
    """A checkpoint from before the kept weights were chosen per token holds a per-position best and no
    "selected_on": the resumed run forgets that best (another figure) and chooses again on the next evaluations."""
    shutil.copytree(interrupted_run, tmp_path / "run.partial")
    state_path = tmp_path / "run.partial" / "checkpoint" / "state.json"
    state = json.loads(state_path.read_text())
    for key in ("selected_on", "best_scores"):
        del state[key]
    state["best"] = 1e-9  # per position, better than anything per token: kept, it would pin the old weights
    state_path.write_text(json.dumps(state))
    assert main(["train", "--resume", str(tmp_path / "run")]) == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["best_step"] == 4 and summary["selected_on"] == "valid_token_mse"
    assert summary["best_valid_token_mse"] > 1e-9 and summary["best_valid_mse"] > 0
    assert "best validation ‖e−ẽ‖² per token" in capsys.readouterr().out
