"""`defemb evaluate classification`: fine-tune each checkpoint on a GLUE-style task and score dev (and test).

One run = one (model, seed): load ``AutoModelForSequenceClassification`` (a new head on the checkpoint), train
with a plain torch loop (AdamW, linear warmup then decay, length-grouped dynamic-padding batches, inputs
tokenised once; on the GPU when there is one), then score each labelled split once at the end. Records follow
`records.py`; the primary metric is ``dev/accuracy``; ``dev/f1`` / ``test/f1`` (F1 of label id 1) exist for
two-label tasks. On CPU, ``OMP_NUM_THREADS=1`` can be much faster when other processes share the cores.

Hyper-parameter presets (`PRESETS`): ``small`` (default; small encoders such as MiniLM on CPU), and the
paper's ``roberta`` (Table 13) and ``bart`` (Table 15) settings for MRPC and RTE, which give update counts
(``steps``) rather than epochs; warmup_ratio is the table's warm-up updates / updates.
"""

from __future__ import annotations

import json
import math
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from defemb.errors import DefembError, quote
from defemb.evaluation.records import (
    ModelSpec,
    RunRecord,
    error_line,
    finished,
    open_out,
    parse_model_specs,
    parse_seeds,
    read_record,
    run_dir,
    write_record,
)
from defemb.evaluation.tasks import Example, Task, check_task_name, load_task
from defemb.outputs import atomic_dir
from defemb.seeding import seed_everything
from defemb.tokens import special_frame

PRIMARY = "dev/accuracy"
MEGA_BATCH = 50  # batches per length-sorted group: little padding, yet the batch order stays random
EVAL_BATCH = 128

_SMALL = {"epochs": 3.0, "steps": None, "lr": 5e-5, "batch_size": 32, "max_length": 128, "warmup_ratio": 0.06,
          "weight_decay": 0.01, "adam_betas": (0.9, 0.999)}
# Paper App. A.3: updates, warm-up updates, sentences per batch, learning rate; Adam betas (0.9, 0.98).
# max_length 512 is fairseq's max_positions for these models (GLUE pairs are far shorter anyway).
_PAPER = {
    ("roberta", "mrpc"): {"steps": 2296, "warmup_ratio": 137 / 2296, "batch_size": 16, "lr": 1e-5, "weight_decay": 0.1},
    ("roberta", "rte"): {"steps": 2036, "warmup_ratio": 122 / 2036, "batch_size": 16, "lr": 2e-5, "weight_decay": 0.1},
    ("bart", "mrpc"): {"steps": 700, "warmup_ratio": 42 / 700, "batch_size": 64, "lr": 2e-5, "weight_decay": 0.01},
    ("bart", "rte"): {"steps": 1020, "warmup_ratio": 61 / 1020, "batch_size": 32, "lr": 1e-5, "weight_decay": 0.01},
}
PRESETS = ("small", "roberta", "bart")


@dataclass
class TrainingConfig:
    """Fine-tuning hyper-parameters (resolved: every value concrete); build one with `training_config`."""

    preset: str = field(default="small", metadata={"help": "small | roberta | bart (the values below came from it)"})
    epochs: float = field(default=3.0, metadata={"help": "passes over train (ignored when steps is set)"})
    steps: int | None = field(default=None, metadata={"help": "total updates; overrides epochs"})
    lr: float = field(default=5e-5, metadata={"help": "peak learning rate (AdamW)"})
    batch_size: int = field(default=32, metadata={"help": "examples per update"})
    max_length: int = field(default=128, metadata={"help": "tokens per example (pair) after truncation"})
    warmup_ratio: float = field(default=0.06, metadata={"help": "share of updates with linear warmup"})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW decay (not on biases and norms)"})
    adam_betas: tuple[float, float] = (0.9, 0.999)
    max_grad_norm: float = field(default=1.0, metadata={"help": "gradient clipping; 0 turns it off"})
    bf16: bool = field(default=False, metadata={"help": "bfloat16 autocast (AMX CPUs, GPUs); weights stay float32"})

    def __post_init__(self) -> None:
        self.adam_betas = tuple(self.adam_betas)  # type: ignore[assignment]  # JSON gives a list
        if self.preset not in PRESETS:
            raise DefembError(f"unknown --preset {quote(self.preset)}; choose one of {', '.join(PRESETS)}")
        if self.steps is None and not self.epochs > 0:
            raise DefembError(f"--epochs must be positive (got {self.epochs})")
        for name in ("steps", "batch_size", "max_length"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise DefembError(f"--{name.replace('_', '-')} must be a positive whole number (got {value!r})")
        if not self.lr > 0:
            raise DefembError(f"--lr must be positive (got {self.lr})")
        if not 0 <= self.warmup_ratio < 1:
            raise DefembError(f"--warmup-ratio must be in [0, 1) (got {self.warmup_ratio})")
        if not self.weight_decay >= 0 or not self.max_grad_norm >= 0:
            raise DefembError("--weight-decay and max_grad_norm must be zero or more")
        if len(self.adam_betas) != 2 or not all(0 <= b < 1 for b in self.adam_betas):
            raise DefembError(f"adam_betas must be two numbers in [0, 1) (got {self.adam_betas})")


def training_config(preset: str, task: str, **overrides: Any) -> TrainingConfig:
    """The preset's values for ``task`` with every non-None override applied.

    Giving ``epochs`` without ``steps`` drops a paper preset's update count, so the epochs count.
    """
    check_task_name(task)
    if preset not in PRESETS:
        raise DefembError(f"unknown --preset {quote(preset)}; choose one of {', '.join(PRESETS)}")
    values: dict[str, Any] = dict(_SMALL, preset=preset)
    if preset != "small":
        if (preset, task) not in _PAPER:
            raise DefembError(f"the paper gives --preset {preset} settings for mrpc and rte only, not {quote(task)}; "
                              "use --preset small, or set --epochs/--lr/--batch-size yourself on top of it")
        values.update(_PAPER[(preset, task)], adam_betas=(0.9, 0.98), max_length=512)
    given = {k: v for k, v in overrides.items() if v is not None}
    if "epochs" in given and "steps" not in given:
        values["steps"] = None
    unknown = sorted(set(given) - {f.name for f in fields(TrainingConfig)})
    if unknown:
        raise TypeError(f"unknown training options: {', '.join(unknown)}")
    return TrainingConfig(**{**values, **given})


@dataclass
class ClassificationConfig:
    """Settings of `defemb evaluate classification` (saved as OUT/config.json)."""

    task: str = field(metadata={"help": "mrpc | rte | tsv:DIR"})
    models: list[str] = field(metadata={"help": "checkpoints as LABEL=PATH or PATH (alias 'minilm' allowed)"})
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2], metadata={"help": "one run per model per seed"})
    data: str | None = field(default=None, metadata={"help": "dataset folder (default: found by name)"})
    training: TrainingConfig | None = field(default=None, metadata={"help": "default: the small preset"})
    save_models: bool = field(default=False, metadata={"help": "keep each fine-tuned model (safetensors)"})
    trust_remote_code: bool = False

    def __post_init__(self) -> None:
        check_task_name(self.task)
        parse_model_specs(self.models)
        self.seeds = parse_seeds(self.seeds)
        if isinstance(self.training, dict):
            self.training = TrainingConfig(**self.training)
        if self.training is None:
            self.training = training_config("small", self.task)

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClassificationConfig:
        return cls(**data)


# ---------------------------------------------------------------------------------------------- models


def check_model(name: str, trust_remote_code: bool = False) -> str:
    """Resolve ``name`` and check, without loading weights, that it can be fine-tuned for classification."""
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING

    from defemb.models import load_tokenizer, resolve_model_name

    path = resolve_model_name(name)
    try:
        config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    except Exception as exc:
        raise DefembError(f"cannot load a model config from '{name}': {error_line(exc)}") from exc
    remote = trust_remote_code and "AutoModelForSequenceClassification" in (getattr(config, "auto_map", None) or {})
    if type(config) not in MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING and not remote:
        raise DefembError(f"model '{name}' (model_type '{config.model_type}') has no sequence-classification class "
                          "in transformers; choose an encoder, encoder-decoder or decoder with one")
    tokenizer = _pad_tokenizer(load_tokenizer(path, trust_remote_code), name)
    # load_tokenizer refuses a folder without tokenizer files; this catches a folder holding another model's
    vocab_size = getattr(config, "vocab_size", None)
    if isinstance(vocab_size, int) and len(tokenizer) < vocab_size / 2:
        raise DefembError(f"the tokenizer of '{name}' has {len(tokenizer)} tokens but the model's vocabulary has "
                          f"{vocab_size}: is it another model's tokenizer?")
    return path


def _pad_tokenizer(tokenizer, name: str):
    """GPT-2 / Llama-like tokenizers have no pad token: pad with EOS (the head reads the last non-pad token)."""
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise DefembError(f"the tokenizer of '{name}' has neither a pad nor an EOS token to pad batches with")
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_for_classification(path: str, labels: list[str], trust_remote_code: bool = False):
    """(model, tokenizer): the checkpoint with a freshly initialised classification head, float32."""
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    from defemb.models import load_tokenizer

    tokenizer = _pad_tokenizer(load_tokenizer(path, trust_remote_code), path)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the "head newly initialised" load report is expected here
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            path, num_labels=len(labels), id2label=dict(enumerate(labels)),
            label2id={label: i for i, label in enumerate(labels)}, trust_remote_code=trust_remote_code,
            dtype=torch.float32,
        )  # fmt: skip
    finally:
        hf_logging.set_verbosity(verbosity)
    model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


# ---------------------------------------------------------------------------------------------- data


@dataclass
class Encoded:
    """A split tokenised once: one id list (and aligned extra inputs) per example, no padding."""

    features: dict[str, list[list[int]]]
    labels: np.ndarray  # (n,)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def lengths(self) -> np.ndarray:
        return np.array([len(ids) for ids in self.features["input_ids"]])


def encode(tokenizer, examples: list[Example], max_length: int) -> Encoded:
    """Tokenise a split; pairs use the tokenizer's pair template, or `join_pairs` where it has no separator."""
    a = [e.text_a for e in examples]
    b = None if examples[0].text_b is None else [e.text_b or "" for e in examples]
    labels = np.array([e.label for e in examples])
    separator = None if b is None else pair_separator(tokenizer)
    if separator is not None:
        ids = join_pairs(tokenizer, a, b, separator, max_length)
        return Encoded({"input_ids": ids, "attention_mask": [[1] * len(row) for row in ids]}, labels)
    batch = tokenizer(a, b, truncation=True, max_length=max_length, padding=False)
    keep = ("input_ids", "attention_mask", "token_type_ids")
    return Encoded({k: batch[k] for k in keep if k in batch}, labels)


def pair_separator(tokenizer) -> int | None:
    """None where the pair template separates the texts (BERT [SEP], RoBERTa/BART </s></s>, T5 </s>);
    otherwise the id to join them with, SEP else EOS: GPT-2's template glues "a" and "b" into one text, and
    Llama's / T5Gemma's put only a BOS between them."""
    ids = tokenizer("a", "b")["input_ids"]
    marks = {tokenizer.sep_token_id, tokenizer.eos_token_id} - {None}
    if marks & set(ids[1:-1]):  # the ends may be the template's own BOS / EOS
        return None
    separator = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
    if separator is None:
        raise DefembError("the tokenizer's pair template has no separator and it has no SEP or EOS token to add")
    return separator


def join_pairs(tokenizer, a: list[str], b: list[str], separator: int, max_length: int) -> list[list[int]]:
    """The single-text template around ``a <separator> b``, the longer text cut first to fit ``max_length``."""
    prefix, suffix = special_frame(tokenizer)  # e.g. Llama's <s>
    budget = max(max_length - len(prefix) - len(suffix) - 1, 0)
    ids_a = tokenizer(a, add_special_tokens=False)["input_ids"]
    ids_b = tokenizer(b, add_special_tokens=False)["input_ids"]
    out = []
    for x, y in zip(ids_a, ids_b, strict=True):
        keep_x, keep_y = longest_first(len(x), len(y), budget)
        out.append(prefix + x[:keep_x] + [separator] + y[:keep_y] + suffix)
    return out


def longest_first(len_a: int, len_b: int, budget: int) -> tuple[int, int]:
    """Lengths kept by transformers' ``longest_first`` truncation: one token at a time off the longer (b on ties)."""
    excess = len_a + len_b - budget
    if excess <= 0:
        return len_a, len_b
    gap = min(abs(len_a - len_b), excess)  # first the longer comes down to the shorter's length
    if len_a > len_b:
        len_a -= gap
    else:
        len_b -= gap
    excess -= gap
    return len_a - excess // 2, len_b - (excess + 1) // 2


def collate(data: Encoded, index: list[int] | np.ndarray, pad_id: int, device: torch.device | str = "cpu"
            ) -> dict[str, torch.Tensor]:
    """Pad the chosen examples to the longest of them (dynamic padding). # each (B, T)"""
    width = max(len(data.features["input_ids"][i]) for i in index)
    out = {}
    for key, rows in data.features.items():
        tensor = torch.full((len(index), width), pad_id if key == "input_ids" else 0, dtype=torch.long)
        for row, i in enumerate(index):
            tensor[row, : len(rows[i])] = torch.tensor(rows[i])
        out[key] = tensor.to(device)
    return out


def length_grouped_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffle, sort by length inside groups of `MEGA_BATCH` batches, cut into batches, shuffle the batches."""
    order = rng.permutation(len(lengths))
    batches = []
    group = MEGA_BATCH * batch_size
    for start in range(0, len(order), group):
        chunk = order[start : start + group]
        chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


# ---------------------------------------------------------------------------------------------- train / score


def train(model, data: Encoded, config: TrainingConfig, rng: np.random.Generator, pad_id: int) -> dict[str, Any]:
    """Fine-tune in place; returns the loop's facts (updates, seconds, examples/s, last loss)."""
    per_epoch = math.ceil(len(data) / config.batch_size)
    total = config.steps or max(1, math.ceil(config.epochs * per_epoch))
    warmup = round(config.warmup_ratio * total)
    trained = [p for p in model.parameters() if p.requires_grad]
    groups = [  # biases and norm weights (1-D) are not decayed
        {"params": [p for p in trained if p.ndim >= 2], "weight_decay": config.weight_decay},
        {"params": [p for p in trained if p.ndim < 2], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=config.lr, betas=config.adam_betas)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, (total - step) / max(1, total - warmup))

    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    device = model.device
    labels = torch.as_tensor(data.labels, device=device)
    torch.set_flush_denormal(True)  # tiny gradients/moments as denormals slow CPU kernels 100-fold
    model.train()
    step, seen, losses = 0, 0, []
    start = time.perf_counter()
    with tqdm(total=total, desc="fine-tune", unit=" updates", disable=None, leave=False) as progress:
        while step < total:
            for index in length_grouped_batches(data.lengths, config.batch_size, rng):
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.bf16):
                    loss = model(**collate(data, index, pad_id, device), labels=labels[index]).loss
                loss.backward()
                if config.max_grad_norm:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
                optimizer.step()
                schedule.step()
                optimizer.zero_grad(set_to_none=True)
                losses.append(loss.item())
                step, seen = step + 1, seen + len(index)
                progress.update(1)
                if step >= total:
                    break
    seconds = time.perf_counter() - start
    tail = losses[-max(1, per_epoch // 10) :]
    return {"updates": total, "warmup_updates": warmup, "examples": seen, "seconds": round(seconds, 3),
            "examples_per_s": round(seen / max(seconds, 1e-9), 2), "final_loss": float(np.mean(tail))}


@torch.inference_mode()
def predict(model, data: Encoded, pad_id: int) -> np.ndarray:
    """Predicted label ids in dataset order; examples are batched by length for speed. # (n,)"""
    model.eval()
    order = np.argsort(-data.lengths, kind="stable")
    predictions = np.empty(len(data), dtype=np.int64)
    for start in tqdm(range(0, len(order), EVAL_BATCH), desc="score", unit=" batches", disable=None, leave=False):
        index = order[start : start + EVAL_BATCH]
        predictions[index] = model(**collate(data, index, pad_id, model.device)).logits.argmax(-1).cpu().numpy()
    return predictions


def score(split: str, predictions: np.ndarray, gold: np.ndarray, num_labels: int) -> tuple[dict, dict]:
    """(metrics, per_example): accuracy always; for two labels F1 of label id 1."""
    correct = (predictions == gold).astype(np.int64)
    metrics = {f"{split}/accuracy": float(correct.mean())}
    if num_labels == 2:
        tp = int(((predictions == 1) & (gold == 1)).sum())
        wrong = int((predictions != gold).sum())
        metrics[f"{split}/f1"] = 2 * tp / (2 * tp + wrong) if tp or wrong else 0.0
    return metrics, {f"{split}/accuracy": correct.tolist()}


def run_one(spec: ModelSpec, path: str, seed: int, task: Task, config: TrainingConfig, splits: tuple[str, ...],
            save_to: Path | None = None, trust_remote_code: bool = False,
            evaluator: str = "classification") -> RunRecord:
    """Fine-tune ``path`` with ``seed`` on task's train split and score ``splits`` (those that have labels)."""
    start = time.perf_counter()
    rng = seed_everything(seed)
    model, tokenizer = load_for_classification(path, task.labels, trust_remote_code)
    model.to("cuda" if torch.cuda.is_available() else "cpu")
    limit = tokenizer.model_max_length if tokenizer.model_max_length < 1_000_000 else config.max_length
    max_length = min(config.max_length, limit)
    scored = [s for s in splits if s in task.splits]
    encoded = {s: encode(tokenizer, task.splits[s], max_length) for s in ["train", *scored]}  # tokenised once
    stats = train(model, encoded["train"], config, rng, tokenizer.pad_token_id)
    metrics, per_example = {}, {}
    eval_start = time.perf_counter()
    for split in scored:
        m, p = score(split, predict(model, encoded[split], tokenizer.pad_token_id), encoded[split].labels,
                     task.num_labels)
        metrics.update(m)
        per_example.update(p)
    stats["eval_seconds"] = round(time.perf_counter() - eval_start, 3)
    if save_to is not None:
        with atomic_dir(save_to, force=True) as tmp:
            model.save_pretrained(tmp, safe_serialization=True)
            tokenizer.save_pretrained(tmp)
    run_config = {"task": task.name, "data": str(task.data_dir), "labels": task.labels, "splits": scored,
                  "notes": task.notes, "model_path": path, "max_length_used": max_length,
                  "device": str(model.device), "threads": torch.get_num_threads(),
                  "training": json.loads(json.dumps(asdict(config))), "train": stats}
    return RunRecord(evaluator, task.name, spec.path, spec.label, seed, PRIMARY, metrics, per_example,
                     wall_s=round(time.perf_counter() - start, 3), config=run_config)


# ---------------------------------------------------------------------------------------------- driver


def _check_resumed(out: Path, specs: list[ModelSpec], seeds: list[int]) -> None:
    for spec in specs:
        for seed in seeds:
            if finished(out, spec.label, seed):
                old = read_record(run_dir(out, spec.label, seed) / "result.json").model
                if old != spec.path:
                    raise DefembError(f"{run_dir(out, spec.label, seed)} was run with model '{old}', not "
                                      f"'{spec.path}'; give this model another label or pass --force")


def run_models(specs: list[ModelSpec], paths: list[str], seeds: list[int], task: Task, config: TrainingConfig,
               out: Path, splits: tuple[str, ...] = ("dev", "test"), save_models: bool = False,
               trust_remote_code: bool = False, evaluator: str = "classification") -> list[RunRecord]:
    """Every (model, seed) run not yet ``ok`` under ``out``; a crash becomes a ``failed`` record, the loop goes on."""
    _check_resumed(out, specs, seeds)
    records = []
    runs = [(spec, path, seed) for spec, path in zip(specs, paths, strict=True) for seed in seeds]
    for number, (spec, path, seed) in enumerate(runs, start=1):
        folder = run_dir(out, spec.label, seed)
        model_dir = folder / "model" if save_models else None
        if finished(out, spec.label, seed) and (model_dir is None or model_dir.is_dir()):
            records.append(read_record(folder / "result.json"))
            continue
        print(f"defemb: run {number}/{len(runs)}: {spec.label}, seed {seed}", file=sys.stderr)
        try:
            record = run_one(spec, path, seed, task, config, splits, model_dir, trust_remote_code, evaluator)
        except Exception as exc:  # one broken checkpoint must not cost the other runs
            record = RunRecord(evaluator, task.name, spec.path, spec.label, seed, PRIMARY, status="failed",
                               error=error_line(exc), config={"task": task.name, "model_path": path})
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "error.txt").write_text(traceback.format_exc(), encoding="utf-8")
            print(f"defemb: {spec.label} seed {seed} failed: {record.error} (see {folder / 'error.txt'})",
                  file=sys.stderr)
        else:
            (folder / "error.txt").unlink(missing_ok=True)  # from an earlier, failed attempt
        write_record(out, record)
        records.append(record)
    return records


def resolved_settings(settings: dict[str, Any], task: Task) -> dict[str, Any]:
    """The settings an --out folder is resumed by, with the dataset folder as found: `--data X` and letting
    defemb find X by name are one setting, so a rerun without --data resumes instead of refusing."""
    return {**settings, "data": str(Path(task.data_dir).resolve())}


def evaluate_classification(config: ClassificationConfig, out: str | Path, force: bool = False) -> list[RunRecord]:
    """Check everything (task files, every model, out), then run each (model, seed); returns all records."""
    task = load_task(config.task, config.data)
    specs = parse_model_specs(config.models)
    paths = [check_model(spec.path, config.trust_remote_code) for spec in specs]
    assert config.training is not None
    out = open_out(out, resolved_settings(config.to_dict(), task), force, free=("models", "seeds", "save_models"),
                   what="classification")
    return run_models(specs, paths, config.seeds, task, config.training, out, ("dev", "test"), config.save_models,
                      config.trust_remote_code)

