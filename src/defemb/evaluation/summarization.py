"""`defemb evaluate summarization`: fine-tune any seq2seq checkpoint, decode with beam search, score ROUGE.

One run per (model, seed) — records.py layout. A run: load the model (an encoder-only checkpoint such as
MiniLM is warm-started as a tied encoder-decoder), fine-tune with AdamW and warm-up + linear decay on
token-budget batches, decode the test set with the paper's beam settings (Table 15), score ROUGE-1/2/L/Lsum
F1 per document (in [0, 1]; the mean is the metric) and, with ``rare_subset``, the same on the test
documents whose reference has >= 5 % rare tokens (App. B.2). Predictions go to predictions.jsonl.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from defemb.errors import DefembError, quote
from defemb.evaluation.records import (
    RunRecord,
    error_line,
    finished,
    open_out,
    parse_model_specs,
    read_record,
    run_dir,
    write_record,
)
from defemb.evaluation.summ_data import (
    ROUGE_TYPES,
    TASK_DEFAULTS,
    Encoded,
    Splits,
    encode,
    load_task,
    missing_train_message,
    rare_subset,
    rouge_per_example,
    task_kind,
)
from defemb.evaluation.summ_model import decode, default_prefix, load_seq2seq, source_limit, train
from defemb.frequency import encoder, parse_method, rank_tokens
from defemb.models import resolve_model_name, tokenizer_kind
from defemb.outputs import write_json_atomic, write_text_atomic
from defemb.seeding import seed_everything

EVALUATOR = "summarization"
RARE_MODES = ("off", "add", "only")
#: Settings that may change between a run and its resume (more models, more seeds, another device).
_RESUME_FREE = ("models", "seeds", "device", "trust_remote_code")


@dataclass
class SummarizationConfig:
    """Settings of `defemb evaluate summarization`; None fields take the task's defaults (see TASK_DEFAULTS)."""

    task: str = field(metadata={"help": "cnndm | xsum | jsonl:PATH"})
    models: list[str] = field(metadata={"help": "LABEL=PATH or PATH; encoder-only models are warm-started"})
    seeds: list[int] = field(default_factory=lambda: [0])
    data: str | None = field(default=None, metadata={"help": "folder holding the task's files"})
    train_file: str | None = None
    valid_file: str | None = None
    test_file: str | None = None
    train_from_test: int = field(default=0, metadata={"help": "train on N test examples, test on the rest"})
    train_limit: int | None = None
    test_limit: int | None = None
    epochs: int = field(default=1, metadata={"help": "0 = no fine-tuning (score a fine-tuned checkpoint)"})
    max_steps: int | None = field(default=None, metadata={"help": "stop after this many optimizer steps"})
    lr: float = 3e-5
    weight_decay: float = 0.01
    warmup_ratio: float = field(default=0.025, metadata={"help": "share of steps in linear warm-up (500/20k)"})
    max_grad_norm: float = 1.0
    batch_tokens: int = field(default=4096, metadata={"help": "padded source+target tokens per batch"})
    accumulate: int = field(default=1, metadata={"help": "batches per optimizer step"})
    max_source_length: int | None = None
    max_target_length: int | None = None
    min_length: int | None = field(default=None, metadata={"help": "fewest new tokens when decoding"})
    beams: int | None = None
    length_penalty: float | None = None
    decode_batch_size: int = 8
    prefix: str | None = field(default=None, metadata={"help": "source prefix; default 'summarize: ' for T5"})
    rare_subset: str = field(default="off", metadata={"help": "off | add (score it too) | only (decode it only)"})
    rare_threshold: float = 0.05
    ranking: str | None = field(default=None, metadata={"help": "rare band ranking: index | wordfreq | corpus:P"})
    rare_seen_only: bool = field(default=False, metadata={"help": "App. B.2 filter: all tokens seen in train"})
    tie_encoder_decoder: bool = True
    device: str | None = None
    trust_remote_code: bool = False

    def __post_init__(self) -> None:
        kind = task_kind(self.task)
        parse_model_specs(self.models)
        if not self.models:
            raise DefembError("--models: name at least one model")
        defaults = TASK_DEFAULTS[kind]
        for name in ("beams", "length_penalty", "min_length", "max_target_length", "max_source_length"):
            if getattr(self, name) is None:
                setattr(self, name, getattr(defaults, name))
        positive = ("batch_tokens", "accumulate", "max_source_length", "max_target_length", "beams",
                    "decode_batch_size")
        for name in positive + ("train_limit", "test_limit", "max_steps"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):  # the limits may be None
                raise DefembError(f"--{name.replace('_', '-')} must be a positive whole number (got {value!r})")
        for name in ("epochs", "train_from_test", "min_length"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 0:
                raise DefembError(f"--{name.replace('_', '-')} must be zero or more (got {getattr(self, name)!r})")
        if self.min_length >= self.max_target_length:
            raise DefembError(f"--min-length {self.min_length} must be below --max-target-length "
                              f"{self.max_target_length}; lower --min-length")
        if not self.lr > 0 or self.weight_decay < 0 or self.max_grad_norm <= 0:
            raise DefembError("--lr and --max-grad-norm must be > 0 and --weight-decay >= 0")
        if not 0 <= self.warmup_ratio < 1:
            raise DefembError(f"--warmup-ratio must be in [0, 1) (got {self.warmup_ratio})")
        if self.rare_subset not in RARE_MODES:
            raise DefembError(f"--rare-subset {quote(self.rare_subset)}: choose {', '.join(RARE_MODES)}")
        if not 0 < self.rare_threshold <= 1:
            raise DefembError(f"--rare-threshold must be in (0, 1] (got {self.rare_threshold})")
        if self.ranking is not None:
            parse_method(self.ranking)

    @property
    def primary(self) -> str:
        return "rare/rouge1" if self.rare_subset == "only" else "test/rouge1"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ------------------------------------------------------------------------------------------------ runs


def prepare_splits(cfg: SummarizationConfig) -> Splits:
    """Read and check every split (before any model loads); apply the limits."""
    splits = load_task(cfg.task, cfg.data, cfg.train_file, cfg.valid_file, cfg.test_file, cfg.train_from_test)
    if cfg.train_limit:
        splits.train = splits.train[: cfg.train_limit]
    if cfg.test_limit:
        splits.test = splits.test[: cfg.test_limit]
    if cfg.epochs and not splits.train:
        raise DefembError(missing_train_message(cfg.task))
    if cfg.rare_seen_only and not splits.train:
        raise DefembError("--rare-seen-only keeps summaries whose tokens all occur in the training set, "
                          "but there is none; give a training split or drop --rare-seen-only")
    return splits


def find_rare_subset(cfg: SummarizationConfig, model, tokenizer, splits: Splits) -> dict[str, Any]:
    """Test examples whose reference has >= ``rare_threshold`` tokens in the model's rare band."""
    rows = model.get_input_embeddings().weight.shape[0]
    ranking = rank_tokens(tokenizer, rows, cfg.ranking, tokenizer_kind(tokenizer))
    encode_plain = encoder(tokenizer)
    seen = None
    if cfg.rare_seen_only:
        seen = set()
        for ids in encode_plain([x.document for x in splits.train] + [x.summary for x in splits.train]):
            seen.update(ids)
    indices = rare_subset([x.summary for x in splits.test], encode_plain, set(ranking.bands["rare"].tolist()),
                          cfg.rare_threshold, seen)
    return {"ranking": ranking.method, "threshold": cfg.rare_threshold, "seen_only": cfg.rare_seen_only,
            "size": len(indices), "of": len(splits.test), "indices": indices,
            "ids": [splits.test[i].id for i in indices]}


def _score(prefix: str, scores: dict[str, list[float]], metrics: dict, per_example: dict) -> None:
    for name in ROUGE_TYPES:
        per_example[f"{prefix}/{name}"] = scores[name]
        metrics[f"{prefix}/{name}"] = float(np.mean(scores[name]))


def run_one(cfg: SummarizationConfig, label: str, path: str, seed: int, splits: Splits, folder: Path,
            device: str) -> RunRecord:
    """Fine-tune one model with one seed, decode, score; writes predictions.jsonl (and training.json)."""
    seed_everything(seed)
    torch.set_flush_denormal(True)  # tiny gradients/moments as denormals slow CPU kernels 100-fold
    model, tokenizer, facts = load_seq2seq(path, cfg)
    model.to(device)
    prefix = default_prefix(facts["model_type"]) if cfg.prefix is None else cfg.prefix
    max_source = source_limit(model, tokenizer, cfg.max_source_length)
    start = model.generation_config.decoder_start_token_id
    start = model.config.decoder_start_token_id if start is None else start
    eos = model.generation_config.eos_token_id
    eos = (eos[0] if isinstance(eos, list) else eos) if eos is not None else tokenizer.eos_token_id
    pad_id = tokenizer.pad_token_id
    facts.update(prefix=prefix, max_source_length=max_source, train_examples=len(splits.train),
                 test_examples=len(splits.test), device=device)

    test = splits.test
    rare = find_rare_subset(cfg, model, tokenizer, splits) if cfg.rare_subset != "off" else None
    if rare is not None and cfg.rare_subset == "only":
        if not rare["indices"]:
            raise DefembError(f"the rare subset is empty: no test summary has >= {cfg.rare_threshold:.0%} rare "
                              "tokens; lower --rare-threshold or use --rare-subset add")
        test = [splits.test[i] for i in rare["indices"]]

    def encoded(examples) -> Encoded:
        return encode(examples, tokenizer, prefix, max_source, cfg.max_target_length, start, eos)

    log: dict[str, Any] = {}
    if cfg.epochs:
        t0 = time.time()
        log = train(model, encoded(splits.train), cfg, seed, pad_id, device,
                    encoded(splits.valid) if splits.valid else None)
        log["wall_s"] = round(time.time() - t0, 2)
    t0 = time.time()
    predictions = decode(model, tokenizer, encoded(test).sources, cfg, pad_id, device)
    facts["decode_wall_s"] = round(time.time() - t0, 2)
    scores = rouge_per_example(predictions, [x.summary for x in test])

    metrics: dict[str, float] = {}
    per_example: dict[str, list[float]] = {}
    if cfg.rare_subset != "only":
        _score("test", scores, metrics, per_example)
    if rare is not None and rare["indices"]:
        keep = rare["indices"]
        _score("rare", scores if cfg.rare_subset == "only" else {k: [v[i] for i in keep] for k, v in scores.items()},
               metrics, per_example)

    folder.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"id": x.id, "prediction": p, "reference": x.summary,
                         **{name: round(scores[name][k], 5) for name in ROUGE_TYPES}}, ensure_ascii=False)
             for k, (x, p) in enumerate(zip(test, predictions, strict=True))]
    write_text_atomic(folder / "predictions.jsonl", "\n".join(lines) + "\n")
    if log:
        write_json_atomic(folder / "training.json", log)
        facts["optimizer_steps"] = log["optimizer_steps"]
    if rare is not None:
        write_json_atomic(folder / "rare_subset.json", rare)
        facts["rare_subset"] = {k: v for k, v in rare.items() if k != "indices"}
    return RunRecord(EVALUATOR, cfg.task, path, label, seed, cfg.primary, metrics, per_example,
                     config={**cfg.to_dict(), "run": facts})


def evaluate_summarization(cfg: SummarizationConfig, out: str | Path, force: bool = False) -> list[RunRecord]:
    """Every (model, seed) run; ok runs already in ``out`` are skipped (resume), a failing run is recorded and
    the others go on; ``force`` replaces ``out``. Returns the records in model-then-seed order."""
    splits = prepare_splits(cfg)
    specs = parse_model_specs(cfg.models)
    for spec in specs:
        resolve_model_name(spec.path)
    device = cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")
    open_out(out, cfg.to_dict(), force, free=_RESUME_FREE, what=EVALUATOR)
    records = []
    for spec in specs:
        for seed in cfg.seeds:
            folder = run_dir(out, spec.label, seed)
            if finished(out, spec.label, seed):
                records.append(read_record(folder / "result.json"))
                continue
            t0 = time.time()
            try:
                record = run_one(cfg, spec.label, spec.path, seed, splits, folder, device)
            except Exception as exc:  # recorded as a failed run; KeyboardInterrupt still stops everything
                record = RunRecord(EVALUATOR, cfg.task, spec.path, spec.label, seed, cfg.primary, status="failed",
                                   error=error_line(exc), config=cfg.to_dict())
            record.wall_s = round(time.time() - t0, 2)
            write_record(out, record)
            records.append(record)
    return records
