"""Geometry drift as evaluation records: how far fine-tuning moved a table, per frequency band.

`defemb.analysis.drift.drift` does the measuring; this module turns its result into a `RunRecord`
(``<band>/relative_displacement``, ``<band>/knn_overlap``, ``<band>/isotropy_change`` for the frequent,
medium and rare bands, all tokens and, for a `defemb extend` start, ``added``: its new tokens; primary
``rare/knn_overlap``: how much of the rare tokens' neighbourhoods survive, paper Fig. 2/6),
and measures every model a classification run saved (``OUT/<label>/seed-<s>/model``) against the
checkpoint it started from (its record's ``model``).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from pathlib import Path

from tqdm.auto import tqdm

from defemb.config import DriftConfig
from defemb.errors import DefembError
from defemb.evaluation.records import (
    RunRecord,
    error_line,
    finished,
    open_out,
    read_records,
    run_dir,
    write_record,
)
from defemb.models import resolve_model_name

EVALUATOR = "drift"
PRIMARY = "rare/knn_overlap"
MEASURES = ("relative_displacement", "knn_overlap", "isotropy_change")
SAVED_MODEL = "model"


def drift_metrics(bands: dict[str, dict]) -> dict[str, float]:
    """``{band: {measure: value}}`` -> ``{"band/measure": value}``; undefined values (empty band) are left out."""
    return {f"{band}/{m}": float(values[m]) for band, values in bands.items() for m in MEASURES
            if not math.isnan(float(values[m]))}


def drift_record(config: DriftConfig, label: str, seed: int | None = None, task: str = EVALUATOR) -> RunRecord:
    """Measure ``config.model_a`` (before) -> ``config.model_b`` (after); any failure becomes a failed record."""
    from defemb.analysis.drift import drift

    start = time.perf_counter()
    base = dict(evaluator=EVALUATOR, task=task, model=config.model_b, label=label, seed=seed, primary=PRIMARY,
                config={**config.to_dict(), "before": config.model_a, "after": config.model_b})
    try:
        result = drift(config)
        return RunRecord(**base, metrics=drift_metrics(result["bands"]), wall_s=time.perf_counter() - start)
    except Exception as exc:  # one pair failing must not stop the others; its record says why
        return RunRecord(**base, status="failed", error=error_line(exc), wall_s=time.perf_counter() - start)


@dataclass
class DriftJob:
    """One pair to measure; ``label`` and ``seed`` name its result folder."""

    before: str
    after: str
    label: str
    seed: int | None
    task: str = EVALUATOR


def saved_model_jobs(results: str | Path) -> list[DriftJob]:
    """Every ok run of a results folder that kept its fine-tuned model: start checkpoint -> that model."""
    jobs = []
    for record in read_records(results):
        folder = run_dir(results, record.label, record.seed) / SAVED_MODEL
        if record.status == "ok" and record.evaluator != EVALUATOR and (folder / "config.json").is_file():
            jobs.append(DriftJob(record.model, str(folder), record.label, record.seed, record.task))
    if not jobs:
        raise DefembError(f"no run under '{results}' saved its model ({SAVED_MODEL}/ beside result.json); "
                          "rerun the evaluation with --save-models")
    return jobs


def run_drift(jobs: list[DriftJob], settings: DriftConfig, out: str | Path, force: bool = False) -> list[RunRecord]:
    """One record per job under OUT (resumable); ``settings`` gives table, ranking, k, queries and seed."""
    labels = [(j.label, j.seed) for j in jobs]
    if len(set(labels)) != len(labels):
        raise DefembError("drift jobs must have distinct (label, seed) pairs: they name the result folders")
    for job in jobs:  # missing checkpoints fail here, before any measuring
        resolve_model_name(job.before)
        resolve_model_name(job.after)
    common = {k: v for k, v in settings.to_dict().items() if k not in ("model_a", "model_b")}
    open_out(out, {"evaluator": EVALUATOR, **common}, force, free=("trust_remote_code",), what=EVALUATOR)
    records = []
    for job in tqdm(jobs, desc="drift", unit="pair"):
        if finished(out, job.label, job.seed):
            continue
        record = drift_record(replace(settings, model_a=job.before, model_b=job.after), job.label, job.seed, job.task)
        write_record(out, record)
        records.append(record)
    return records
