"""Training keeps the weights of its best validation, and its learning rate decays as the schedule says."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load_file

from defemb.cli import main
from defemb.config import TrainConfig
from defemb.method import train as train_module
from defemb.method.train import lr_factor

SCRIPTED = {0: 1.0, 2: 0.5, 4: 0.1, 6: 0.9, 8: 0.8}  # validation at each evaluation: step 4 is the best, 8 the last


def _config(schedule: str, steps: int = 1300, warmup: int = 100) -> TrainConfig:
    return TrainConfig(model="m", corpus="c", steps=steps, warmup=warmup, schedule=schedule)


def _slow_factor(schedule: str, step: int, steps: int, warmup: int) -> float:
    """The schedules written out from their definitions, independently of `lr_factor`."""
    if step < warmup:
        return max(step, 1) / warmup
    left = (steps - step) / (steps - warmup)  # share of the decay still ahead
    return {"linear": left, "cosine": (1 - math.cos(math.pi * left)) / 2,
            "inverse_sqrt": (warmup / step) ** 0.5, "constant": 1.0}[schedule]


@pytest.mark.parametrize("schedule", ["inverse_sqrt", "linear", "cosine"])
def test_schedules_match_their_definitions(schedule):
    for step in (0, 1, 50, 99, 100, 101, 650, 1200, 1299, 1300):
        want = _slow_factor(schedule, step, 1300, 100)
        assert lr_factor(_config(schedule), step) == pytest.approx(want, abs=1e-12), step
    assert lr_factor(_config("constant"), 7) == 1.0


def test_known_values():
    assert lr_factor(_config("inverse_sqrt"), 1200) == pytest.approx(0.2887, abs=1e-4)  # the paper's: 29 % left
    assert lr_factor(_config("linear"), 1300) == 0.0 and lr_factor(_config("cosine"), 1300) == pytest.approx(0.0)
    assert lr_factor(_config("cosine"), 700) == pytest.approx(0.5)  # half-way through the decay
    assert TrainConfig(model="m", corpus="c").schedule == "cosine"  # the small preset decays to 0


def test_a_run_ends_at_learning_rate_zero(tiny_model_dir, corpora, tmp_path):
    out = tmp_path / "run"
    assert main(["train", str(tiny_model_dir("bert")), "--corpus", str(corpora("bert")), "--out", str(out),
                 "--steps", "4", "--warmup", "1", "--eval-every", "2", "--tokens", "256", "--schedule", "linear"]) == 0
    lrs = [m["lr"] for m in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if "lr" in m]
    assert lrs[0] > 0 and lrs[-1] == 0.0


@pytest.mark.parametrize("keep_last", [False, True])
def test_the_best_validation_weights_are_written(tiny_model_dir, corpora, tmp_path, monkeypatch, keep_last):
    """Validation is scripted so that step 4 is the best of four evaluations: its W is what the run writes
    (with --keep-last, the last step's W)."""
    heads = {}
    validate = train_module.Trainer.validate

    def scripted(self):
        scores = validate(self)
        heads[self.step] = self.model.head.weight.detach().clone()
        return {**scores, "valid_token_mse": SCRIPTED.get(self.step, scores["valid_token_mse"])}

    monkeypatch.setattr(train_module.Trainer, "validate", scripted)
    out = tmp_path / "run"
    args = ["train", str(tiny_model_dir("bert")), "--corpus", str(corpora("bert")), "--out", str(out), "--steps", "8",
            "--eval-every", "2", "--save-every", "2", "--tokens", "256", "--lr", "1e-3"]
    assert main([*args, *(["--keep-last"] if keep_last else [])]) == 0
    written = load_file(out / "head.safetensors")["weight"]
    assert not torch.equal(heads[4], heads[8])  # the weights did move after the best evaluation
    want = 8 if keep_last else 4
    torch.testing.assert_close(written, heads[want], rtol=0, atol=0)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["best_valid_token_mse"] == 0.1 and summary["best_step"] == 4
    assert summary["selected_on"] == "valid_token_mse" and summary["best_valid_mse"] > 0
    assert summary["weights"] == ("last" if keep_last else "best (step 4)")
    assert not (out / "best.safetensors").exists()  # the copy is not left behind


def test_the_warm_start_competes_for_the_best_weights(tiny_model_dir, corpora, tmp_path, monkeypatch):
    """When no step of training beats the warm-started W, the run writes the warm start (step 0)."""
    heads = {}
    validate = train_module.Trainer.validate

    def scripted(self):
        scores = validate(self)
        heads[self.step] = self.model.head.weight.detach().clone()  # step 0: the last call is after the warm start
        return {**scores, "valid_token_mse": {**SCRIPTED, 0: 0.05}.get(self.step, scores["valid_token_mse"])}

    monkeypatch.setattr(train_module.Trainer, "validate", scripted)
    out = tmp_path / "run"
    assert main(["train", str(tiny_model_dir("bert")), "--corpus", str(corpora("bert")), "--out", str(out), "--steps",
                 "4", "--eval-every", "2", "--tokens", "256", "--lr", "1e-3"]) == 0
    torch.testing.assert_close(load_file(out / "head.safetensors")["weight"], heads[0], rtol=0, atol=0)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["best_step"] == 0 and summary["weights"] == "best (step 0)"
    assert summary["best_valid_token_mse"] == 0.05


def test_the_kept_weights_follow_the_error_per_token_not_per_position(tiny_model_dir, corpora, tmp_path, monkeypatch):
    """Per position, step 2 is best; per token (what `embed` writes), step 6: the run keeps step 6, and stops early
    on the per-token figure too (patience 1: step 8 is worse per token though better per position)."""
    heads = {}
    validate = train_module.Trainer.validate
    per_position = {0: 1.0, 2: 0.2, 4: 0.9, 6: 0.8, 8: 0.1}
    per_token = {0: 1.0, 2: 0.9, 4: 0.8, 6: 0.3, 8: 0.4}

    def scripted(self):
        scores = validate(self)
        heads[self.step] = self.model.head.weight.detach().clone()
        return {**scores, "valid_mse": per_position[self.step], "valid_token_mse": per_token[self.step]}

    monkeypatch.setattr(train_module.Trainer, "validate", scripted)
    out = tmp_path / "run"
    assert main(["train", str(tiny_model_dir("bert")), "--corpus", str(corpora("bert")), "--out", str(out),
                 "--steps", "10", "--eval-every", "2", "--tokens", "256", "--lr", "1e-3", "--patience", "1"]) == 0
    torch.testing.assert_close(load_file(out / "head.safetensors")["weight"], heads[6], rtol=0, atol=0)
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["best_step"], summary["best_valid_token_mse"], summary["best_valid_mse"]) == (6, 0.3, 0.8)
    assert summary["early_stop"] and summary["steps"] == 8
