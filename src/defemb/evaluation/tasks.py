"""Sentence(-pair) classification tasks read from local TSV files: split -> examples, plus the label names.

Tasks:

* ``mrpc`` (default folder ``glue-mrpc``): ``train.tsv``, ``dev.tsv`` (GLUE layout, UTF-8 BOM, header
  ``Quality #1 ID #2 ID #1 String #2 String``); the test labels come from ``msr_paraphrase_test.txt`` (same
  layout, same order as GLUE's unlabelled ``test.tsv``). Labels ``0``, ``1``.
* ``rte`` (default folder ``glue-rte``): ``glue-format/train.tsv``, ``dev.tsv`` (``index sentence1 sentence2
  label``). GLUE's RTE test set has no labels, so there are no test metrics.
* ``tsv:DIR``: ``DIR/train.tsv``, ``dev.tsv`` and optionally ``test.tsv`` with header columns ``sentence1``,
  optionally ``sentence2``, and ``label`` (any strings). The label set is train's; a ``test.tsv`` without a
  ``label`` column is unlabelled (no test metrics).

Label ids follow the sorted label names (numbers numerically), so for two labels id 1 is the "positive" class
whose F1 is reported (MRPC: paraphrase; RTE: not_entailment). All files are read without CSV quoting (GLUE
sentences hold unbalanced quotes), so one line is one example and errors can name it.
"""

from __future__ import annotations

import csv
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from defemb.errors import DefembError, check_text_file, quote
from defemb.evaluation.data import dataset_dir

SPLITS = ("train", "dev", "test")
TASKS = ("mrpc", "rte", "tsv:DIR")


@dataclass
class Example:
    text_a: str
    text_b: str | None
    label: int


@dataclass
class Task:
    """A loaded task: ``splits`` holds only the labelled splits that were asked for."""

    name: str
    data_dir: Path
    labels: list[str]
    splits: dict[str, list[Example]]
    files: dict[str, Path]
    notes: list[str] = field(default_factory=list)

    @property
    def num_labels(self) -> int:
        return len(self.labels)


@dataclass
class _Layout:
    """Where a task's files are and which columns hold what."""

    files: dict[str, Path | None]  # split -> file (None: the split has no labels)
    text_a: str
    text_b: str | None
    label: str
    labels: list[str] | None  # None: train's label set
    notes: list[str] = field(default_factory=list)


def check_task_name(name: str) -> None:
    if name in ("mrpc", "rte"):
        return
    if name.startswith("tsv:") and len(name) > 4:
        return
    raise DefembError(f"unknown task {quote(name)}; known tasks: {', '.join(TASKS)} (a folder of train/dev[/test].tsv)")


def _layout(name: str, data: str | os.PathLike | None, test: bool) -> tuple[Path, _Layout]:
    """``test`` False: the test file is not even looked at (choosing settings must never read it)."""
    check_task_name(name)
    if name == "mrpc":
        root = dataset_dir("glue-mrpc", data)
        files = {"train": root / "train.tsv", "dev": root / "dev.tsv", "test": root / "msr_paraphrase_test.txt"}
        return root, _Layout(files, "#1 String", "#2 String", "Quality", ["0", "1"])
    if name == "rte":
        root = dataset_dir("glue-rte", data)
        files = {"train": root / "glue-format" / "train.tsv", "dev": root / "glue-format" / "dev.tsv", "test": None}
        notes = ["test: GLUE's RTE test.tsv has no labels, so there are no test metrics"] if test else []
        return root, _Layout(files, "sentence1", "sentence2", "label", ["entailment", "not_entailment"], notes)
    if data is not None:
        raise DefembError(f"--data is not used with task {quote(name)}: the folder is part of the task name")
    root = Path(name[4:])
    if not root.is_dir():
        raise DefembError(f"task {quote(name)}: '{root}' is not a directory (expected train.tsv, dev.tsv[, test.tsv])")
    files = {"train": root / "train.tsv", "dev": root / "dev.tsv", "test": root / "test.tsv"}
    header = _header(files["train"]) if files["train"].is_file() else []
    layout = _Layout(files, "sentence1", "sentence2" if "sentence2" in header else None, "label", None)
    if not test:
        layout.files["test"] = None
    elif not files["test"].is_file():
        layout.files["test"] = None
        layout.notes.append(f"test: no {files['test']}, so there are no test metrics")
    elif "label" not in _header(files["test"]):
        layout.files["test"] = None
        layout.notes.append(f"test: {files['test']} has no 'label' column, so there are no test metrics")
    return root, layout


def _open(path: Path):
    if not path.is_file():
        raise DefembError(f"task file '{path}' does not exist")
    check_text_file(path, "task file")
    csv.field_size_limit(sys.maxsize)  # a long line must reach the header check, not stop the csv module
    # utf-8-sig drops the BOM of the GLUE MRPC files, so the first column is named 'Quality', not '\ufeffQuality'
    return open(path, encoding="utf-8-sig", newline="")


def _header(path: Path) -> list[str]:
    with _open(path) as handle:
        return next(csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE), [])


def read_tsv(path: Path, columns: list[str]) -> list[tuple[int, list[str]]]:
    """(line number, values of ``columns``) for every non-empty line after the header."""
    with _open(path) as handle:
        reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader, None)
        if header is None:
            raise DefembError(f"{path}: the file is empty (expected a header line)")
        missing = [c for c in columns if c not in header]
        if missing:
            found = quote("\t".join(header))
            raise DefembError(f"{path}: no column {', '.join(map(repr, missing))} (header line {found}); "
                              f"the header needs {', '.join(map(repr, columns))}")
        index = [header.index(c) for c in columns]
        rows = []
        for row in reader:
            if not row:
                continue
            if len(row) != len(header):
                raise DefembError(f"{path}:{reader.line_num}: {len(row)} tab-separated fields, the header has "
                                  f"{len(header)}; fix the line (a tab inside a sentence?)")
            rows.append((reader.line_num, [row[i] for i in index]))
    if not rows:
        raise DefembError(f"{path}: no examples after the header")
    return rows


def _label_key(label: str) -> tuple[int, float | str]:
    try:
        return (0, float(label))
    except ValueError:
        return (1, label)


def _examples(path: Path, layout: _Layout, labels: list[str]) -> list[Example]:
    columns = [layout.text_a, layout.label] + ([layout.text_b] if layout.text_b else [])
    ids = {name: i for i, name in enumerate(labels)}
    out = []
    for line, values in read_tsv(path, columns):
        text_a, label = values[0], values[1]
        if label not in ids:
            raise DefembError(f"{path}:{line}: label {quote(label)} is not one of {', '.join(map(repr, labels))}")
        out.append(Example(text_a, values[2] if layout.text_b else None, ids[label]))
    return out


def load_task(name: str, data: str | os.PathLike | None = None, splits: tuple[str, ...] = SPLITS) -> Task:
    """Read the asked-for ``splits`` of task ``name``; only their files are opened (train's always, for labels).

    A split without labels (RTE's test) is left out of ``Task.splits`` and explained in ``Task.notes``.
    """
    unknown = [s for s in splits if s not in SPLITS]
    if unknown:
        raise DefembError(f"unknown split {', '.join(unknown)}; splits are {', '.join(SPLITS)}")
    root, layout = _layout(name, data, "test" in splits)
    labels = layout.labels
    if labels is None:
        found = {values[1] for _, values in read_tsv(layout.files["train"], [layout.text_a, layout.label])}
        labels = sorted(found, key=_label_key)
        if len(labels) < 2:
            raise DefembError(f"{layout.files['train']}: only one label ({quote(labels[0])}); classification needs two")
    loaded: dict[str, list[Example]] = {}
    files: dict[str, Path] = {"train": layout.files["train"]}  # type: ignore[dict-item]
    for split in splits:
        path = layout.files[split]
        if path is None:
            continue
        loaded[split] = _examples(path, layout, labels)
        files[split] = path
    return Task(name, root, labels, loaded, files, layout.notes)
