"""Summarization data (METHOD §10): task readers, ROUGE per document, and the rare-token test subset.

Tasks: ``cnndm`` (the shared CNN/DailyMail slices: fine-tune on the 500 validation articles, test on the
500 test articles), ``xsum`` (the shared 1,000 XSum test documents; no training split, see `load_task`)
and ``jsonl:PATH`` (a folder with train.jsonl / valid.jsonl / test.jsonl, or one test file).
"""

from __future__ import annotations

import csv
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from defemb.errors import DefembError, check_text_file, quote
from defemb.evaluation.data import dataset_dir
from defemb.method.model import pad_batch

CNNDM_FILES = {"train": "cnn_dailymail_validation_first500.csv", "test": "cnn_dailymail_test_first500.csv"}
XSUM_FILE = "xsum_test_sample1000.jsonl"
ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")
#: Fixed seed of the ``--train-from-test`` split, so every model and seed sees the same partition.
SPLIT_SEED = 0


@dataclass(frozen=True)
class Example:
    document: str
    summary: str
    id: str


@dataclass(frozen=True)
class TaskDefaults:
    """Decoding per dataset: beams and length penalty from the paper's Table 15; length limits from the
    fairseq BART recipes (CNN/DM min 55 / max 140 new tokens, XSum 10 / 60)."""

    beams: int
    length_penalty: float
    min_length: int
    max_target_length: int
    max_source_length: int = 1024


TASK_DEFAULTS = {
    "cnndm": TaskDefaults(beams=4, length_penalty=2.0, min_length=55, max_target_length=140),
    "xsum": TaskDefaults(beams=6, length_penalty=1.0, min_length=10, max_target_length=60),
    "jsonl": TaskDefaults(beams=4, length_penalty=1.0, min_length=0, max_target_length=128),
}


@dataclass
class Splits:
    train: list[Example]
    valid: list[Example]
    test: list[Example]
    sources: dict[str, str] = field(default_factory=dict)  # split -> where it came from


def task_kind(task: str) -> str:
    """``cnndm`` | ``xsum`` | ``jsonl`` (for ``jsonl:PATH``); anything else is a clear error."""
    name, sep, arg = task.partition(":")
    if name in ("cnndm", "xsum") and not sep:
        return name
    if name == "jsonl" and arg:
        return name
    raise DefembError(f"unknown --task {quote(task)}; choose cnndm, xsum or jsonl:PATH (a folder or a .jsonl file)")


def read_examples(path: str | Path) -> list[Example]:
    """A ``.jsonl`` file (fields document, summary, optional id) or a ``.csv`` file (columns article/highlights
    or document/summary, optional id). Errors name the file and line."""
    path = Path(path)
    if not path.is_file():
        raise DefembError(f"data file '{path}' does not exist")
    check_text_file(path, "data file")
    if path.suffix == ".csv":
        return _read_csv(path)
    if path.suffix in (".jsonl", ".json"):
        return _read_jsonl(path)
    raise DefembError(f"{path}: unknown data format '{path.suffix}'; use .jsonl (document, summary) or .csv")


def _example(path: Path, line: int, document: object, summary: object, id_: object) -> Example:
    for name, value in (("document", document), ("summary", summary)):
        if not isinstance(value, str):
            raise DefembError(f"{path}:{line}: field '{name}' must be a string, got {type(value).__name__}")
        if not value.strip():
            raise DefembError(f"{path}:{line}: empty {name}; remove the line or fill it in")
    return Example(document.strip(), summary.strip(), str(id_) if id_ is not None else f"{path.stem}:{line}")


def _read_jsonl(path: Path) -> list[Example]:
    out = []
    with open(path, encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DefembError(f"{path}:{line_no}: not valid JSON ({exc.msg}); one object per line") from None
            if not isinstance(row, dict):
                raise DefembError(f"{path}:{line_no}: expected a JSON object with document and summary")
            missing = [k for k in ("document", "summary") if k not in row]
            if missing:
                have = quote(", ".join(row))
                raise DefembError(f"{path}:{line_no}: missing field {', '.join(missing)} (have {have})")
            out.append(_example(path, line_no, row["document"], row["summary"], row.get("id")))
    if not out:
        raise DefembError(f"{path}: no examples")
    return out


def _read_csv(path: Path) -> list[Example]:
    csv.field_size_limit(sys.maxsize)  # news articles exceed the 128 KiB default field limit
    out = []
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, None) or []
        doc_col = next((c for c in ("article", "document") if c in header), None)
        sum_col = next((c for c in ("highlights", "summary") if c in header), None)
        if doc_col is None or sum_col is None:
            raise DefembError(f"{path}:1: header {quote(','.join(header))} needs article/document and "
                              "highlights/summary columns")
        columns = {name: header.index(name) for name in (doc_col, sum_col)}
        id_col = header.index("id") if "id" in header else None
        start = reader.line_num + 1
        for row in reader:
            if len(row) != len(header):
                raise DefembError(f"{path}:{start}: {len(row)} fields, the header has {len(header)}")
            out.append(_example(path, start, row[columns[doc_col]], row[columns[sum_col]],
                                row[id_col] if id_col is not None else None))
            start = reader.line_num + 1  # a quoted field may span lines: the next record starts here
    if not out:
        raise DefembError(f"{path}: no examples")
    return out


def load_task(
    task: str,
    data: str | None = None,
    train_file: str | None = None,
    valid_file: str | None = None,
    test_file: str | None = None,
    train_from_test: int = 0,
) -> Splits:
    """Read the splits of ``task``; ``*_file`` replace a split, ``train_from_test=N`` trains on N test examples
    (a fixed permutation) and tests on the rest — the only way to fine-tune on the shared XSum sample."""
    kind = task_kind(task)
    files: dict[str, Path | None] = {"train": None, "valid": None, "test": None}
    if kind == "cnndm":
        folder = dataset_dir("cnn_dailymail", data)
        files.update({split: folder / name for split, name in CNNDM_FILES.items()})
    elif kind == "xsum":
        files["test"] = dataset_dir("xsum", data) / XSUM_FILE
    else:
        root = Path(task.partition(":")[2])
        if root.is_dir():
            for split in files:
                if (root / f"{split}.jsonl").is_file():
                    files[split] = root / f"{split}.jsonl"
        elif root.is_file():
            files["test"] = root
        else:
            raise DefembError(f"--task {task}: '{root}' is neither a folder nor a file")
    for split, given in (("train", train_file), ("valid", valid_file), ("test", test_file)):
        if given:
            files[split] = Path(given)
    if train_from_test and (train_file or (kind != "xsum" and files["train"] is not None)):
        raise DefembError("--train-from-test takes its training set from the test file; do not also give a "
                          "training split (drop --train-file, or use a task without one)")
    if files["test"] is None:
        raise DefembError(f"--task {task}: no test set (expected test.jsonl there, or pass --test-file)")
    splits = Splits([], [], [])
    for split, path in files.items():
        if path is not None:
            setattr(splits, split, read_examples(path))
            splits.sources[split] = str(path)
    if train_from_test:
        if train_from_test >= len(splits.test):
            raise DefembError(f"--train-from-test {train_from_test}: the test file has only {len(splits.test)} "
                              "examples; leave some to test on")
        picked = np.sort(np.random.default_rng(SPLIT_SEED).permutation(len(splits.test))[:train_from_test])
        chosen = set(picked.tolist())
        splits.train = [splits.test[i] for i in picked]
        splits.test = [x for i, x in enumerate(splits.test) if i not in chosen]
        splits.sources["train"] = f"{splits.sources['test']} ({train_from_test} examples, split seed {SPLIT_SEED})"
    return splits


def missing_train_message(task: str) -> str:
    if task_kind(task) == "xsum":
        return ("xsum: the shared data holds only 1,000 test documents and no training split; pass --train-file "
                "FILE (jsonl: document, summary), or --train-from-test N to fine-tune on N of them and test on "
                "the rest, or --epochs 0 to score an already fine-tuned model")
    return f"--task {task}: no training set; pass --train-file FILE, --train-from-test N, or --epochs 0"


# ---------------------------------------------------------------------------------------------- ROUGE

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def sentences(text: str) -> str:
    """One sentence per line, for ROUGE-Lsum: newlines are kept (CNN/DM highlights), prose is split after
    . ! ? followed by white space (no NLTK dependency)."""
    lines = [s.strip() for line in text.splitlines() for s in _SENTENCE_END.split(line)]
    return "\n".join(s for s in lines if s)


def rouge_per_example(predictions: list[str], references: list[str]) -> dict[str, list[float]]:
    """ROUGE-1/2/L/Lsum F1 per document in [0, 1] (rouge_score, Porter stemmer); the corpus score is the mean."""
    from rouge_score import rouge_scorer

    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)
    out: dict[str, list[float]] = {name: [] for name in ROUGE_TYPES}
    for prediction, reference in zip(predictions, references, strict=True):
        scores = scorer.score(sentences(reference), sentences(prediction))
        for name in ROUGE_TYPES:
            out[name].append(float(scores[name].fmeasure))
    return out


# ---------------------------------------------------------------------------------------- rare subset


def rare_fractions(summaries: list[str], encode, rare_ids: set[int]) -> np.ndarray:
    """Share of each summary's tokens (no specials) that fall in the rare band. # (n,)"""
    out = np.zeros(len(summaries))
    for k, ids in enumerate(encode(summaries)):
        out[k] = sum(1 for i in ids if i in rare_ids) / len(ids) if ids else 0.0
    return out


def rare_subset(
    summaries: list[str], encode, rare_ids: set[int], threshold: float, seen_ids: set[int] | None = None
) -> list[int]:
    """Indices of the summaries with at least ``threshold`` rare tokens (paper App. B.2: 5 %); with
    ``seen_ids``, also every summary token must occur in the training data (the paper's first filter)."""
    fractions = rare_fractions(summaries, encode, rare_ids)
    keep = [k for k, share in enumerate(fractions) if share >= threshold - 1e-12]  # 1/20 counts as 5 %
    if seen_ids is not None:
        encoded = encode([summaries[k] for k in keep])
        keep = [k for k, ids in zip(keep, encoded, strict=True) if all(i in seen_ids for i in ids)]
    return keep


# ------------------------------------------------------------------------------------------- tensors


@dataclass
class Encoded:
    """Token ids of one split: sources (with the task prefix) and targets (the labels)."""

    sources: list[list[int]]
    targets: list[list[int]]

    @property
    def lengths(self) -> np.ndarray:
        return np.array([len(s) + len(t) for s, t in zip(self.sources, self.targets, strict=True)])


def encode(examples: list[Example], tokenizer, prefix: str, max_source: int, max_target: int,
           decoder_start: int | None, eos: int | None) -> Encoded:
    """Truncated token ids. A target's leading decoder-start token (BERT's [CLS], Gemma's <bos>) is dropped,
    because the decoder already reads it as its first input; a target always ends with ``eos`` (Gemma's
    tokenizer adds none), or the model would never learn to stop."""
    sources = tokenizer([prefix + x.document for x in examples], truncation=True, max_length=max_source)["input_ids"]
    targets = tokenizer(text_target=[x.summary for x in examples], truncation=True,
                        max_length=max_target)["input_ids"]
    targets = [t[1:] if t and t[0] == decoder_start else t for t in targets]
    if eos is not None:
        targets = [t if t and t[-1] == eos else t[: max_target - 1] + [eos] for t in targets]
    return Encoded([list(s) for s in sources], [list(t) for t in targets])


def collate(data: Encoded, indices, pad_id: int, device: str | torch.device) -> dict[str, torch.Tensor]:
    """One training batch; labels padded with -100 so padding never counts in the loss."""
    input_ids, mask = pad_batch([data.sources[i] for i in indices], pad_id)
    labels, _ = pad_batch([data.targets[i] for i in indices], -100)
    return {"input_ids": input_ids.to(device), "attention_mask": mask.to(device), "labels": labels.to(device)}
