"""`defemb evaluate drift`: drift records for one pair and for every model a results folder saved."""

from __future__ import annotations

import math
import shutil

import numpy as np
import pytest

from defemb.config import DriftConfig
from defemb.errors import DefembError
from defemb.evaluation.drift import (
    PRIMARY,
    DriftJob,
    drift_metrics,
    drift_record,
    run_drift,
    saved_model_jobs,
)
from defemb.evaluation.records import RunRecord, read_records, write_record
from defemb.frequency import rank_tokens
from defemb.models import get_table, load_model, save_model, set_table


@pytest.fixture(scope="module")
def pair(tiny_model_dir):
    """(original gpt2 dir, copy whose rare rows got noise, the rare ids) — gpt2 ranks by index: fast."""
    before = tiny_model_dir("gpt2")
    after = tiny_model_dir("gpt2", fresh=True)
    loaded = load_model(str(after))
    E = get_table(loaded.model)
    rare = rank_tokens(loaded.tokenizer, E.shape[0], None, loaded.tokenizer_kind).bands["rare"]
    E[rare] += np.random.default_rng(0).normal(0, 1.0, size=(len(rare), E.shape[1])).astype(np.float32)
    set_table(loaded.model, E)
    save_model(loaded, after)
    return before, after


def test_metric_names_and_undefined_values_left_out():
    bands = {"rare": {"relative_displacement": 0.5, "knn_overlap": 0.25, "isotropy_change": -0.1, "n": 3},
             "medium": {"relative_displacement": float("nan"), "knn_overlap": float("nan"), "isotropy_change": 0.0}}
    assert drift_metrics(bands) == {"rare/relative_displacement": 0.5, "rare/knn_overlap": 0.25,
                                    "rare/isotropy_change": -0.1, "medium/isotropy_change": 0.0}


def test_a_model_against_itself_has_not_moved(pair):
    before, _ = pair
    record = drift_record(DriftConfig(str(before), str(before), queries=50), "self")
    assert record.status == "ok" and record.primary == PRIMARY == "rare/knn_overlap"
    for band in ("frequent", "medium", "rare", "all"):
        assert record.metrics[f"{band}/knn_overlap"] == 1.0
        assert record.metrics[f"{band}/relative_displacement"] == 0.0
        assert record.metrics[f"{band}/isotropy_change"] == 0.0


def test_a_perturbed_copy_moved_where_it_was_perturbed(pair):
    before, after = pair
    record = drift_record(DriftConfig(str(before), str(after), queries=50), "noisy", seed=3, task="mrpc")
    m = record.metrics
    assert m["rare/relative_displacement"] > 0.5 and m["frequent/relative_displacement"] == 0.0
    assert m["rare/knn_overlap"] < 0.9 and not math.isclose(m["rare/isotropy_change"], 0.0)
    assert (record.model, record.seed, record.task) == (str(after), 3, "mrpc")
    assert record.config["before"] == str(before) and record.config["after"] == str(after)


def test_a_missing_checkpoint_fails_before_measuring(pair, tmp_path):
    before, _ = pair
    with pytest.raises(DefembError, match="does not exist"):
        run_drift([DriftJob(str(before), str(tmp_path / "nope"), "x", None)], DriftConfig("a", "b"), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_an_unloadable_pair_gives_a_failed_record(pair, tmp_path):
    before, _ = pair
    empty = tmp_path / "empty"
    empty.mkdir()
    record = drift_record(DriftConfig(str(before), str(empty)), "broken")
    assert record.status == "failed" and "config" in record.error


def test_saved_models_of_a_results_folder_are_measured_against_their_start(pair, tmp_path):
    before, after = pair
    results = tmp_path / "classification"
    common = dict(evaluator="classification", task="mrpc", model=str(before), primary="dev/accuracy",
                  metrics={"dev/accuracy": 0.5})
    write_record(results, RunRecord(**common, label="orig", seed=0))
    shutil.copytree(after, results / "orig" / "seed-0" / "model")
    write_record(results, RunRecord(**common, label="orig", seed=1))  # no saved model: not measured
    write_record(results, RunRecord(**{**common, "metrics": {}}, label="bad", seed=0, status="failed", error="x"))
    shutil.copytree(after, results / "bad" / "seed-0" / "model")  # failed run: not measured
    jobs = saved_model_jobs(results)
    assert jobs == [DriftJob(str(before), str(results / "orig" / "seed-0" / "model"), "orig", 0, "mrpc")]
    out = tmp_path / "drift"
    (record,) = run_drift(jobs, DriftConfig("a", "b", queries=50), out)
    assert (record.label, record.seed, record.task, record.status) == ("orig", 0, "mrpc", "ok")
    assert record.metrics["rare/knn_overlap"] < 0.9
    assert run_drift(jobs, DriftConfig("a", "b", queries=50), out) == []  # resumed
    with pytest.raises(DefembError, match="--save-models"):
        saved_model_jobs(out)


def test_command_single_pair(pair, tmp_path, capsys):
    from defemb.cli import main

    before, after = pair
    out = tmp_path / "out"
    assert main(["evaluate", "drift", str(before), str(after), "--label", "noisy", "--queries", "50",
                 "--out", str(out)]) == 0
    assert "rare" in capsys.readouterr().out
    (record,) = read_records(out)
    assert record.label == "noisy" and record.seed is None and record.metrics["rare/knn_overlap"] < 0.9
    assert main(["evaluate", "drift", "--out", str(tmp_path / "o2")]) == 2  # neither a pair nor --results


def test_an_extend_output_as_start_reports_its_added_tokens_as_a_group(tiny_model_dir, tmp_path, capsys):
    """Fine-tuning moved only the added rows: the "added" group says so, the bands' union ("all") barely."""
    before = tiny_model_dir("gpt2", fresh=True)
    added = np.array([3, 40, 77, 91])
    (before / "added.tsv").write_text("word\tid\n" + "".join(f"w{i}\t{i}\n" for i in added), encoding="utf-8")
    loaded = load_model(str(before))
    E = get_table(loaded.model)
    E[added] += 5.0 * np.random.default_rng(1).normal(size=(len(added), E.shape[1])).astype(np.float32)
    set_table(loaded.model, E)
    after = tmp_path / "after"
    save_model(loaded, after)
    record = drift_record(DriftConfig(model_a=str(before), model_b=str(after)), "x")
    assert record.status == "ok", record.error
    assert record.metrics["added/relative_displacement"] > 10 * record.metrics["all/relative_displacement"] > 0
    assert record.metrics["added/knn_overlap"] < 1.0
    plain = drift_record(DriftConfig(model_a=str(after), model_b=str(after)), "y")
    assert not any(name.startswith("added/") for name in plain.metrics)
    from defemb.cli import main

    capsys.readouterr()
    assert main(["evaluate", "drift", str(before), str(after), "--queries", "20", "--out", str(tmp_path / "cli")]) == 0
    assert "added" in capsys.readouterr().out  # the command's table shows the group
