"""`defemb results`: merge evaluation runs into one table per (evaluator, task) with paired bootstrap p-values.

Per group the models keep the order they first appear in (roots in the order given, then ``result.json`` paths
sorted) unless ``order`` names them; the first model with an ok run is the reference, listed first. Per model
and metric: mean ± sample std over its ok seeds, Δ of the mean against the reference, and — for metrics both
models list in ``per_example`` — the paired bootstrap p-value of `bootstrap.paired_bootstrap` on the seeds both
models have, pooled in seed order (the paper's "combined test pool"), and with two or more such seeds the
two-level p-value of `bootstrap.seed_bootstrap`, which resamples the seeds too; every comparison uses the same
bootstrap seed.
Failed runs become "failed (n)" rows carrying their error messages.
"""

from __future__ import annotations

import math
import shlex
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from defemb.errors import DefembError, quote
from defemb.evaluation.bootstrap import mean_std, paired_bootstrap, seed_bootstrap
from defemb.evaluation.records import RunRecord, read_records
from defemb.outputs import atomic_dir, check_writable, write_json_atomic, write_text_atomic

HEADER = ["model", "metric", "mean ± std (n)", "Δ", "p", "p (seeds)"]
CAPTION = ("Metrics whose values all lie in [0, 1] are shown ×100 (marked %) with 2 decimals, others as is with "
           "4 decimals; mean ± sample std over seeds (n seeds; no ± with one seed). Δ: mean minus the reference's "
           "mean, same unit. p: two-sided paired bootstrap (Koehn 2004) against the reference on the per-example "
           "scores of the seeds both share, pooled (the paper's test: the seeds are taken as fixed). p (seeds): the "
           "same test resampling the seeds as well as the examples, so a difference one seed carries is not "
           "significant; '—' with fewer than 2 shared seeds. '—' where a metric has no per-example scores.")


def _seed_key(seed: int | None) -> tuple[bool, int]:
    return (seed is not None, seed if seed is not None else 0)


def _seeds_text(seeds: Iterable[int | None]) -> str:
    return ", ".join("none" if s is None else str(s) for s in seeds)


def _collect(roots: list[str | Path]) -> dict[tuple[str, str], list[RunRecord]]:
    """Records grouped by (evaluator, task) in order of first appearance; one record per (label, seed)."""
    groups: dict[tuple[str, str], list[RunRecord]] = {}
    where: dict[tuple[str, str, str, int | None], str] = {}
    for root in roots:
        for record in read_records(root):
            key = (record.evaluator, record.task, record.label, record.seed)
            if key in where:
                raise DefembError(
                    f"two results for {record.evaluator}/{record.task}, model '{record.label}', seed "
                    f"{_seeds_text([record.seed])} (under '{where[key]}' and '{root}'): pass each run once")
            where[key] = str(root)
            groups.setdefault((record.evaluator, record.task), []).append(record)
    return groups


def _labels(records: list[RunRecord], order: list[str] | None) -> list[str]:
    seen = list(dict.fromkeys(r.label for r in records))
    if not order:
        return seen
    return [label for label in order if label in seen] + [label for label in seen if label not in order]


def _failures(records: list[RunRecord]) -> list[dict[str, Any]]:
    failed = sorted((r for r in records if r.status == "failed"), key=lambda r: _seed_key(r.seed))
    return [{"seed": r.seed, "error": r.error or "no error message"} for r in failed]


def _flat(per_seed: list[list[float]]) -> list[float]:
    return [x for scores in per_seed for x in scores]


def _pooled(group: str, metric: str, ref: str, other: str, ref_runs: dict[int | None, RunRecord],
            runs: dict[int | None, RunRecord]) -> tuple[list[int | None], list[list[float]], list[list[float]]]:
    """Per-example scores of the seeds both models have, a list per seed in seed order (same order for both)."""
    seeds = sorted((s for s in runs if s in ref_runs and metric in runs[s].per_example
                    and metric in ref_runs[s].per_example), key=_seed_key)
    pooled_ref: list[list[float]] = []
    pooled: list[list[float]] = []
    for seed in seeds:
        a, b = ref_runs[seed].per_example[metric], runs[seed].per_example[metric]
        if len(a) != len(b):
            raise DefembError(
                f"{group}, metric '{metric}', seed {_seeds_text([seed])}: '{ref}' has {len(a)} per-example scores "
                f"but '{other}' has {len(b)}; both must score the same examples in the same order (rerun them on "
                f"the same data and limits, or leave one out)")
        pooled_ref.append(list(a))
        pooled.append(list(b))
    return seeds, pooled_ref, pooled


def _group(evaluator: str, task: str, records: list[RunRecord], order: list[str] | None, resamples: int,
           seed: int) -> dict[str, Any]:
    name = f"{evaluator}/{task}"
    ok = [r for r in records if r.status == "ok"]
    primary = (ok or records)[0].primary
    metrics = [primary] if ok else []
    metrics += sorted({m for r in ok for m in r.metrics} - {primary})
    labels = _labels(records, order)
    runs = {label: {r.seed: r for r in ok if r.label == label} for label in labels}
    # A reference without a single ok run would leave every Δ and p blank: take the next model that has one.
    reference = next((label for label in labels if runs[label]), labels[0])
    labels = [reference] + [label for label in labels if label != reference]
    models = []
    for label in labels:
        own = [r for r in records if r.label == label]
        entry: dict[str, Any] = {"label": label, "model": own[0].model,
                                 "seeds": sorted(runs[label], key=_seed_key), "failed": _failures(own), "metrics": {}}
        for metric in metrics:
            seeds = [s for s in entry["seeds"] if metric in runs[label][s].metrics]
            if not seeds:
                continue
            values = [float(runs[label][s].metrics[metric]) for s in seeds]
            mean, std = mean_std(values)
            stats: dict[str, Any] = {"mean": mean, "std": None if math.isnan(std) else std, "n": len(seeds),
                                     "seeds": seeds, "values": values, "delta": None, "p": None,
                                     "p_seeds": None}
            if label != reference:
                ref_values = [float(r.metrics[metric]) for r in runs[reference].values() if metric in r.metrics]
                if ref_values:
                    stats["delta"] = mean - mean_std(ref_values)[0]
                paired, a, b = _pooled(name, metric, reference, label, runs[reference], runs[label])
                if paired:
                    test = paired_bootstrap(_flat(a), _flat(b), resamples=resamples, seed=seed)
                    stats.update(p=test["p"], ci=[test["ci_low"], test["ci_high"]], paired_seeds=paired,
                                 examples=test["n"])
                if len(paired) > 1:
                    by_seed = seed_bootstrap(a, b, resamples=resamples, seed=seed)
                    stats.update(p_seeds=by_seed["p"], ci_seeds=[by_seed["ci_low"], by_seed["ci_high"]])
            entry["metrics"][metric] = stats
        models.append(entry)
    return {"evaluator": evaluator, "task": task, "primary": primary, "reference": reference, "metrics": metrics,
            "models": models}


def merge(roots: list[str | Path], order: list[str] | None = None, resamples: int = 1000,
          seed: int = 0) -> dict[str, Any]:
    """Read every ``result.json`` under ``roots`` and build one table per (evaluator, task); see the module doc."""
    if not roots:
        raise DefembError("name at least one results directory")
    if resamples < 1:
        raise DefembError(f"--resamples must be >= 1, got {resamples}")
    if order is not None:
        repeated = sorted({x for x in order if order.count(x) > 1})
        if not order or "" in order or repeated:
            raise DefembError(f"bad --order {quote(','.join(order))}: a comma list of distinct model labels, e.g. "
                              f"original,defemb")
    groups = _collect(roots)
    known = {r.label for records in groups.values() for r in records}
    unknown = [label for label in order or [] if label not in known]
    if unknown:
        raise DefembError(f"--order names {', '.join(unknown)}, which no run has; labels found: "
                          f"{', '.join(sorted(known))}")
    return {"roots": [str(r) for r in roots], "order": order, "resamples": resamples, "seed": seed,
            "groups": [_group(evaluator, task, records, order, resamples, seed)
                       for (evaluator, task), records in groups.items()]}


def _percent_metrics(group: dict[str, Any]) -> set[str]:
    return {metric for metric in group["metrics"]
            if all(0.0 <= v <= 1.0 for m in group["models"] for v in m["metrics"].get(metric, {}).get("values", []))}


def _p_text(p: float | None) -> str:
    return "—" if p is None else ("<0.001" if p < 0.001 else f"{p:.3f}")


def table_rows(group: dict[str, Any]) -> list[list[str]]:
    """Rows under `HEADER` for one group: a row per (model, metric), then a "failed (n)" row if any run failed."""
    percent = _percent_metrics(group)
    rows = []
    for model in group["models"]:
        for metric, stats in model["metrics"].items():
            scale, digits = (100.0, 2) if metric in percent else (1.0, 4)
            value = f"{stats['mean'] * scale:.{digits}f}"
            if stats["std"] is not None:
                value += f" ± {stats['std'] * scale:.{digits}f}"
            if model["label"] == group["reference"]:
                delta = "(ref)"
            else:
                delta = "—" if stats["delta"] is None else f"{stats['delta'] * scale:+.{digits}f}"
            rows.append([model["label"], metric + (" %" if metric in percent else ""), f"{value} ({stats['n']})",
                         delta, _p_text(stats["p"]), _p_text(stats.get("p_seeds"))])
        if model["failed"]:
            by_error: dict[str, list[int | None]] = {}
            for failure in model["failed"]:
                by_error.setdefault(failure["error"], []).append(failure["seed"])
            errors = "; ".join(f"seed {_seeds_text(seeds)}: {error}" for error, seeds in by_error.items())
            rows.append([model["label"], f"failed ({len(model['failed'])})", errors, "", "", ""])
    return rows


def title(group: dict[str, Any]) -> str:
    return f"{group['evaluator']} / {group['task']} (reference: {group['reference']}, primary: {group['primary']})"


def command(merged: dict[str, Any], out: str | Path) -> str:
    """The `defemb results` command line that rebuilds ``out`` from the same runs."""
    words = ["defemb", "results", *merged["roots"], "--out", str(out)]
    if merged["order"]:
        words += ["--order", ",".join(merged["order"])]
    words += ["--resamples", str(merged["resamples"]), "--seed", str(merged["seed"]), "--force"]
    return shlex.join(words)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown(merged: dict[str, Any], out: str | Path) -> str:
    lines = ["# Evaluation results", "", f"Regenerate: `{command(merged, out)}`", "", CAPTION, ""]
    for group in merged["groups"]:
        lines += [f"## {title(group)}", "", "| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
        lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in table_rows(group)]
        reference = next(m for m in group["models"] if m["label"] == group["reference"])
        for model in group["models"]:
            paired = model["metrics"].get(group["primary"], {}).get("paired_seeds")
            if paired is not None and (paired != model["seeds"] or paired != reference["seeds"]):
                lines += ["", f"p for {model['label']} pools seeds {_seeds_text(paired)} only (those it shares "
                          f"with {group['reference']})."]
        lines.append("")
    return "\n".join(lines)


def plot(merged: dict[str, Any], path: str | Path) -> None:
    """One panel per group: the primary metric's mean per model, std as error bars; failed-only models get no bar."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    groups = merged["groups"]
    columns = min(3, len(groups))
    rows = math.ceil(len(groups) / columns)
    fig = Figure(figsize=(4.5 * columns, 3.6 * rows), dpi=120)
    FigureCanvasAgg(fig)
    for i, group in enumerate(groups):
        ax = fig.add_subplot(rows, columns, i + 1)
        primary = group["primary"]
        scale = 100.0 if primary in _percent_metrics(group) else 1.0
        names, means, errors = [], [], []
        for model in group["models"]:
            stats = model["metrics"].get(primary)
            names.append(model["label"] if stats else f"{model['label']}\n(failed)")
            means.append(stats["mean"] * scale if stats else 0.0)
            errors.append((stats["std"] or 0.0) * scale if stats else 0.0)
        bars = ax.bar(range(len(names)), means, yerr=errors, capsize=4, color="tab:blue")
        ax.bar_label(bars, [f"{m:.2f}" if "(failed)" not in n else "" for m, n in zip(means, names, strict=True)],
                     label_type="center", color="white", fontsize=8)
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
        ax.set_ylabel(primary + (" (%)" if scale == 100.0 else ""))
        ax.set_title(f"{group['evaluator']} / {group['task']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)


def check_out(out: str | Path, roots: Iterable[str | Path], force: bool) -> None:
    """Fail before any work if ``out`` exists (without force) or would replace a results directory read from."""
    check_writable(out, force)
    target = Path(out).resolve()
    for root in roots:
        source = Path(root).resolve()
        if source == target or target in source.parents:
            raise DefembError(f"--out '{out}' holds the results directory '{root}' it reads from; writing it "
                              f"would delete those runs: choose another --out")


def write_results(merged: dict[str, Any], out: str | Path, force: bool = False) -> Path:
    """``out/results.md``, ``results.json`` and ``results.png``, written atomically; returns ``out``."""
    check_out(out, merged["roots"], force)
    with atomic_dir(out, force) as tmp:
        write_text_atomic(tmp / "results.md", markdown(merged, out))
        write_json_atomic(tmp / "results.json", merged)
        plot(merged, tmp / "results.png")
    return Path(out)
