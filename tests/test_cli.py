"""The `defemb` command end to end on tiny models of every family, and its handling of bad input."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import numpy as np
import pytest
from transformers import AutoModel

from defemb.cli import build_parser, main
from defemb.models import get_table, load_model
from tiny_models import FAMILIES


def run_cli(*args: str) -> subprocess.CompletedProcess:
    """The real entry point in a subprocess, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "defemb.cli", *args], capture_output=True, text=True)


@pytest.mark.parametrize("family", FAMILIES)
def test_analyze_every_family(tiny_model_dir, tmp_path, family):
    out = tmp_path / "report"
    table = "decoder" if family == "t5gemma" else "input"
    assert main(["analyze", str(tiny_model_dir(family)), "--out", str(out), "--table", table, "--sample", "3"]) == 0
    for name in ("analysis.json", "analysis.md", "projection.png", "report.html", "config.json"):
        assert (out / name).stat().st_size > 0
    summary = json.loads((out / "analysis.json").read_text())
    assert summary["table"] == table
    assert set(summary["bands"]) == {"frequent", "medium", "rare", "all"}
    sizes = summary["band_sizes"]
    total = sum(sizes.values())
    assert sizes["frequent"] == round(0.3 * total) and sizes["rare"] == round(0.2 * total)
    for stats in summary["bands"].values():
        assert 0.0 <= stats["isotropy"] <= 1.0 and np.isfinite(stats["isoscore"])
    assert summary["numeric_max_difference"]["n"] > 0
    assert len(summary["neighbours"]) == 3 and all(len(n["neighbours"]) == 10 for n in summary["neighbours"])
    assert "<script src=\"http" not in (out / "report.html").read_text()


def test_analyze_chosen_tokens_and_tables(tiny_model_dir, tmp_path):
    path = str(tiny_model_dir("t5gemma"))
    assert main(["analyze", path, "--out", str(tmp_path / "enc"), "--table", "encoder", "--tokens", "▁102"]) == 0
    assert main(["analyze", path, "--out", str(tmp_path / "dec"), "--table", "decoder", "--tokens", "▁102"]) == 0
    enc = json.loads((tmp_path / "enc" / "analysis.json").read_text())
    dec = json.loads((tmp_path / "dec" / "analysis.json").read_text())
    assert enc["neighbours"][0]["token"] == "▁102" and enc["neighbours"][0]["source"] == "chosen"
    assert enc["bands"]["all"]["isotropy"] != dec["bands"]["all"]["isotropy"]  # separate tables
    assert dec["tying"]["output_tied_to"] == ["decoder"]


def test_analyze_is_deterministic(tiny_model_dir, tmp_path):
    path = str(tiny_model_dir("bert"))
    for name in ("a", "b"):
        assert main(["analyze", path, "--out", str(tmp_path / name), "--seed", "3"]) == 0
    a, b = (json.loads((tmp_path / n / "analysis.json").read_text()) for n in ("a", "b"))
    for summary in (a, b):
        summary.pop("seconds")
        summary["config"].pop("model")
    assert a == b


@pytest.mark.parametrize("method", ["deldirection", "zscore"])
@pytest.mark.parametrize("family", ["bert", "gpt2", "t5"])
def test_baseline_checkpoint_reloads_and_analyzes(tiny_model_dir, tmp_path, family, method):
    source = str(tiny_model_dir(family))
    out = tmp_path / "baseline"
    assert main(["baseline", method, source, "--out", str(out), "--components", "2"]) == 0
    assert (out / "model.safetensors").is_file() and (out / "defemb.json").is_file()
    original = get_table(load_model(source).model)
    reloaded = load_model(str(out))
    new = get_table(reloaded.model)
    assert new.shape == original.shape and not np.allclose(new, original)
    np.testing.assert_allclose(new.mean(axis=0), 0.0, atol=1e-5)  # both methods centre the table
    if reloaded.model.get_output_embeddings() is not None:  # the tied head followed the table
        np.testing.assert_array_equal(get_table(reloaded.model, "output"), new)
    assert AutoModel.from_pretrained(str(out)) is not None
    assert main(["analyze", str(out), "--out", str(tmp_path / "analysis")]) == 0


def test_drift_between_model_and_its_baseline(tiny_model_dir, tmp_path, capsys):
    source = str(tiny_model_dir("roberta"))
    baseline = tmp_path / "del"
    assert main(["baseline", "deldirection", source, "--out", str(baseline)]) == 0
    assert main(["drift", source, source, "--out", str(tmp_path / "same")]) == 0
    same = json.loads((tmp_path / "same" / "drift.json").read_text())
    assert all(b["displacement"] == 0 and b["knn_overlap"] == 1.0 for b in same["bands"].values())
    assert main(["drift", source, str(baseline), "--out", str(tmp_path / "moved")]) == 0
    moved = json.loads((tmp_path / "moved" / "drift.json").read_text())["bands"]
    assert moved["all"]["displacement"] > 0 and moved["all"]["knn_overlap"] < 1.0
    assert "drift" in capsys.readouterr().out


def test_export_projector(tiny_model_dir, tmp_path):
    out = tmp_path / "proj"
    assert main(["export-projector", str(tiny_model_dir("gpt2")), "--out", str(out)]) == 0
    vectors = np.loadtxt(out / "vectors.tsv", delimiter="\t")
    metadata = (out / "metadata.tsv").read_text(encoding="utf-8").splitlines()
    assert metadata[0] == "token\tid\tband"
    assert len(metadata) - 1 == len(vectors) and vectors.shape[1] == 32
    assert {line.split("\t")[2] for line in metadata[1:]} == {"frequent", "medium", "rare"}


def _assert_clean_failure(result: subprocess.CompletedProcess, expected: str, out) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], result.stderr
    assert not out.exists()
    assert not list(out.parent.glob(f".{out.name}*"))  # no temporary left behind


def test_bad_input_is_one_line_exit_2_nothing_written(tiny_model_dir, tmp_path):
    model = str(tiny_model_dir("bert"))
    out = tmp_path / "out"
    _assert_clean_failure(run_cli("analyze", str(tmp_path / "missing-model"), "--out", str(out)), "does not exist", out)
    _assert_clean_failure(run_cli("analyze", model, "--ranking", "zipf", "--out", str(out)), "unknown --ranking", out)
    _assert_clean_failure(
        run_cli("baseline", "deldirection", model, "--components", "four", "--out", str(out)), "whole number", out
    )
    _assert_clean_failure(
        run_cli("baseline", "deldirection", model, "--components", "100000", "--out", str(out)), "table width", out
    )
    _assert_clean_failure(run_cli("analyze", model, "--tokens", "notatoken", "--out", str(out)), "notatoken", out)


def test_model_without_token_table(tmp_path):
    from transformers import ViTConfig, ViTModel

    vit = tmp_path / "vit"
    ViTModel(ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                       image_size=32, patch_size=16)).save_pretrained(vit)
    out = tmp_path / "out"
    _assert_clean_failure(run_cli("analyze", str(vit), "--out", str(out)), "no input token-embedding table", out)


def test_existing_out_needs_force(tiny_model_dir, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    result = run_cli("analyze", str(tiny_model_dir("bert")), "--out", str(out))
    assert result.returncode == 2 and "--force" in result.stderr
    assert (out / "keep.txt").read_text() == "precious"
    assert main(["analyze", str(tiny_model_dir("bert")), "--out", str(out), "--force"]) == 0
    assert not (out / "keep.txt").exists() and (out / "analysis.json").is_file()


def test_compare_prints_side_by_side(tiny_model_dir, tmp_path, capsys):
    source = str(tiny_model_dir("bert"))
    assert main(["analyze", source, "--out", str(tmp_path / "orig")]) == 0
    assert main(["baseline", "deldirection", source, "--out", str(tmp_path / "del")]) == 0
    assert main(["analyze", str(tmp_path / "del"), "--out", str(tmp_path / "del-analysis")]) == 0
    capsys.readouterr()
    assert main(["compare", str(tmp_path / "orig"), str(tmp_path / "del-analysis")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "| measure | orig | del-analysis |"
    iso_rare = next(line for line in lines if line.startswith("| I(E) (rare)"))
    shown = [float(x) for x in iso_rare.strip("|").split("|")[1:]]
    expected = [json.loads((tmp_path / d / "analysis.json").read_text())["bands"]["rare"]["isotropy"]
                for d in ("orig", "del-analysis")]
    assert shown == pytest.approx(expected, abs=1e-4)
    assert main(["compare", str(tmp_path / "nothing-here")]) == 2


def _subparsers(parser: argparse.ArgumentParser, prog: str = "defemb"):
    """(command line, parser) for the parser and every subcommand under it, evaluate's included."""
    yield prog, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _subparsers(sub, f"{prog} {name}")


def test_every_argument_has_help_text():
    missing = [
        f"{prog}: {'/'.join(action.option_strings) or action.dest}"
        for prog, parser in _subparsers(build_parser())
        for action in parser._actions
        if not isinstance(action, (argparse._HelpAction, argparse._SubParsersAction))
        and not (action.help or "").strip()
    ]
    commands = [prog for prog, _ in _subparsers(build_parser())]
    assert {"defemb add-tokens", "defemb evaluate classification", "defemb corpus build"} <= set(commands)
    assert not missing, "no help text:\n" + "\n".join(missing)
