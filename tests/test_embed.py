"""`defemb embed`: which state gives each row, what the model sees there, aggregation, and bad input.

The runs here are untrained (the tiny model as body, a random W): embed's job is to read the right state
from the right input, which a random model shows as well as a trained one, and much faster.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from defemb.cli import main
from defemb.embeddings import load_embeddings
from defemb.method.data import load_records
from defemb.method.embed import embed, load_run
from defemb.models import load_model


@pytest.fixture(scope="module")
def runs(tiny_model_dir, tmp_path_factory):
    """Factory: ``runs("bert")`` -> a finished-run folder holding the tiny model and a random W."""
    folder = tmp_path_factory.mktemp("runs")

    def make(family: str) -> Path:
        run = folder / family
        if not run.exists():
            loaded = load_model(str(tiny_model_dir(family)))
            loaded.model.save_pretrained(run / "model")
            loaded.tokenizer.save_pretrained(run / "model")
            hidden = loaded.model.config.get_text_config(decoder=True).hidden_size
            rows = loaded.model.get_input_embeddings().weight.shape[1]
            head = torch.randn(rows, hidden, generator=torch.Generator().manual_seed(0)) * hidden**-0.5
            save_file({"weight": head}, run / "head.safetensors")
            (run / "config.json").write_text(json.dumps({"model": str(tiny_model_dir(family)), "table": "input"}))
        return run

    return make


def _embed(run: Path, corpus: Path, out: Path, **options) -> dict[int, np.ndarray]:
    embed(run, corpus, out, **options)
    table = load_embeddings(out)
    return dict(zip(table.token_ids.tolist(), table.embeddings, strict=True))


def _records(run: Path, corpus: Path) -> list[dict]:
    size = len(load_run(run)[1].tokenizer)
    return load_records(corpus, "train", size) + load_records(corpus, "valid", size)


def test_empty_corpus_and_max_prompts_below_one_are_one_line_errors(runs, corpora, tmp_path, capsys):
    corpus = tmp_path / "empty"
    shutil.copytree(corpora("bert"), corpus)
    for split in ("train", "valid"):
        (corpus / f"{split}.jsonl").write_text("", encoding="utf-8")
    out = tmp_path / "e.safetensors"
    assert main(["embed", str(runs("bert")), "--corpus", str(corpus), "--out", str(out)]) == 2
    for value in ("0", "-1"):
        assert main(["embed", str(runs("bert")), "--corpus", str(corpora("bert")), "--out", str(out),
                     "--aggregate", "mean", "--max-prompts", value]) == 2
    out.mkdir()
    assert main(["embed", str(runs("bert")), "--corpus", str(corpora("bert")), "--out", str(out), "--force"]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("defemb: error:")]
    assert len(lines) == 4 and "has no records" in lines[0] and "is a directory" in lines[3]
    assert all("--max-prompts must be a positive whole number" in line for line in lines[1:3])
    assert not any(out.iterdir()) and sorted(p.name for p in tmp_path.iterdir()) == ["e.safetensors", "empty"]
