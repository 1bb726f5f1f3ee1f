"""`defemb tune-alpha`: choose α (and λ) for replacement before fine-tuning by DEV accuracy (paper App. A.5).

For every α in the grid (× every blend λ) the replaced checkpoint is written with `defemb.replace.replace`
(V_task = the task's train file) under ``OUT/models/alpha-<α>-blend-<λ>``; then each checkpoint, and the
unreplaced model as the reference row ``original``, is fine-tuned and scored on the dev split only. The test
split is never read: the task is loaded with ``splits=("train", "dev")``, so its test file is not opened.

Outputs: ``OUT/runs/<label>/seed-<s>/result.json`` (classification records), ``table.md`` / ``table.json`` (dev
metrics, mean ± sample std over seeds) and ``choice.json`` (best α, λ by the dev primary metric; ties go to the
smaller α, then the smaller λ). Rerunning continues: finished checkpoints and runs are kept.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from defemb.errors import DefembError, quote
from defemb.evaluation.classification import PRIMARY, TrainingConfig, check_model, resolved_settings, run_models
from defemb.evaluation.classification import training_config as default_training
from defemb.evaluation.records import ModelSpec, RunRecord, open_out, parse_seeds, refuse_repeats
from defemb.evaluation.tasks import check_task_name, load_task
from defemb.outputs import write_json_atomic, write_text_atomic

#: The splits tune-alpha reads: choosing α must never see test.
SPLITS = ("train", "dev")
REFERENCE = "original"


def _numbers(text: str | list[float], name: str) -> list[float]:
    if isinstance(text, list):
        values = [float(x) for x in text]
    else:
        try:
            values = [float(x) for x in text.split(",") if x.strip()]
        except ValueError:
            raise DefembError(f"bad --{name} {quote(text)}: expected comma-separated numbers such as 1,5,10") from None
    if not values:
        raise DefembError(f"--{name}: give at least one value")
    refuse_repeats(values, name)
    return values


@dataclass
class TuneAlphaConfig:
    """Settings of `defemb tune-alpha` (saved as OUT/config.json)."""

    model: str = field(metadata={"help": "checkpoint to replace (directory, hub name or 'minilm')"})
    embeddings: str = field(metadata={"help": "definition-embeddings file written by `defemb embed`"})
    task: str = field(metadata={"help": "mrpc | rte | tsv:DIR"})
    grid: list[float] = field(default_factory=lambda: [1.0, 3.0, 5.0, 10.0, 20.0, 100.0],
                              metadata={"help": "α values: percent of |V| replaced"})
    blends: list[float] = field(default_factory=lambda: [1.0], metadata={"help": "λ values in [0, 1]"})
    numbers: bool = field(default=False, metadata={"help": "replace every numeric row too (`replace --numbers`)"})
    seeds: list[int] = field(default_factory=lambda: [0], metadata={"help": "fine-tuning seeds per setting"})
    data: str | None = None
    training: TrainingConfig | None = field(default=None, metadata={"help": "default: the small preset"})
    trust_remote_code: bool = False

    def __post_init__(self) -> None:
        check_task_name(self.task)
        self.grid = _numbers(self.grid, "grid")
        self.blends = _numbers(self.blends, "blend")
        bad = [a for a in self.grid if not 0 < a <= 100]
        if bad:
            raise DefembError(f"--grid: α must be in (0, 100] (got {', '.join(f'{a:g}' for a in bad)})")
        bad = [b for b in self.blends if not 0 <= b <= 1]
        if bad:
            raise DefembError(f"--blend: λ must be in [0, 1] (got {', '.join(f'{b:g}' for b in bad)})")
        self.seeds = parse_seeds(self.seeds)
        if isinstance(self.training, dict):
            self.training = TrainingConfig(**self.training)
        if self.training is None:
            self.training = default_training("small", self.task)

    def settings(self) -> list[tuple[float, float]]:
        return [(a, b) for a in sorted(self.grid) for b in sorted(self.blends)]

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self)))


def setting_label(alpha: float, blend: float) -> str:
    return f"alpha-{alpha:g}-blend-{blend:g}"


def _summary(records: list[RunRecord], metric: str) -> dict[str, float | int | None]:
    values = [r.metrics[metric] for r in records if r.status == "ok" and metric in r.metrics]
    if not values:
        return {"mean": None, "std": None, "n": 0}
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "n": len(values)}


def tabulate(records: list[RunRecord], config: TuneAlphaConfig, replaced: dict[str, int]) -> list[dict[str, Any]]:
    """One row per setting (reference first): α, λ, replaced tokens, failed runs, dev metrics mean/std."""
    by_label: dict[str, list[RunRecord]] = {}
    for r in records:
        by_label.setdefault(r.label, []).append(r)
    metrics = sorted({m for r in records for m in r.metrics})
    settings = [(REFERENCE, None, None)] + [(setting_label(a, b), a, b) for a, b in config.settings()]
    rows = []
    for label, alpha, blend in settings:
        runs = by_label.get(label, [])
        rows.append({"label": label, "alpha": alpha, "blend": blend, "replaced": replaced.get(label, 0),
                     "failed": sum(r.status == "failed" for r in runs),
                     "metrics": {m: _summary(runs, m) for m in metrics}})
    return rows


def choose(rows: list[dict[str, Any]], metric: str = PRIMARY) -> dict[str, Any]:
    """The best α, λ by mean dev ``metric``; ties -> smaller α, then smaller λ. The reference row is not a choice."""
    scored = [r for r in rows if r["alpha"] is not None and r["metrics"].get(metric, {}).get("mean") is not None]
    if not scored:
        raise DefembError(f"no α setting finished with a {metric} score; see the failed records under runs/")
    best = min(scored, key=lambda r: (-r["metrics"][metric]["mean"], r["alpha"], r["blend"]))
    reference = next(r for r in rows if r["label"] == REFERENCE)["metrics"].get(metric, {}).get("mean")
    return {"alpha": best["alpha"], "blend": best["blend"], "metric": metric, **best["metrics"][metric],
            "model": f"models/{best['label']}", "original": reference, "replaced": best["replaced"]}


def markdown(rows: list[dict[str, Any]], choice: dict[str, Any]) -> str:
    metrics = sorted({m for r in rows for m in r["metrics"]}, key=lambda m: (m != PRIMARY, m))
    lines = ["| α | λ | replaced | " + " | ".join(metrics) + " | seeds | failed |",
             "|---|---|---|" + "---|" * len(metrics) + "---|---|"]
    for r in rows:
        cells = []
        for m in metrics:
            s = r["metrics"][m]
            cells.append("-" if s["mean"] is None else f"{100 * s['mean']:.2f} ± {100 * s['std']:.2f}")
        chosen = r["alpha"] == choice["alpha"] and r["blend"] == choice["blend"]
        alpha = REFERENCE if r["alpha"] is None else f"{r['alpha']:g}" + (" (chosen)" if chosen else "")
        blend = "-" if r["blend"] is None else f"{r['blend']:g}"
        n = max((s["n"] for s in r["metrics"].values()), default=0)
        lines.append(f"| {alpha} | {blend} | {r['replaced']} | " + " | ".join(cells) + f" | {n} | {r['failed']} |")
    return "\n".join(lines) + "\n\nDev split only (percent, mean ± sample std over seeds); test was not read.\n"


def tune_alpha(config: TuneAlphaConfig, out: str | Path, force: bool = False) -> dict[str, Any]:
    """Replace, fine-tune and score on dev for every setting; write the tables and choice.json.

    Returns ``{"choice": ..., "rows": ...}`` (what choice.json and table.json hold)."""
    from defemb.replace import ReplaceConfig, replace

    task = load_task(config.task, config.data, splits=SPLITS)
    path = check_model(config.model, config.trust_remote_code)
    if not Path(config.embeddings).is_file():
        raise DefembError(f"definition-embeddings file '{config.embeddings}' does not exist")
    assert config.training is not None
    out = open_out(out, resolved_settings(config.to_dict(), task), force, free=("grid", "blends", "seeds"),
                   what="tune-alpha")

    specs, paths, replaced = [ModelSpec(REFERENCE, config.model)], [path], {}
    for alpha, blend in config.settings():  # every checkpoint first: a mismatched file fails before training
        label = setting_label(alpha, blend)
        folder = out / "models" / label
        if not (folder / "defemb.json").is_file():
            settings = ReplaceConfig(model=config.model, embeddings=config.embeddings, alpha=alpha, blend=blend,
                                     numbers="all" if config.numbers else "within",
                                     task_data=[str(task.files["train"])], trust_remote_code=config.trust_remote_code)
            replace(settings, out=folder, force=folder.exists())
        replaced[label] = json.loads((folder / "defemb.json").read_text(encoding="utf-8"))["replaced"]
        specs.append(ModelSpec(label, str(folder)))
        paths.append(str(folder))

    records = run_models(specs, paths, config.seeds, task, config.training, out / "runs", splits=("dev",),
                         trust_remote_code=config.trust_remote_code, evaluator="tune-alpha")
    rows = tabulate(records, config, replaced)
    choice = choose(rows)
    write_json_atomic(out / "table.json", rows)
    write_text_atomic(out / "table.md", markdown(rows, choice))
    write_json_atomic(out / "choice.json", choice)
    return {"choice": choice, "rows": rows}
