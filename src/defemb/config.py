"""One validated dataclass per stage; each run directory stores its resolved config as config.json."""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from defemb.errors import DefembError
from defemb.frequency import parse_method
from defemb.models import TABLES


def _check_table(table: str) -> None:
    if table not in TABLES:
        raise DefembError(f"unknown --table '{table}'; choose one of {', '.join(TABLES)}")


def _check_view(ranking: str | None, table: str, k: int) -> None:
    """What analysis-like stages share: a ranking spec, a table name, a neighbour count."""
    if ranking is not None:
        parse_method(ranking)
    _check_table(table)
    _check_positive("k", k)


def _check_positive(name: str, value: int, minimum: int = 1) -> None:
    """A whole number of at least ``minimum`` (1: positive)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        what = "a positive whole number" if minimum == 1 else f"a whole number >= {minimum}"
        raise DefembError(f"--{name} must be {what} (got {value!r})")


@dataclass
class AnalyzeConfig:
    """Settings of `defemb analyze`."""

    model: str = field(metadata={"help": "local HF directory, hub name, or the alias 'minilm'"})
    ranking: str | None = field(default=None, metadata={"help": "index | wordfreq | corpus:PATH"})
    table: str = field(default="input", metadata={"help": "input | encoder | decoder | output"})
    tokens: list[str] = field(default_factory=list, metadata={"help": "tokens whose neighbours to show"})
    sample: int = field(default=8, metadata={"help": "rare tokens sampled for neighbour lists"})
    k: int = field(default=10, metadata={"help": "neighbours per token"})
    seed: int = 0
    plot_points: int = field(default=20_000, metadata={"help": "most points drawn in the projections"})
    trust_remote_code: bool = False

    def __post_init__(self) -> None:
        _check_view(self.ranking, self.table, self.k)
        _check_positive("plot-points", self.plot_points)
        if self.sample < 0:
            raise DefembError(f"--sample must be zero or more (got {self.sample})")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class DriftConfig:
    """Settings of `defemb drift`: geometry change between two checkpoints with one vocabulary."""

    model_a: str
    model_b: str
    ranking: str | None = None
    table: str = "input"
    k: int = 10
    queries: int = field(default=1000, metadata={"help": "tokens per band whose k-NN sets are compared"})
    seed: int = 0
    trust_remote_code: bool = False

    def __post_init__(self) -> None:
        _check_view(self.ranking, self.table, self.k)
        _check_positive("queries", self.queries)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class BaselineConfig:
    """Settings of `defemb baseline`: DelDirection or Del-zscore applied to one table."""

    method: str
    model: str
    components: int | None = field(default=None, metadata={"help": "D; default max(1, round(h/100))"})
    projection: str = field(default="centred", metadata={"help": "centred | raw (see baselines.py)"})
    table: str = "input"
    trust_remote_code: bool = False

    def __post_init__(self) -> None:
        if self.method not in ("deldirection", "zscore"):
            raise DefembError(f"unknown baseline '{self.method}'; choose deldirection or zscore")
        if self.components is not None and (not isinstance(self.components, int) or self.components < 0):
            raise DefembError(f"--components must be a whole number >= 0 (got {self.components!r})")
        if self.projection not in ("centred", "raw"):
            raise DefembError(f"unknown --projection '{self.projection}'; choose centred or raw")
        _check_table(self.table)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class CorpusConfig:
    """Settings of `defemb corpus build`."""

    tokenizer: str = field(metadata={"help": "model whose tokenizer the corpus is built for"})
    sources: list[str] = field(default_factory=lambda: ["gcide"], metadata={"help": "dictionary source specs"})
    entities: str | None = field(default=None, metadata={"help": "file of manual definitions (names, pieces)"})
    numbers: bool = field(default=True, metadata={"help": "define every numeric vocabulary token"})
    valid_percent: float = field(default=5.0, metadata={"help": "share of headwords held out for validation"})
    max_tokens: int = field(default=128, metadata={"help": "token budget per prompt (definitions are cut)"})
    strict: bool = field(default=False, metadata={"help": "any bad input line is an error instead of a skip"})
    references: str = field(default="resolve", metadata={"help": "resolve (a definition that only says 'See X.' "
                                                         "gets X's definition) | keep"})
    trust_remote_code: bool = False

    def __post_init__(self) -> None:
        if self.references not in ("resolve", "keep"):
            raise DefembError(f"--references must be resolve or keep (got {self.references!r})")
        if not self.sources and not self.entities and not self.numbers:
            raise DefembError("nothing to build: give --source, --entities, or keep the number definitions")
        if not 0 <= self.valid_percent < 100:
            raise DefembError(f"--valid-percent must be in [0, 100) (got {self.valid_percent})")
        if self.max_tokens < 8:
            raise DefembError(f"--max-tokens must be at least 8 (got {self.max_tokens})")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# Prompts `embed` averages per row by default. MiniLM + GCIDE, `replace --all --spread directions` word
# similarity: 1 prompt 0.327, 5 0.467, 10 0.495, 20 0.486 (docs/results.md, issue 9's ninth and thirteenth parts).
MAX_PROMPTS = 10
SENSES = 5  # definitions averaged per new word (extend): 1 -> 5 raised new-word similarity 0.406 -> 0.535
# The map a band head reads new words with: the shared W. On MiniLM (277 new words, mean rho on their pairs) the
# shared W gave 0.530, the medium band's map 0.521, the frequent's 0.461 and the rare's 0.439: MiniLM's rare rows
# are stray pieces and scripts, while a word the vocabulary splits is an ordinary word (docs/results.md).
NEW_WORD_BAND = "shared"  # `defemb.method.model.SHARED`: W without a band's correction

# Optimiser presets: the paper's Table 12 for full-size models, and "small" for CPU runs on small models
# (see docs/results.md for what they give). Every preset starts W from the ridge warm start: the paper's
# random W starts ~100x above the mean row's error on MiniLM (128.8 vs 1.48) and spends its first steps only
# shrinking. `--no-warm-start` gives the paper's random W. W learns at the body's rate: the 10x that "small"
# gave it was for a random W, and from the warm start it undid the fit (SmolLM2, 20 steps: 6.884 at 10x vs
# 6.828 at 1x; MiniLM, 200 steps: 1.3360 vs 1.3342; docs/results.md).
PRESETS: dict[str, dict[str, Any]] = {
    "roberta": dict(steps=400_000, warmup=24_000, tokens=4096, lr=1e-4, optimizer="adam", schedule="inverse_sqrt",
                    head_lr_scale=1.0, warm_start=True),
    "bart": dict(steps=250_000, warmup=20_000, tokens=4096, lr=1e-4, optimizer="adam", schedule="inverse_sqrt",
                 head_lr_scale=1.0, warm_start=True),
    "t5": dict(steps=125_000, warmup=0, tokens=8192, lr=1e-3, optimizer="adafactor", schedule="constant",
               head_lr_scale=1.0, warm_start=True),
    "small": dict(steps=2000, warmup=100, tokens=4096, lr=1e-4, optimizer="adam", schedule="cosine",
                  head_lr_scale=1.0, warm_start=True),
}
# inverse_sqrt: the paper's (29 % of the peak rate is left at step 1,200 of a 100-step warm-up); linear and
# cosine decay to 0 at the last step, so a short CPU run ends settled; constant: T5's Adafactor.
SCHEDULES = ("inverse_sqrt", "linear", "cosine", "constant")
HEADS = ("band", "single")


@dataclass
class TrainConfig:
    """Settings of `defemb train`; None fields take the preset's value."""

    model: str
    corpus: str
    preset: str = field(default="small", metadata={"help": "roberta | bart | t5 (paper Table 12) | small"})
    table: str = field(default="input", metadata={"help": "the table to mimic: input | encoder | decoder"})
    objective: str = field(default="mimic", metadata={"help": "mimic (MSE to pretrained rows) | lm (ablation)"})
    head: str = field(default="band", metadata={"help": "band (one W per frequency band of the token) | single "
                                                 "(the paper's one W)"})
    contrast: float = field(default=0.0, metadata={"help": "weight of a term that asks the prediction to pick its own "
                                                   "row out of the whole table (cosine softmax); 0 = the paper's "
                                                   "squared error alone"})
    token_weight: float = field(default=0.0, metadata={"help": "γ: each predicted position weighs n^-γ, n = the "
                                                       "training positions of its token (0 = the paper's, per "
                                                       "position; 1 = every token alike)"})
    steps: int | None = None
    warmup: int | None = None
    tokens: int | None = field(default=None, metadata={"help": "token budget per batch (padded tokens)"})
    lr: float | None = None
    head_lr_scale: float | None = field(default=None, metadata={"help": "learning rate of W / of the body"})
    optimizer: str | None = None
    schedule: str | None = field(default=None, metadata={"help": "inverse_sqrt | linear | cosine | constant"})
    warm_start: bool | None = field(default=None, metadata={"help": "initialise W by ridge least squares"})
    grad_accum: int = 1
    eval_every: int = 200
    save_every: int = 200
    patience: int = field(default=0, metadata={"help": "evaluations without improvement before stopping; 0 = off"})
    keep_best: bool = field(default=True, metadata={"help": "write the weights of the best validation, not the last"})
    train_embeddings: bool = False
    max_valid: int = field(default=2000, metadata={"help": "validation prompts used per evaluation"})
    ridge_examples: int = field(default=4096, metadata={"help": "training prompts the warm start's W is fitted on"})
    bf16: bool = field(default=False, metadata={"help": "bfloat16 autocast for the forward pass (AMX CPUs, GPUs)"})
    gradient_checkpointing: bool = field(default=False, metadata={"help": "recompute the body's activations in "
                                                                  "the backward pass: less memory, more time"})
    device: str | None = field(default=None, metadata={"help": "cpu | cuda | cuda:N (default: cuda when present)"})
    seed: int = 0
    trust_remote_code: bool = False

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise DefembError(f"unknown --preset '{self.preset}'; choose one of {', '.join(PRESETS)}")
        for key, value in PRESETS[self.preset].items():
            if getattr(self, key) is None:
                setattr(self, key, value)
        if self.objective not in ("mimic", "lm"):
            raise DefembError(f"unknown --objective '{self.objective}'; choose mimic or lm")
        if not 0 <= self.contrast < math.inf:
            raise DefembError(f"--contrast must be a number ≥ 0 (got {self.contrast})")
        if self.contrast and self.objective != "mimic":
            raise DefembError("--contrast adds to the mimicking loss; it does not apply to --objective lm")
        if not 0 <= self.token_weight <= 1:
            raise DefembError(f"--token-weight must be in [0, 1] (got {self.token_weight})")
        if self.head not in HEADS:
            raise DefembError(f"unknown --head '{self.head}'; choose one of {', '.join(HEADS)}")
        if self.table == "output":
            raise DefembError("--table output: DefinitionEMB rebuilds input tables (tied heads follow them)")
        _check_table(self.table)
        for name in ("steps", "tokens", "grad_accum", "eval_every", "save_every", "max_valid", "ridge_examples"):
            _check_positive(name.replace("_", "-"), getattr(self, name))
        for name in ("warmup", "patience", "seed"):  # seeds feed numpy generators, which refuse negatives
            _check_positive(name, getattr(self, name), minimum=0)
        if self.optimizer not in ("adam", "adafactor") or self.schedule not in SCHEDULES:
            raise DefembError(f"unknown optimizer/schedule {self.optimizer}/{self.schedule}")
        if self.device is not None and not re.fullmatch(r"cpu|cuda(:[0-9]+)?", self.device):
            raise DefembError(f"--device '{self.device}': use cpu, cuda or cuda:N")
        for name in ("lr", "head_lr_scale"):
            if not 0 < getattr(self, name) < math.inf:
                raise DefembError(f"--{name.replace('_', '-')} must be a positive number (got {getattr(self, name)})")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
