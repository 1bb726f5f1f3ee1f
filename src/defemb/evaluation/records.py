"""One evaluation run = one `result.json`; the layout and schema every evaluator and `defemb results` share.

Layout: ``OUT/<label>/seed-<seed>/result.json`` (``seed-none`` for deterministic evaluators), next to
``OUT/config.json`` (the evaluator's settings). A record::

    {"evaluator": "classification", "task": "mrpc", "model": "/path/or/hub-name", "label": "original",
     "seed": 0, "status": "ok" | "failed", "error": null | "one line",
     "primary": "dev/accuracy",
     "metrics": {"dev/accuracy": 0.81, "dev/f1": 0.86, ...},
     "per_example": {"dev/accuracy": [1, 0, ...]},   # scores whose mean IS the metric (paired bootstrap)
     "wall_s": 123.4, "config": {...}}

``per_example`` lists are aligned across models and seeds (same examples, same order), which is what the
paired bootstrap in `results.py` needs; metrics that are not a mean of per-example scores (F1, Spearman)
simply have no entry there.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from defemb.errors import DefembError, quote
from defemb.outputs import write_json_atomic

RESULT_FILE = "result.json"


@dataclass
class ModelSpec:
    """A model named on the command line: ``LABEL=PATH`` or just ``PATH`` (label = the directory's name)."""

    label: str
    path: str


def parse_model_specs(specs: list[str]) -> list[ModelSpec]:
    """``["original=minilm", "runs/deldir"]`` -> specs; labels must be unique (they name result folders)."""
    out: list[ModelSpec] = []
    for spec in specs:
        label, sep, path = spec.partition("=")
        if not sep:
            path = spec
            label = Path(spec.rstrip("/")).name or spec
        if not label or not path:
            raise DefembError(f"bad model {quote(spec)}: expected LABEL=PATH or PATH")
        if "/" in label or label.startswith("."):
            raise DefembError(f"bad model label {quote(label)} in {quote(spec)}: no '/' and no leading '.'")
        out.append(ModelSpec(label, path))
    labels = [m.label for m in out]
    duplicates = sorted({x for x in labels if labels.count(x) > 1})
    if duplicates:
        raise DefembError(f"model labels must be unique, repeated: {', '.join(duplicates)} (use LABEL=PATH)")
    return out


def parse_seeds(text: str | int | list[int]) -> list[int]:
    """``3`` -> [0, 1, 2]; ``"1,5,9"`` -> [1, 5, 9]; duplicates are an error."""
    if isinstance(text, int):
        values = list(range(text))
    elif isinstance(text, list):
        values = list(text)
    else:
        try:
            values = [int(x) for x in text.split(",")] if "," in text else list(range(int(text)))
        except ValueError:
            raise DefembError(f"bad --seeds {quote(text)}: a count (3) or a comma list (0,1,2)") from None
    if not values:
        raise DefembError("--seeds: at least one seed is needed")
    refuse_repeats(values, "seeds")
    return values


def refuse_repeats(values: list[int] | list[float], option: str) -> None:
    """A list option (--seeds, --grid, --blend) may not name a value twice."""
    repeated = sorted({v for v in values if values.count(v) > 1})
    if repeated:
        raise DefembError(f"--{option} lists a value more than once: {', '.join(f'{v:g}' for v in repeated)}")


@dataclass
class RunRecord:
    evaluator: str
    task: str
    model: str
    label: str
    seed: int | None
    primary: str
    metrics: dict[str, float] = field(default_factory=dict)
    per_example: dict[str, list[float]] = field(default_factory=dict)
    status: str = "ok"
    error: str | None = None
    wall_s: float = 0.0
    config: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status not in ("ok", "failed"):
            raise ValueError(f"status must be ok or failed, not {self.status!r}")
        if self.status == "ok" and self.primary not in self.metrics:
            raise ValueError(f"primary metric {self.primary!r} is not among the metrics {sorted(self.metrics)}")
        for name, values in self.metrics.items():
            if not isinstance(values, (int, float)) or math.isnan(float(values)):
                raise ValueError(f"metric {name!r} is not a number: {values!r}")


def error_line(exc: BaseException) -> str:
    """A failed run's one-line error: the exception's type and first line ("OSError: no file ...")."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def run_dir(out: str | Path, label: str, seed: int | None) -> Path:
    return Path(out) / label / f"seed-{'none' if seed is None else seed}"


def write_record(out: str | Path, record: RunRecord) -> Path:
    """Write ``OUT/<label>/seed-<seed>/result.json`` atomically; returns the file's path."""
    folder = run_dir(out, record.label, record.seed)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / RESULT_FILE
    write_json_atomic(path, asdict(record))
    return path


def read_record(path: str | Path) -> RunRecord:
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return RunRecord(**data)
    except (OSError, json.JSONDecodeError, TypeError, ValueError) as exc:
        raise DefembError(f"{path}: not a defemb result record ({exc})") from None


def read_records(root: str | Path) -> list[RunRecord]:
    """Every ``result.json`` under ``root`` (any depth), sorted by path."""
    root = Path(root)
    if not root.exists():
        raise DefembError(f"results directory '{root}' does not exist")
    paths = [root] if root.is_file() else sorted(root.rglob(RESULT_FILE))
    if not paths:
        raise DefembError(f"no {RESULT_FILE} found under '{root}'")
    return [read_record(p) for p in paths]


def finished(out: str | Path, label: str, seed: int | None) -> bool:
    """True when this (model, seed) already has an ``ok`` record: reruns skip it (resume)."""
    path = run_dir(out, label, seed) / RESULT_FILE
    if not path.exists():
        return False
    try:
        return read_record(path).status == "ok"
    except DefembError:
        return False


CONFIG_FILE = "config.json"


def open_out(out: str | Path, config: dict[str, Any], force: bool, free: tuple[str, ...], what: str) -> Path:
    """Create (or, with ``force``, recreate) ``out`` and save ``config``; an existing ``out`` is resumed only if
    its config.json matches ``config`` on every key but ``free`` (e.g. adding models or seeds is fine)."""
    out = Path(out)
    config = json.loads(json.dumps(config))  # tuples -> lists, as they read back
    if out.exists() and not out.is_dir():
        raise DefembError(f"--out '{out}' is a file, not a directory")
    if out.exists() and force:
        shutil.rmtree(out)
    elif out.exists() and any(out.iterdir()):
        saved = out / CONFIG_FILE
        try:
            old = json.loads(saved.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            raise DefembError(f"--out '{out}' exists but holds no readable {what} {CONFIG_FILE}; "
                              "choose another --out or pass --force to replace it") from None
        changed = [k for k in sorted(set(old) | set(config)) if k not in free and old.get(k) != config.get(k)]
        if changed:
            diff = "; ".join(f"{k}: {old.get(k)!r} -> {config.get(k)!r}" for k in changed)
            raise DefembError(f"--out '{out}' holds runs made with other settings ({diff}); rerun with the same "
                              "settings to resume, choose another --out, or pass --force to start afresh")
    try:
        out.mkdir(parents=True, exist_ok=True)
        write_json_atomic(out / CONFIG_FILE, config)
    except OSError as exc:
        raise DefembError(f"cannot write --out '{out}': {exc.strerror or exc}") from exc
    return out
