"""`train --gradient-checkpointing`: the body's activations are recomputed, and the run learns the same."""

from __future__ import annotations

import json

from defemb.cli import main


def _losses(out) -> list[float]:
    lines = (out / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    return [m[k] for m in map(json.loads, lines) if "train_mse" in m for k in ("train_mse", "valid_mse")]


def test_checkpointing_recomputes_the_layers_and_changes_nothing_else(tiny_model_dir, corpora, tmp_path,
                                                                       monkeypatch):
    import torch

    calls = {"plain": 0, "checkpointed": 0}
    forward = torch.nn.Module.__call__
    current = {"name": "plain"}

    def counting(self, *args, **kwargs):  # counts the MLP calls inside the decoder blocks (GPT-2: GPT2MLP)
        if type(self).__name__ == "GPT2MLP":
            calls[current["name"]] += 1
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(torch.nn.Module, "__call__", counting)
    runs = {}
    for name, extra in (("plain", []), ("checkpointed", ["--gradient-checkpointing"])):
        current["name"] = name
        runs[name] = tmp_path / name
        assert main(["train", str(tiny_model_dir("gpt2")), "--corpus", str(corpora("gpt2")), "--out",
                     str(runs[name]), "--steps", "3", "--eval-every", "1", "--tokens", "256",
                     "--no-warm-start", *extra]) == 0
    assert calls["checkpointed"] > calls["plain"]  # the backward pass ran the blocks again
    plain, checkpointed = _losses(runs["plain"]), _losses(runs["checkpointed"])
    assert len(plain) == 6
    assert all(abs(a - b) <= 1e-4 * max(abs(a), 1) for a, b in zip(plain, checkpointed, strict=True))
