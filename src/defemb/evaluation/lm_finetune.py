"""`defemb evaluate lm-finetune`: does a better start of the new-token rows converge faster?

Every model (the `extend` outputs of one word list, each with another initialisation of the new rows, and the
original model as a reference) is fine-tuned for ``steps`` steps of plain causal-LM loss on sentences of
``data`` that contain the words, and scored on sentences kept out of training:

* the (word, sentence) examples of `evaluate lm` (every sentence that holds a word as a whole word) are split
  by sentence, seeded: ``held_out`` of the sentences are never trained on (a sentence holding two words goes
  wholly to one side). The split, the training sentences and their order are the same for every model, so
  only the start differs;
* ``train="all"``: every weight trains (AdamW, decay 0.01 on matrices); ``train="new"``: only the rows of the
  tokens the checkpoint added (its ``added.tsv``) — PEFT's ``trainable_token_indices``: the input table and
  an untied output head get gradients, every other row's gradient is zeroed and nothing decays, so every other
  weight stays bit-identical;
* learning rate: linear warm-up over the first 10 % of the steps, then linear decay to 0; gradients clipped
  at norm 1;
* precision: the training forward pass runs under bfloat16 autocast where that is measured faster on this
  machine (``precision="auto"``, `defemb.precision`), or as asked; weights, optimiser state and every held-out
  evaluation stay float32, so the curves of one run compare across models.

Metrics per model (lower is better): ``heldout/loss`` (primary: mean NLL per token of the held-out sentences
after training), ``heldout/loss@N`` at step 0, every ``eval_every`` steps and at the end, ``heldout/loss_mean``
(the mean over those evaluations: a lower one converged faster), ``train/loss`` (mean of the last
``eval_every`` steps), and `score_words` on the held-out examples after training: ``word/nll``,
``after/nll`` (per-example lists kept for the paired bootstrap of `defemb results`). Held-out losses are per
token, so the original model (more tokens per sentence: the words as pieces) compares with the others through
``word/nll`` and ``after/nll``, not through ``heldout/loss``.

Files: ``OUT/<label>/seed-<seed>/result.json`` and ``curve.json`` (every step's training loss, the held-out
curve), and ``OUT/curves.json``, ``curves.md``, ``curves.png`` rebuilt from every finished model.

Resuming: finished models are skipped, and a model interrupted mid-training goes on from its last held-out
evaluation. There ``OUT/<label>/seed-<seed>/checkpoint/`` holds the trained weights (every weight, or the token
tables in `new` mode; safetensors), the optimiser and scheduler (``torch.load(weights_only=True)``), the
random state and the curve so far, replaced atomically; on CPU the resumed curve is the uninterrupted one
bit for bit. A checkpoint of another model under the same label is not resumed (training starts over);
the checkpoint is removed once the model's record is written.
"""

from __future__ import annotations

import io
import json
import math
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from defemb.errors import DefembError, quote
from defemb.evaluation.lm import (
    check_counts,
    read_documents,
    read_words,
    score_words,
    start_ids,
    token_nll,
    word_examples,
)
from defemb.evaluation.records import (
    RunRecord,
    error_line,
    finished,
    open_out,
    parse_model_specs,
    read_records,
    run_dir,
    write_record,
)
from defemb.method.model import pad_batch
from defemb.outputs import atomic_dir, write_bytes_atomic, write_json_atomic, write_text_atomic
from defemb.seeding import seed_everything
from defemb.tokens import padding_id

EVALUATOR = "lm-finetune"
PRIMARY = "heldout/loss"
MODES = ("all", "new")
PRECISIONS = ("auto", "bf16", "fp32")
#: Full fine-tuning of a ~100 M-parameter LM takes the usual 5e-5; a few embedding rows alone move slowly at
#: that rate (prompt tuning and PEFT's trainable tokens use 1e-3 and up), so `new` starts 20 times higher.
LEARNING_RATES = {"all": 5e-5, "new": 1e-3}
WARMUP_SHARE = 0.1
WEIGHT_DECAY = 0.01
MAX_GRAD_NORM = 1.0
CURVE_FILE = "curve.json"
CHECKPOINT = "checkpoint"


@dataclass
class LmFinetuneConfig:
    """Settings of `defemb evaluate lm-finetune`."""

    models: list[str] = field(metadata={"help": "LABEL=PATH or PATH of causal LMs (extend outputs, the original)"})
    words: str = field(metadata={"help": "added.tsv or a word list: training and held-out sentences contain them"})
    data: str = field(default="cnndm", metadata={"help": "cnndm | xsum (test documents) | FILE of texts"})
    max_docs: int = field(default=500, metadata={"help": "documents searched for sentences with a word"})
    steps: int = field(default=200, metadata={"help": "optimiser steps per model"})
    train: str = field(default="all", metadata={"help": "all: every weight trains; new: only the added rows"})
    lr: float | None = field(default=None, metadata={"help": "peak learning rate (default 5e-5 all, 1e-3 new)"})
    batch_size: int = field(default=8, metadata={"help": "sentences per step"})
    max_length: int = field(default=64, metadata={"help": "tokens per sentence (longer ones are cut)"})
    eval_every: int = field(default=25, metadata={"help": "steps between held-out evaluations"})
    held_out: float = field(default=0.25, metadata={"help": "share of the sentences kept out of training"})
    after: int = field(default=24, metadata={"help": "tokens after the word scored by after/nll"})
    seed: int = field(default=0, metadata={"help": "seeds the split, the batch order and dropout"})
    precision: str = field(default="auto", metadata={"help": "auto (bf16 where measured faster) | bf16 | fp32"})
    trust_remote_code: bool = False
    schedule = "linear"  # not a field: `defemb train`'s lr_factor reads it, with ``warmup`` and ``steps``

    def __post_init__(self) -> None:
        if not self.models:
            raise DefembError("--models: name at least one model")
        if self.train not in MODES:
            raise DefembError(f"--train must be one of {', '.join(MODES)}, got {quote(str(self.train))}")
        check_counts(self, ("max_docs", "steps", "batch_size", "eval_every", "after"))
        if not isinstance(self.max_length, int) or self.max_length < 2:
            raise DefembError(f"--max-length must be at least 2 (one token to read, one to predict), "
                              f"got {self.max_length!r}")
        if not 0 < self.held_out < 1:
            raise DefembError(f"--held-out is the share of sentences kept out of training: between 0 and 1 "
                              f"(exclusive), got {self.held_out!r}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise DefembError(f"--seed must be a whole number >= 0, got {self.seed!r}")
        if self.precision not in PRECISIONS:
            raise DefembError(f"--precision must be one of {', '.join(PRECISIONS)}, got {quote(str(self.precision))}")
        if self.lr is None:
            self.lr = LEARNING_RATES[self.train]
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise DefembError(f"--lr must be a positive number, got {self.lr!r}")

    def bf16(self, device: str) -> bool:
        """Whether the training forward pass runs under bfloat16 autocast on ``device``."""
        if self.precision == "auto":
            from defemb.precision import use_bf16

            return use_bf16(device)
        return self.precision == "bf16"

    @property
    def warmup(self) -> int:
        return round(WARMUP_SHARE * self.steps)

    def eval_steps(self) -> list[int]:
        """Step 0, every ``eval_every`` steps, and the last step."""
        return sorted({*range(0, self.steps, self.eval_every), self.steps})


@dataclass
class Split:
    """The model-independent data: which sentences train, which are held out, and each step's batch."""

    train: list[str]
    held_out: list[str]
    examples: list[tuple[str, str, int]]  # held-out (word, sentence, offset) for score_words
    batches: np.ndarray  # (steps, batch_size) indices into ``train``


def split_examples(examples: list[tuple[str, str, int]], config: LmFinetuneConfig, rng: np.random.Generator
                   ) -> Split:
    """Hold out ``config.held_out`` of the distinct sentences; draw every step's training batch."""
    sentences = list(dict.fromkeys(sentence for _, sentence, _ in examples))
    held = max(1, round(config.held_out * len(sentences)))
    if held >= len(sentences):
        raise DefembError(f"{len(sentences)} sentence(s) contain the words: too few to hold {config.held_out:g} "
                          "out and train on the rest; use more --max-docs, more words or a smaller --held-out")
    kept_out = {sentences[k] for k in rng.permutation(len(sentences))[:held]}
    train = [s for s in sentences if s not in kept_out]
    # Epochs of shuffled training sentences, back to back, cut into the steps' batches.
    needed = config.steps * config.batch_size
    stream = np.concatenate([rng.permutation(len(train)) for _ in range(math.ceil(needed / len(train)))])
    return Split(train=train, held_out=[s for s in sentences if s in kept_out],
                 examples=[e for e in examples if e[1] in kept_out],
                 batches=stream[:needed].reshape(config.steps, config.batch_size))


def prepare(config: LmFinetuneConfig) -> tuple[Split, str]:
    """Read documents and words, find the sentences, split them (seeded); also where the documents came from."""
    documents, source = read_documents(config.data, config.max_docs)
    words = read_words(config.words)
    examples = word_examples(documents, words, per_word=sys.maxsize)  # every sentence that holds a word
    if not examples:
        raise DefembError(f"none of the {len(words)} words of '{config.words}' occurs in the {len(documents)} "
                          f"documents of {source}; check --words and --data, or raise --max-docs")
    return split_examples(examples, config, seed_everything(config.seed)), source


# ------------------------------------------------------------------------------------------- trainable rows


def new_row_tables(model, ids: np.ndarray) -> list[torch.nn.Parameter]:
    """Freeze every weight but the token tables (input, and the output head when untied); returns them."""
    tables = {id(m.weight): m.weight for m in (model.get_input_embeddings(), model.get_output_embeddings())
              if m is not None}
    for param in model.parameters():
        param.requires_grad_(id(param) in tables)
    for table in tables.values():
        if len(ids) and int(ids.max()) >= table.shape[0]:
            raise DefembError(f"added.tsv names token id {int(ids.max())} but the table has {table.shape[0]} rows")
    return list(tables.values())


def keep_added_rows(tables: list[torch.nn.Parameter], ids: np.ndarray) -> None:
    """Zero the gradient of every row but the added ones (the tied head shares the input table's)."""
    for table in tables:
        frozen = torch.ones(table.shape[0], dtype=torch.bool, device=table.device)
        frozen[torch.as_tensor(ids, device=table.device)] = False
        table.grad[frozen] = 0


def make_optimizer(model, config: LmFinetuneConfig) -> torch.optim.AdamW:
    """AdamW; decay on matrices in `all` mode only (in `new` mode decay would shrink every row of the table)."""
    trained = [p for p in model.parameters() if p.requires_grad]
    decay = WEIGHT_DECAY if config.train == "all" else 0.0
    groups = [{"params": [p for p in trained if p.ndim >= 2], "weight_decay": decay},
              {"params": [p for p in trained if p.ndim < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=config.lr)


# ------------------------------------------------------------------------------------------ train / score


def encode(tokenizer, sentences: list[str], max_length: int) -> list[list[int]]:
    """Each sentence as the model reads it: the tokenizer's start ids, then its tokens, cut to ``max_length``."""
    prefix = start_ids(tokenizer)
    ids = tokenizer(sentences, add_special_tokens=False)["input_ids"]
    return [prefix + row[: max_length - len(prefix)] for row in ids]


def heldout_loss(model, sequences: list[list[int]], pad_id: int, batch_size: int) -> float:
    """Mean NLL per predicted token over all sequences (pooled, so long sentences weigh more)."""
    model.eval()
    total, count = 0.0, 0
    for start in range(0, len(sequences), batch_size):
        for nll in token_nll(model, sequences[start : start + batch_size], pad_id):
            total, count = total + float(nll.sum()), count + len(nll)
    return total / count


def lm_loss(model, batch: list[list[int]], pad_id: int, bf16: bool = False) -> torch.Tensor:
    """Causal-LM loss, labels = inputs with padding ignored (positions, not ids: GPT-2's pad is its BOS);
    the forward pass under bfloat16 autocast when ``bf16`` (transformers' loss upcasts the logits)."""
    input_ids, mask = (t.to(model.device) for t in pad_batch(batch, pad_id))
    labels = input_ids.masked_fill(mask == 0, -100)
    with torch.autocast(model.device.type, dtype=torch.bfloat16, enabled=bf16):
        return model(input_ids=input_ids, attention_mask=mask, labels=labels).loss


# ------------------------------------------------------------------------------------- checkpoint / resume


def save_checkpoint(folder: Path, model, optimizer, schedule, step: int, curve: dict[str, Any], key: str) -> None:
    """The state after ``step`` (trained weights, optimiser, scheduler, random state, curve) into
    ``folder/checkpoint``, replaced atomically."""
    from safetensors.torch import save_file

    with atomic_dir(folder / CHECKPOINT, force=True) as tmp:  # force: it replaces the previous checkpoint
        trained = {name: p.detach().contiguous() for name, p in model.named_parameters() if p.requires_grad}
        save_file(trained, tmp / "weights.safetensors")
        torch.save({"optimizer": optimizer.state_dict(), "scheduler": schedule.state_dict(),
                    "rng": torch.get_rng_state()}, tmp / "optimizer.pt")
        write_json_atomic(tmp / "state.json", {"key": key, "step": step, "curve": curve})


def load_checkpoint(folder: Path, model, optimizer, schedule, key: str) -> tuple[int, dict[str, Any] | None]:
    """(step, curve) of the checkpoint in ``folder`` after loading it into model, optimiser and scheduler;
    (0, None) when there is none or it belongs to another model or other settings (``key``)."""
    from safetensors.torch import load_file

    checkpoint = folder / CHECKPOINT
    if not (checkpoint / "state.json").is_file():
        return 0, None
    try:
        state = json.loads((checkpoint / "state.json").read_text(encoding="utf-8"))
        if state.get("key") != key:
            print(f"{checkpoint}: from another model or other settings; this model starts over", file=sys.stderr)
            return 0, None
        weights = load_file(checkpoint / "weights.safetensors", device=str(model.device))
        rest = torch.load(checkpoint / "optimizer.pt", weights_only=True, map_location=model.device)
        with torch.no_grad():
            for name, param in model.named_parameters():
                if param.requires_grad:
                    param.copy_(weights[name])
        optimizer.load_state_dict(rest["optimizer"])
        schedule.load_state_dict(rest["scheduler"])
        torch.set_rng_state(rest["rng"])
    except Exception as exc:  # truncated, foreign or damaged: one line naming the folder, nothing deleted
        raise DefembError(f"'{checkpoint}' is damaged or not from lm-finetune ({error_line(exc)}); delete it to "
                          "start this model over") from exc
    return int(state["step"]), state["curve"]


def checkpoint_key(config: LmFinetuneConfig, path: str, ids: np.ndarray | None) -> str:
    """What a checkpoint must match to be resumed: the model, its trained rows and every setting."""
    settings = {k: v for k, v in asdict(config).items() if k not in ("models", "trust_remote_code")}
    return json.dumps({"model": str(Path(path).resolve()), "ids": None if ids is None else ids.tolist(),
                       **settings}, sort_keys=True)


def finetune(model, tokenizer, split: Split, config: LmFinetuneConfig, ids: np.ndarray | None,
             label: str = "", folder: Path | None = None, key: str = ""
             ) -> tuple[dict[str, float], dict[str, list[float]], dict[str, Any]]:
    """Train in place; (metrics, per_example, curve). ``ids``: the added rows (``train="new"`` only).
    ``folder``: where to keep a checkpoint at every held-out evaluation and resume from (``key`` must match)."""
    from defemb.method.train import lr_factor

    pad_id = padding_id(tokenizer)
    train = encode(tokenizer, split.train, config.max_length)
    held = encode(tokenizer, split.held_out, config.max_length)
    bf16 = config.bf16(model.device.type)
    seed_everything(config.seed)  # dropout: the same draws for every model
    tables = new_row_tables(model, ids) if config.train == "new" else []
    optimizer = make_optimizer(model, config)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(config, step))
    evals = config.eval_steps()
    done, curve = load_checkpoint(folder, model, optimizer, schedule, key) if folder is not None else (0, None)
    if curve is None:
        curve = {"steps": evals, "heldout_loss": [heldout_loss(model, held, pad_id, config.batch_size)],
                 "train_loss": [], "seconds": 0.0}
    started = time.perf_counter() - curve["seconds"]
    with tqdm(total=config.steps, initial=done, desc=f"fine-tune {label}".strip(), unit=" steps",
              leave=False) as progress:
        for step in range(done + 1, config.steps + 1):
            model.train()
            loss = lm_loss(model, [train[k] for k in split.batches[step - 1]], pad_id, bf16)
            loss.backward()
            if tables:
                keep_added_rows(tables, ids)
            torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], MAX_GRAD_NORM)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            curve["train_loss"].append(float(loss.detach()))
            progress.update(1)
            progress.set_postfix(loss=f"{curve['train_loss'][-1]:.3f}")
            if step in evals:
                curve["heldout_loss"].append(heldout_loss(model, held, pad_id, config.batch_size))
                curve["seconds"] = time.perf_counter() - started
                if folder is not None and step < config.steps:
                    save_checkpoint(folder, model, optimizer, schedule, step, curve, key)
    seconds = time.perf_counter() - started
    del curve["seconds"]
    model.eval()
    scored = score_words(model, tokenizer, split.examples, config.after, config.batch_size)
    metrics = {PRIMARY: curve["heldout_loss"][-1], "heldout/loss_mean": float(np.mean(curve["heldout_loss"])),
               **{f"heldout/loss@{s}": v for s, v in zip(evals, curve["heldout_loss"], strict=True)},
               "train/loss": float(np.mean(curve["train_loss"][-config.eval_every :])),
               "train/sentences": float(len(train)), "heldout/sentences": float(len(held)),
               "train/ms_per_step": 1000 * seconds / config.steps, "train/bf16": float(bf16), **scored["metrics"]}
    return metrics, scored["per_example"], curve


def trained_ids(path: str, config: LmFinetuneConfig) -> np.ndarray | None:
    """The added rows that `new` mode trains (None in `all` mode); a checkpoint without added.tsv cannot."""
    from defemb.extend import ADDED_FILE, added_ids

    if config.train == "all":
        return None
    if not (Path(path) / ADDED_FILE).is_file():
        raise DefembError(f"'{path}' has no {ADDED_FILE}, so it added no tokens to train: --train new is for "
                          "`defemb extend` outputs; score this model with --train all")
    return added_ids(path)


def run_lm_finetune(config: LmFinetuneConfig, out: str | Path, force: bool = False) -> dict[str, Any]:
    """One record per model under OUT (finished ones are skipped), then the curve files from every record;
    returns the curves (``curves.json``), the models in ``config.models`` order."""
    from defemb.models import load_model, resolve_model_name

    specs = parse_model_specs(config.models)
    paths = [resolve_model_name(spec.path) for spec in specs]
    split, source = prepare(config)
    settings = {**asdict(config), "source": source, "train_sentences": len(split.train),
                "heldout_sentences": len(split.held_out), "heldout_examples": len(split.examples)}
    open_out(out, settings, force, free=("models", "trust_remote_code"), what=EVALUATOR)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.set_flush_denormal(True)  # tiny gradients/moments as denormals slow CPU kernels 100-fold
    try:
        for spec, path in tqdm(list(zip(specs, paths, strict=True)), desc=EVALUATOR, unit="model"):
            if finished(out, spec.label, config.seed):
                continue
            started = time.perf_counter()
            base = dict(evaluator=EVALUATOR, task=Path(source).stem if config.data not in ("cnndm", "xsum") else
                        config.data, model=spec.path, label=spec.label, seed=config.seed, primary=PRIMARY,
                        config={**settings, "models": [f"{spec.label}={spec.path}"]})
            try:
                ids = trained_ids(path, config)
                loaded = load_model(path, trust_remote_code=config.trust_remote_code)
                if loaded.kind != "decoder":
                    raise DefembError(f"{spec.path} is a {loaded.kind} model; lm-finetune needs a causal LM")
                folder = run_dir(out, spec.label, config.seed)
                metrics, per_example, curve = finetune(loaded.model.to(device), loaded.tokenizer, split, config,
                                                       ids, spec.label, folder, checkpoint_key(config, path, ids))
                folder.mkdir(parents=True, exist_ok=True)
                write_json_atomic(folder / CURVE_FILE, curve)  # before the record: a finished model has its curve
                record = RunRecord(**base, metrics=metrics, per_example=per_example,
                                   wall_s=time.perf_counter() - started)
            except Exception as exc:  # one model failing must not stop the others; its record says why
                record = RunRecord(**base, status="failed", error=error_line(exc),
                                   wall_s=time.perf_counter() - started)
            write_record(out, record)
            if record.status == "ok":  # a failed model keeps its checkpoint: the rerun goes on from it
                shutil.rmtree(run_dir(out, spec.label, config.seed) / CHECKPOINT, ignore_errors=True)
    except KeyboardInterrupt as exc:
        exc.add_note(f"finished models, and the last checkpoint of the one in training, are kept in '{out}'; "
                     "rerun the same command to continue")
        raise
    return write_curves(out, [spec.label for spec in specs])


# ---------------------------------------------------------------------------------------------- curve files


def collect_curves(out: str | Path, order: Sequence[str] = ()) -> dict[str, Any]:
    """Every finished model's curve under OUT, plus the failed models' errors; labels in ``order`` come first
    (models of earlier runs into the same OUT follow)."""
    models, failed = {}, {}
    rank = {label: k for k, label in enumerate(order)}
    for record in sorted(read_records(out), key=lambda r: (rank.get(r.label, len(rank)), r.label)):
        if record.evaluator != EVALUATOR:
            continue
        if record.status != "ok":
            failed[record.label] = record.error
            continue
        curve = json.loads((run_dir(out, record.label, record.seed) / CURVE_FILE).read_text(encoding="utf-8"))
        models[record.label] = {**curve, "metrics": {k: v for k, v in record.metrics.items() if "@" not in k}}
    return {"models": models, "failed": failed}


def curves_markdown(curves: dict[str, Any]) -> str:
    labels = list(curves["models"])
    lines = ["# Held-out LM loss while fine-tuning (mean NLL per token, lower is better)", "",
             "| step | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels)]
    steps = next(iter(curves["models"].values()))["steps"] if labels else []
    for k, step in enumerate(steps):
        lines.append(f"| {step} | " + " | ".join(f"{curves['models'][m]['heldout_loss'][k]:.4f}" for m in labels)
                     + " |")
    lines += ["", "| after training | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels)]
    for name in (PRIMARY, "heldout/loss_mean", "train/loss", "word/nll", "after/nll"):
        cells = [curves["models"][m]["metrics"].get(name) for m in labels]
        lines.append(f"| {name} | " + " | ".join("—" if c is None else f"{c:.4f}" for c in cells) + " |")
    lines += ["", "Losses are per token of each model's own tokenizer: a model that splits the words into pieces "
              "(the original) predicts more, easier tokens; compare it through word/nll and after/nll.", ""]
    lines += [f"{label}: failed: {error}" for label, error in curves["failed"].items()]
    return "\n".join(lines).rstrip() + "\n"


def curves_png(curves: dict[str, Any]) -> bytes:
    """Held-out loss per evaluation (left) and the training loss, a running mean over 10 steps (right)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 3.8), dpi=120)
    FigureCanvasAgg(fig)
    heldout, training = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    for label, curve in curves["models"].items():
        heldout.plot(curve["steps"], curve["heldout_loss"], marker="o", markersize=3, label=label)
        losses = np.asarray(curve["train_loss"])
        window = min(10, len(losses))
        running = np.convolve(losses, np.ones(window) / window, mode="valid")
        training.plot(np.arange(window, len(losses) + 1), running, label=label)
    for ax, title in ((heldout, "held-out loss"), (training, "training loss (running mean of 10)")):
        ax.set_xlabel("step")
        ax.set_ylabel("NLL per token")
        ax.set_title(title, fontsize=10)
    if curves["models"]:
        heldout.legend(fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def write_curves(out: str | Path, order: Sequence[str] = ()) -> dict[str, Any]:
    """``curves.json``, ``curves.md`` and ``curves.png`` in OUT from every record there, each written atomically."""
    out = Path(out)
    curves = collect_curves(out, order)
    write_json_atomic(out / "curves.json", curves)
    write_text_atomic(out / "curves.md", curves_markdown(curves))
    write_bytes_atomic(out / "curves.png", curves_png(curves))
    return curves
