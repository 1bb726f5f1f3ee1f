from __future__ import annotations

import json
import random
import statistics

import pytest

from defemb.cli import main
from defemb.errors import DefembError
from defemb.evaluation.bootstrap import paired_bootstrap, seed_bootstrap
from defemb.evaluation.records import RunRecord, write_record
from defemb.evaluation.results import merge, table_rows, write_results

N = 20  # examples per seed


def _scores(label: str, seed: int) -> list[float]:
    """Fixed 0/1 per-example accuracies; 'defemb' is right wherever 'original' is, and more often."""
    rng = random.Random(f"{seed}")
    base = [float(rng.random() < 0.6) for _ in range(N)]
    if label == "defemb":
        return [1.0 if i % 3 == 0 else x for i, x in enumerate(base)]
    if label == "deldir":
        return [float(random.Random(f"d{seed}-{i}").random() < 0.6) for i in range(N)]
    return base


def _ok(label: str, seed: int | None, scores: list[float], **extra) -> RunRecord:
    metrics = {"dev/accuracy": sum(scores) / len(scores), "dev/f1": 0.7 + 0.01 * (seed or 0) + 0.02 * len(label)}
    return RunRecord(evaluator="classification", task="mrpc", model=f"/ckpt/{label}", label=label, seed=seed,
                     primary="dev/accuracy", metrics=metrics, per_example={"dev/accuracy": scores}, **extra)


def _failed(label: str, seed: int | None, error: str) -> RunRecord:
    return RunRecord(evaluator="classification", task="mrpc", model=f"/ckpt/{label}", label=label, seed=seed,
                     primary="dev/accuracy", status="failed", error=error)


@pytest.fixture()
def runs(tmp_path):
    """classification/mrpc: original, deldir (seed 2 failed), defemb × seeds 0-2, broken (all failed);
    wordsim/simlex: a deterministic evaluator (seed None) with a Spearman score and no per-example scores."""
    mrpc = tmp_path / "mrpc"
    for label in ("original", "deldir", "defemb"):
        for seed in range(3):
            if label == "deldir" and seed == 2:
                write_record(mrpc, _failed(label, seed, "CUDA out of memory | tried 2 GiB"))
            else:
                write_record(mrpc, _ok(label, seed, _scores(label, seed)))
    for seed in range(3):
        write_record(mrpc, _failed("broken", seed, "no such file: /ckpt/broken" if seed else "bad tokenizer"))
    words = tmp_path / "simlex"
    for label, rho in (("original", 0.31), ("defemb", 0.3575)):
        write_record(words, RunRecord(evaluator="wordsim", task="simlex", model=label, label=label, seed=None,
                                      primary="spearman", metrics={"spearman": rho, "coverage": 0.9}))
    return [mrpc, words]


def _model(group: dict, label: str) -> dict:
    return next(m for m in group["models"] if m["label"] == label)


def test_means_stds_and_deltas(runs):
    merged = merge(runs, order=["original", "deldir", "defemb", "broken"])
    mrpc, words = merged["groups"]
    assert (mrpc["evaluator"], mrpc["task"], mrpc["reference"]) == ("classification", "mrpc", "original")
    assert mrpc["metrics"] == ["dev/accuracy", "dev/f1"]  # primary first, then sorted
    for label, seeds in (("original", [0, 1, 2]), ("deldir", [0, 1]), ("defemb", [0, 1, 2])):
        accuracy = [sum(_scores(label, s)) / N for s in seeds]
        stats = _model(mrpc, label)["metrics"]["dev/accuracy"]
        assert stats["n"] == len(seeds) and stats["seeds"] == seeds
        assert stats["mean"] == pytest.approx(statistics.fmean(accuracy))
        assert stats["std"] == pytest.approx(statistics.stdev(accuracy))
    reference_mean = _model(mrpc, "original")["metrics"]["dev/accuracy"]["mean"]
    defemb = _model(mrpc, "defemb")["metrics"]["dev/accuracy"]
    assert defemb["delta"] == pytest.approx(defemb["mean"] - reference_mean) and defemb["delta"] > 0
    assert _model(mrpc, "original")["metrics"]["dev/accuracy"]["delta"] is None
    f1 = _model(mrpc, "deldir")["metrics"]["dev/f1"]
    assert f1["delta"] == pytest.approx(0.02 * (len("deldir") - len("original")) + 0.005 - 0.01)  # seeds 0,1 vs 0,1,2
    assert f1["p"] is None  # no per-example scores for F1
    broken = _model(mrpc, "broken")
    assert broken["metrics"] == {} and [f["seed"] for f in broken["failed"]] == [0, 1, 2]
    # The deterministic evaluator: one run, no std, Δ but no p.
    rho = _model(words, "defemb")["metrics"]["spearman"]
    assert rho["n"] == 1 and rho["std"] is None and rho["p"] is None
    assert rho["delta"] == pytest.approx(0.0475)


def test_p_values_pool_the_shared_seeds_in_seed_order(runs):
    merged = merge(runs, order=["original"], resamples=500, seed=3)
    mrpc = merged["groups"][0]
    for label, seeds in (("defemb", [0, 1, 2]), ("deldir", [0, 1])):  # deldir's seed 2 failed
        stats = _model(mrpc, label)["metrics"]["dev/accuracy"]
        a = [x for s in seeds for x in _scores("original", s)]
        b = [x for s in seeds for x in _scores(label, s)]
        expected = paired_bootstrap(a, b, resamples=500, seed=3)
        assert stats["paired_seeds"] == seeds and stats["examples"] == len(seeds) * N
        assert stats["p"] == expected["p"]
        assert stats["ci"] == [expected["ci_low"], expected["ci_high"]]
    assert _model(mrpc, "defemb")["metrics"]["dev/accuracy"]["p"] < 0.01


def test_seed_p_values_resample_the_shared_seeds(runs):
    merged = merge(runs, order=["original"], resamples=300, seed=2)
    mrpc = merged["groups"][0]
    for label, seeds in (("defemb", [0, 1, 2]), ("deldir", [0, 1])):
        stats = _model(mrpc, label)["metrics"]["dev/accuracy"]
        expected = seed_bootstrap([_scores("original", s) for s in seeds], [_scores(label, s) for s in seeds],
                                  resamples=300, seed=2)
        assert stats["p_seeds"] == expected["p"]
        assert stats["ci_seeds"] == [expected["ci_low"], expected["ci_high"]]
    assert _model(mrpc, "original")["metrics"]["dev/accuracy"]["p_seeds"] is None  # the reference


def test_one_shared_seed_has_no_seed_p_value(tmp_path):
    root = tmp_path / "runs"
    for label in ("original", "defemb"):
        write_record(root, _ok(label, 0, _scores(label, 0)))
    stats = _model(merge([root], order=["original"])["groups"][0], "defemb")["metrics"]["dev/accuracy"]
    assert stats["p"] is not None and stats["p_seeds"] is None


def test_pairing_ignores_written_order_and_unshared_seeds(tmp_path):
    def scores(label: str, seed: int) -> list[float]:  # real-valued, so a reordered pool changes the interval
        rng = random.Random(f"{label}{seed}")
        return [rng.random() for _ in range(N)]

    root = tmp_path / "runs"
    for seed in (0, 1, 2):
        write_record(root, _ok("original", seed, scores("original", seed)))
    for seed in (3, 2, 0):  # seed 3 has no partner; 1 is missing
        write_record(root, _ok("deldir", seed, scores("deldir", seed)))
    stats = _model(merge([root], order=["original"], seed=1)["groups"][0], "deldir")["metrics"]["dev/accuracy"]
    assert stats["paired_seeds"] == [0, 2]
    a = scores("original", 0) + scores("original", 2)
    b = scores("deldir", 0) + scores("deldir", 2)
    expected = paired_bootstrap(a, b, seed=1)
    assert stats["ci"] == [expected["ci_low"], expected["ci_high"]] and stats["p"] == expected["p"]
    swapped = paired_bootstrap(a[N:] + a[:N], b[N:] + b[:N], seed=1)
    assert stats["ci"] != [swapped["ci_low"], swapped["ci_high"]]  # the concatenation order is really checked


def test_mismatched_per_example_lengths_are_refused(tmp_path):
    root = tmp_path / "runs"
    write_record(root, _ok("original", 0, _scores("original", 0)))
    write_record(root, _ok("defemb", 0, _scores("defemb", 0)[:-1]))
    with pytest.raises(DefembError, match=r"seed 0: 'original' has 20 per-example scores but 'defemb' has 19"):
        merge([root], order=["original", "defemb"])


def test_duplicate_runs_and_bad_order_are_refused(runs, tmp_path):
    with pytest.raises(DefembError, match="two results for classification/mrpc, model 'broken', seed 0"):
        merge([runs[1], runs[0], runs[0]])
    with pytest.raises(DefembError, match="--order names nope"):
        merge(runs, order=["original", "nope"])
    with pytest.raises(DefembError, match="bad --order"):
        merge(runs, order=["original", "original"])
    with pytest.raises(DefembError, match="resamples"):
        merge(runs, resamples=0)


def test_order_sets_the_reference(runs):
    default = merge(runs)["groups"][0]
    # Path order, except that 'broken' has no ok run to compare against: the next model is the reference, on top.
    assert [m["label"] for m in default["models"]] == ["defemb", "broken", "deldir", "original"]
    assert default["reference"] == "defemb"
    mrpc = merge(runs, order=["defemb", "original"])["groups"][0]
    assert mrpc["reference"] == "defemb"
    assert [m["label"] for m in mrpc["models"]] == ["defemb", "original", "broken", "deldir"]
    forward = _model(merge(runs, order=["original"])["groups"][0], "defemb")["metrics"]["dev/accuracy"]["delta"]
    assert _model(mrpc, "original")["metrics"]["dev/accuracy"]["delta"] == pytest.approx(-forward)


def test_table_rows_and_markdown(runs, tmp_path):
    merged = merge(runs, order=["original", "deldir", "defemb", "broken"])
    out = tmp_path / "table"
    write_results(merged, out)
    mrpc = merged["groups"][0]
    accuracy = [sum(_scores("original", s)) / N * 100 for s in range(3)]
    rows = table_rows(mrpc)
    assert rows[0] == ["original", "dev/accuracy %",
                       f"{statistics.fmean(accuracy):.2f} ± {statistics.stdev(accuracy):.2f} (3)", "(ref)", "—", "—"]
    assert ["deldir", "failed (1)", "seed 2: CUDA out of memory | tried 2 GiB", "", "", ""] in rows
    assert ["broken", "failed (3)", "seed 0: bad tokenizer; seed 1, 2: no such file: /ckpt/broken", "", "", ""] in rows
    defemb = next(r for r in rows if r[:2] == ["defemb", "dev/accuracy %"])
    assert defemb[4] == "<0.001" and defemb[3].startswith("+")
    seeds_p = _model(mrpc, "defemb")["metrics"]["dev/accuracy"]["p_seeds"]
    assert defemb[5] == ("<0.001" if seeds_p < 0.001 else f"{seeds_p:.3f}")
    text = (out / "results.md").read_text()
    assert "## classification / mrpc (reference: original, primary: dev/accuracy)" in text
    assert "## wordsim / simlex (reference: original, primary: spearman)" in text
    assert "| model | metric | mean ± std (n) | Δ | p | p (seeds) |" in text
    assert "| original | spearman % | 31.00 (1) | (ref) | — | — |" in text
    assert "| defemb | spearman % | 35.75 (1) | +4.75 | — | — |" in text
    assert "| deldir | failed (1) | seed 2: CUDA out of memory \\| tried 2 GiB |  |  |  |" in text  # '|' escaped
    assert "p for deldir pools seeds 0, 1 only" in text
    assert f"Regenerate: `defemb results {runs[0]} {runs[1]} --out {out} --order original,deldir,defemb,broken " \
           "--resamples 1000 --seed 0 --force`" in text
    assert "shown ×100 (marked %)" in text
    assert json.loads((out / "results.json").read_text()) == json.loads(json.dumps(merged))
    assert (out / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_non_fraction_metrics_keep_their_unit(tmp_path):
    root = tmp_path / "runs"
    for label, loss in (("a", 2.5), ("b", 2.25)):
        write_record(root, RunRecord(evaluator="lm", task="wiki", model=label, label=label, seed=None,
                                     primary="loss", metrics={"loss": loss}))
    rows = table_rows(merge([root])["groups"][0])
    assert rows == [["a", "loss", "2.5000 (1)", "(ref)", "—", "—"], ["b", "loss", "2.2500 (1)", "-0.2500", "—", "—"]]


def test_cli_end_to_end(runs, tmp_path, capsys):
    out = tmp_path / "merged"
    argv = ["results", str(runs[0]), str(runs[1]), "--out", str(out), "--order", "original,deldir,defemb"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "classification / mrpc" in printed and "failed (3)" in printed and "<0.001" in printed
    first = (out / "results.md").read_text()
    assert main(argv) == 2  # an existing --out needs --force
    assert "already exists" in capsys.readouterr().err
    assert main([*argv, "--force", "--seed", "1"]) == 0
    assert "--seed 1 --force" in (out / "results.md").read_text() != first
    assert sorted(p.name for p in out.iterdir()) == ["results.json", "results.md", "results.png"]


def test_cli_refuses_missing_empty_and_self_overwriting_dirs(runs, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "out"
    assert main(["results", str(tmp_path / "missing"), "--out", str(out)]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["results", str(empty), "--out", str(out)]) == 2
    assert "no result.json found" in capsys.readouterr().err
    assert not out.exists()
    assert main(["results", str(runs[0]), "--out", str(tmp_path), "--force"]) == 2
    assert "would delete those runs" in capsys.readouterr().err
    assert len(list(runs[0].rglob("result.json"))) == 12
