"""Replacement before fine-tuning (METHOD §9): choose the tokens, blend in their definition rows, write a checkpoint.

V_task is the set of ranked (non-special) vocabulary tokens that occur in the task's training text. It is
ordered by the model's frequency ranking (§3) and, of the V_task tokens that have a definition row, the
last (rarest) min(⌊α % · |V|⌋, |V_task|) are replaced, |V| being the number of ranked tokens. ``--all``
replaces every ranked token that has a row. Special tokens are never replaced. That is ``--select
frequency`` (the paper's rule); ``--select degenerate`` replaces instead the V_task rows (every ranked
row without ``--task-data``) whose pretrained neighbours are degenerate (`defemb.calibrate`), whatever
their frequency, and ``--select both`` the union. Numbers are replaced where the selection picks them
(``--numbers within``, the paper's rule); ``--numbers all`` adds every numeric token with a row, frequent
ones included, so the number rows are rebuilt as one consistent set.

What is written: the definition row, optionally mapped toward the pretrained table by a cross-fitted linear map
(``--refit linear``) and with its band's spread restored (``--spread``), blended
with the pretrained row by one λ (``--blend λ``) or by a λ per row from a measured reliability
(``--blend auto``); the maths and its reasons are in `defemb.calibrate`. ``replaced.tsv`` lists per row
the band, ‖old − new‖, cos(old, new), λ and the degeneracy share of the pretrained row.

Which text a task file contributes (so labels, ids and scores do not count as task vocabulary):

* ``.tsv`` / ``.csv`` (first row is a header; ``.tsv`` is read without quoting, like GLUE): the columns whose
  name contains one of `TEXT_COLUMN_WORDS` (case-insensitive: ``sentence1``, ``#1 String``, ``article``...);
  if no name matches, every column whose non-empty values in the first `SNIFF_ROWS` rows are mostly
  (more than half) not numbers;
* ``.jsonl``: every string value of every record, nested ones included (keys are not text);
* any other file: every line.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import numbers
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from defemb.analysis.analyze import vocabulary
from defemb.analysis.numbers import numeric_tokens
from defemb.analysis.projection import printable
from defemb.calibrate import DEGENERATE_SHARE, REFITS, SPREADS, calibrate, degeneracy
from defemb.embeddings import EMBEDDING_TABLES, DefinitionEmbeddings, load_embeddings
from defemb.errors import DefembError, check_text_file, quote
from defemb.frequency import Ranking, encoder, parse_method, rank_tokens
from defemb.models import LoadedModel, get_table, load_model, save_model, set_table, tying, vocabulary_hash
from defemb.outputs import atomic_dir, check_writable, write_json_atomic, write_text_atomic

TEXT_COLUMN_WORDS = (
    "sentence", "string", "text", "article", "document", "highlights", "summary", "question", "premise", "hypothesis",
)  # fmt: skip
SNIFF_ROWS = 1000
_BATCH = 2048
# Articles in summarisation CSVs exceed the csv module's default 128 KiB field limit.
_FIELD_LIMIT = 2**31 - 1
SELECTIONS = ("frequency", "degenerate", "both")
NUMBERS = ("within", "all")
AUTO = "auto"
_TASK_IDS: dict[tuple, np.ndarray] = {}


@dataclass
class ReplaceConfig:
    """Settings of `defemb replace`."""

    model: str = field(metadata={"help": "local HF directory, hub name, or the alias 'minilm'"})
    embeddings: str = field(metadata={"help": "definition-embeddings file written by `defemb embed`"})
    task_data: list[str] = field(default_factory=list, metadata={"help": "task training files (V_task)"})
    alpha: float | None = field(default=None, metadata={"help": "percent of |V| to replace, in (0, 100]"})
    all_tokens: bool = field(default=False, metadata={"help": "replace every token that has a row"})
    select: str = field(default="frequency", metadata={"help": "frequency (α / --all) | degenerate | both"})
    blend: float | str = field(default=1.0, metadata={"help": "λ in [0, 1], or 'auto' (per row, from reliability)"})
    spread: str = field(default="none", metadata={"help": "none | scale | directions: per-band spread calibration"})
    refit: str = field(default="none", metadata={"help": "none | linear: cross-fitted linear map toward the table"})
    numbers: str = field(default="within", metadata={"help": "within (numbers as the selection picks them) | all"})
    ranking: str | None = field(default=None, metadata={"help": "index | wordfreq | corpus:PATH"})
    table: str | None = field(default=None, metadata={"help": "input | encoder | decoder (default: the file's)"})
    trust_remote_code: bool = False

    def __post_init__(self) -> None:
        if self.ranking is not None:
            parse_method(self.ranking)
        if self.table is not None and self.table not in EMBEDDING_TABLES:
            choices = ", ".join(EMBEDDING_TABLES)
            raise DefembError(f"--table {quote(self.table)} cannot be replaced; choose one of {choices}")
        self.blend = _blend_value(self.blend)
        for name, value, choices in (("select", self.select, SELECTIONS), ("spread", self.spread, SPREADS),
                                     ("numbers", self.numbers, NUMBERS), ("refit", self.refit, REFITS)):
            if value not in choices:
                raise DefembError(f"--{name} {quote(str(value))} is not one of {', '.join(choices)}")
        if self.select == "degenerate":
            if self.all_tokens or self.alpha is not None:
                raise DefembError("--select degenerate chooses rows by their neighbours; drop --alpha / --all "
                                  "(or use --select both)")
            return
        if self.all_tokens:
            if self.alpha not in (None, 100):
                raise DefembError(f"--all replaces every token with a row; drop --alpha {self.alpha} (or use 100)")
            return
        if self.alpha is None:
            raise DefembError("give --alpha (percent of the vocabulary to replace) or --all")
        if not 0.0 < self.alpha <= 100.0:
            raise DefembError(f"--alpha must be in (0, 100] (got {self.alpha})")
        if not self.task_data:
            raise DefembError("--alpha needs --task-data (the task's training text); or pass --all")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _blend_value(blend: float | str) -> float | str:
    """A number in [0, 1] or 'auto'; the CLI hands over the text the user typed."""
    if blend == AUTO:
        return AUTO
    try:
        value = float(blend)
    except (TypeError, ValueError):
        raise DefembError(f"--blend {quote(str(blend))} is neither a number in [0, 1] nor 'auto'") from None
    if not 0.0 <= value <= 1.0:  # also rejects NaN
        raise DefembError(f"--blend must be in [0, 1] or 'auto' (got {blend})")
    return value

def text_columns(header: list[str], rows: list[list[str]]) -> list[int]:
    """Indices of the text columns of a table (rule in the module docstring)."""
    named = [i for i, name in enumerate(header) if any(word in name.lower() for word in TEXT_COLUMN_WORDS)]
    if named:
        return named
    textual = []
    for i in range(len(header)):
        values = [row[i] for row in rows if i < len(row) and row[i].strip()]
        if values and sum(not _is_number(v) for v in values) > len(values) / 2:
            textual.append(i)
    return textual


def _is_number(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def _tabular_texts(path: Path) -> Iterator[str]:
    csv.field_size_limit(max(csv.field_size_limit(), _FIELD_LIMIT))
    tsv = path.suffix.lower() == ".tsv"
    with open(path, encoding="utf-8", errors="replace", newline="") as handle:
        if tsv:  # GLUE-style TSVs hold unbalanced quotes inside sentences: no quoting at all
            rows = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        else:
            rows = csv.reader(handle)
        header = next(rows, None)
        if header is None:
            return
        head = list(itertools.islice(rows, SNIFF_ROWS))
        columns = text_columns(header, head)
        if not columns:
            names = quote("\t".join(header) if tsv else ",".join(header))
            raise DefembError(f"{path}: no text column (header {names}); name one like 'sentence' or 'text'")
        for row in itertools.chain(head, rows):
            yield from (row[i] for i in columns if i < len(row) and row[i])


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _jsonl_texts(path: Path) -> Iterator[str]:
    with open(path, encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                why = f"not valid JSON ({exc.msg}); .jsonl needs one record a line"
                raise DefembError(f"{path}:{number}: {why}") from exc
            yield from _strings(record)


def _line_texts(path: Path) -> Iterator[str]:
    with open(path, encoding="utf-8", errors="replace") as handle:
        yield from (line.rstrip("\n") for line in handle if line.strip())


def task_texts(path: str | Path) -> Iterator[str]:
    """The text of one task file, streamed."""
    path = Path(path)
    check_text_file(path, "task data")
    suffix = path.suffix.lower()
    if suffix in (".tsv", ".csv"):
        return _tabular_texts(path)
    if suffix == ".jsonl":
        return _jsonl_texts(path)
    return _line_texts(path)


def _batches(texts: Iterable[str], size: int) -> Iterator[list[str]]:
    iterator = iter(texts)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


def task_token_ids(tokenizer, paths: list[str], limit: int) -> np.ndarray:
    """Sorted ids (< ``limit``) of every token the tokenizer produces on the task files. # (n,)

    Remembered for the process (keyed by vocabulary and each file's size and mtime): tokenizing a large
    task file takes minutes, and `defemb run` chooses rows twice from the same file.
    """
    key = (vocabulary_hash(tokenizer), limit, tuple((str(p), Path(p).stat().st_size, Path(p).stat().st_mtime_ns)
                                                     for p in paths))
    if key not in _TASK_IDS:
        _TASK_IDS[key] = _tokenize_task(tokenizer, paths, limit)
    return _TASK_IDS[key].copy()


def _tokenize_task(tokenizer, paths: list[str], limit: int) -> np.ndarray:
    seen = np.zeros(limit, dtype=bool)
    encode = encoder(tokenizer)
    # disable=None: a bar on a terminal only, so logs and a failing run's stderr keep to the error line
    with tqdm(desc="task data", unit=" texts", smoothing=0.1, disable=None) as progress:
        for path in paths:
            for batch in _batches(task_texts(path), _BATCH):
                flat = np.fromiter(itertools.chain.from_iterable(encode(batch)), dtype=np.int64)
                seen[flat[flat < limit]] = True
                progress.update(len(batch))
    return np.flatnonzero(seen).astype(np.int64)


def replacement_count(alpha: numbers.Real, n_vocab: int, n_task: int) -> int:
    """min(⌊α % · |V|⌋, |V_task|); α read as the decimal the user typed, so 7 % of 500 is exactly 35.

    Any real number type works (int, float, Fraction, Decimal, numpy scalars): exact types are taken as
    they are, floats by their shortest decimal (repr of a numpy scalar is 'np.float64(7.0)', not a number).
    """
    exact = Fraction(alpha) if isinstance(alpha, (numbers.Rational, Decimal)) else Fraction(repr(float(alpha)))
    return min(math.floor(exact * int(n_vocab) / 100), int(n_task))


def select_ids(order: np.ndarray, row_ids: np.ndarray, task_ids: np.ndarray | None, alpha: float | None) -> np.ndarray:
    """Ids to replace, in ranking order (most frequent first).

    ``order``: ranked non-special ids; ``row_ids``: ids with a definition row. ``alpha`` None (``--all``):
    every ranked id with a row; otherwise the last ``replacement_count`` ranked ``task_ids`` with a row.
    """
    if alpha is None:
        return order[np.isin(order, row_ids)]
    task_ranked = order[np.isin(order, task_ids)]
    candidates = task_ranked[np.isin(task_ranked, row_ids)]
    k = replacement_count(alpha, len(order), len(task_ranked))
    return candidates[max(len(candidates) - k, 0) :]


def blend_rows(old: np.ndarray, new: np.ndarray, blend: float | np.ndarray) -> np.ndarray:
    """(1−λ)·old + λ·new with one λ or one per row, exact at λ = 0 and λ = 1. # (n, h)"""
    blend = np.asarray(blend, dtype=np.float64)
    if blend.ndim == 1:
        blend = blend[:, None]
    return ((1.0 - blend) * old + blend * new).astype(old.dtype)


def row_changes(old: np.ndarray, new: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """‖old − new‖ and cos(old, new) per row (NaN cosine where a row is zero). # (n,), (n,)"""
    old64, new64 = old.astype(np.float64), new.astype(np.float64)
    norm_diff = np.linalg.norm(old64 - new64, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        cosine = (old64 * new64).sum(axis=1) / (np.linalg.norm(old64, axis=1) * np.linalg.norm(new64, axis=1))
    return norm_diff, cosine


def _check_inputs(config: ReplaceConfig) -> None:
    """Missing files are reported before the (slow) model load."""
    if not Path(config.embeddings).is_file():
        raise DefembError(f"definition-embeddings file '{config.embeddings}' does not exist")
    for path in config.task_data:
        if not Path(path).is_file():
            raise DefembError(f"task data file '{path}' does not exist")


def _check_match(loaded: LoadedModel, definitions: DefinitionEmbeddings, path: str, E: np.ndarray, table: str) -> None:
    model_hash = vocabulary_hash(loaded.tokenizer)
    file_hash = definitions.metadata["vocab_hash"]
    if file_hash != model_hash:
        raise DefembError(
            f"{path} was made for another vocabulary (vocab_hash {file_hash[:12]}…, model "
            f"'{definitions.metadata['model']}') than {loaded.name}'s tokenizer (vocab_hash {model_hash[:12]}…)"
        )
    if definitions.hidden_size != E.shape[1]:
        raise DefembError(
            f"{path} has rows of dimension {definitions.hidden_size}, {loaded.name}'s {table} table has {E.shape[1]}"
        )
    too_large = definitions.token_ids[definitions.token_ids >= E.shape[0]]
    if len(too_large):
        raise DefembError(f"{path}: token id {int(too_large[0])} is beyond the {table} table's {E.shape[0]} rows")


@dataclass
class Replacement:
    """What `replace` writes into a table, before it is written."""

    ids: np.ndarray  # (n,) replaced ids, most frequent first
    old: np.ndarray = field(repr=False)  # (n, h) pretrained rows
    new: np.ndarray = field(repr=False)  # (n, h) rows written
    blend: np.ndarray = field(repr=False)  # (n,) λ per row
    degeneracy: np.ndarray = field(repr=False)  # (n,) share of junk neighbours of the pretrained row
    ranking: Ranking = field(repr=False)
    tokens: list[str] = field(repr=False)
    task_ids: np.ndarray | None = field(repr=False)
    notes: dict[str, Any] = field(default_factory=dict)  # calibration and selection facts for defemb.json


def _selected(config: ReplaceConfig, E: np.ndarray, ranking: Ranking, tokens: list[str], row_ids: np.ndarray,
              task_ids: np.ndarray | None) -> tuple[np.ndarray, dict[int, float]]:
    """Ids to replace (ranking order) and the degeneracy of every id measured on the way."""
    order = ranking.order
    ids = np.zeros(0, dtype=np.int64)
    if config.select in ("frequency", "both"):
        ids = select_ids(order, row_ids, task_ids, None if config.all_tokens else config.alpha)
    measured: dict[int, float] = {}
    if config.select in ("degenerate", "both"):
        pool = order[np.isin(order, row_ids)]
        if task_ids is not None:
            pool = pool[np.isin(pool, task_ids)]
        shares = degeneracy(E, pool, order, tokens)
        measured = dict(zip(pool.tolist(), shares.tolist(), strict=True))
        ids = np.union1d(ids, pool[shares >= DEGENERATE_SHARE])
    if config.numbers == "all":
        # Number rows are judged by their order among each other: half old, half rebuilt rows scramble it.
        ids = np.union1d(ids, numeric_tokens(tokens, row_ids)[0])
    ids = order[np.isin(order, ids)]
    missing = [int(i) for i in ids if int(i) not in measured]
    measured.update(zip(missing, degeneracy(E, np.array(missing, dtype=np.int64), order, tokens).tolist(),
                        strict=True))
    return ids, measured


def _calibrated(config: ReplaceConfig, E: np.ndarray, ranking: Ranking, definitions: DefinitionEmbeddings
                ) -> tuple[dict[int, int], np.ndarray, np.ndarray, dict[str, Any]]:
    """Position of every ranked id with a row, its calibrated definition row and its λ (`calibrate`)."""
    covered = ranking.order[np.isin(ranking.order, definitions.token_ids)]
    row_of = {int(t): k for k, t in enumerate(definitions.token_ids)}
    rows = definitions.embeddings[[row_of[int(i)] for i in covered]]  # (m, h)
    bands = ranking.band_of(E.shape[0])[covered]
    blend = None if config.blend == AUTO else float(config.blend)
    rows, blends, notes = calibrate(E[covered], rows, bands, config.spread, blend, config.refit)
    return {int(i): k for k, i in enumerate(covered)}, rows, blends, notes


def _vocabulary_facts(config: ReplaceConfig, loaded: LoadedModel, E: np.ndarray
                      ) -> tuple[Ranking, np.ndarray | None, list[str]]:
    """The frequency ranking, the task's token ids (None without ``--task-data``) and the token strings."""
    ranking = rank_tokens(loaded.tokenizer, E.shape[0], config.ranking, loaded.tokenizer_kind)
    task_ids = None
    if config.task_data:
        task_ids = task_token_ids(loaded.tokenizer, config.task_data, max(len(loaded.tokenizer), E.shape[0]))
    return ranking, task_ids, vocabulary(loaded, E.shape[0])


def ids_to_embed(configs: list[ReplaceConfig], covered: np.ndarray) -> np.ndarray:
    """The ids that `replace` with any of ``configs`` (one model) would rebuild if every id in ``covered``
    had a definition row: all a pipeline must embed when it embeds no more than it replaces. # (n,)"""
    loaded = load_model(configs[0].model, trust_remote_code=configs[0].trust_remote_code)
    E = get_table(loaded.model, configs[0].table or "input")  # (V, h)
    chosen = [np.zeros(0, dtype=np.int64)]
    for config in configs:
        ranking, task_ids, tokens = _vocabulary_facts(config, loaded, E)
        chosen.append(_selected(config, E, ranking, tokens, np.asarray(covered), task_ids)[0])
    return np.unique(np.concatenate(chosen))


def plan(config: ReplaceConfig, loaded: LoadedModel, E: np.ndarray, definitions: DefinitionEmbeddings) -> Replacement:
    """Choose the rows and compute what is written into them; ``E`` (V, h) is not changed."""
    ranking, task_ids, tokens = _vocabulary_facts(config, loaded, E)
    ids, measured = _selected(config, E, ranking, tokens, definitions.token_ids, task_ids)
    position, rows, blends, notes = _calibrated(config, E, ranking, definitions)
    at = [position[int(i)] for i in ids]
    blend = blends[at]
    new = blend_rows(E[ids], rows[at], blend)
    shares = np.array([measured[int(i)] for i in ids])
    # rows found degenerate among those measured: the candidates with --select degenerate|both, else the replaced
    notes["degenerate"] = int((np.array(list(measured.values())) >= DEGENERATE_SHARE).sum())
    return Replacement(ids, E[ids], new, blend, shares, ranking, tokens, task_ids, notes)


def _replaced_tsv(plan_: Replacement, bands: np.ndarray) -> str:
    norm, cos = row_changes(plan_.old, plan_.new)
    lines = ["token\tid\tband\tnorm_diff\tcosine\tblend\tdegeneracy"]
    rows = zip(plan_.ids, norm, cos, plan_.blend, plan_.degeneracy, strict=True)
    for i, n, c, b, d in rows:
        lines.append(f"{printable(plan_.tokens[i])}\t{i}\t{bands[i]}\t{n:.7g}\t{c:.7g}\t{b:.4g}\t{d:.2f}")
    return "\n".join(lines) + "\n"


def _load(config: ReplaceConfig) -> tuple[LoadedModel, DefinitionEmbeddings, np.ndarray, str]:
    _check_inputs(config)
    definitions = load_embeddings(config.embeddings)
    table = config.table or definitions.metadata["table"]
    loaded = load_model(config.model, trust_remote_code=config.trust_remote_code)
    E = get_table(loaded.model, table)  # (V, h)
    _check_match(loaded, definitions, config.embeddings, E, table)
    return loaded, definitions, E, table


def replaced_table(config: ReplaceConfig) -> tuple[np.ndarray, Replacement]:
    """The table `replace` would write (nothing is written), with the plan that made it. # (V, h)"""
    loaded, definitions, E, _ = _load(config)
    result = plan(config, loaded, E, definitions)
    E = E.copy()
    E[result.ids] = result.new
    return E, result


def replace(config: ReplaceConfig, out: str | Path, force: bool = False) -> dict:
    """Write a checkpoint whose chosen table has definition rows blended in; returns the summary (defemb.json)."""
    check_writable(out, force)
    loaded, definitions, E, table = _load(config)
    result = plan(config, loaded, E, definitions)
    E[result.ids] = result.new
    set_table(loaded.model, E, table)  # in place, so a tied output head (or shared table) follows

    ranking, task_ids = result.ranking, result.task_ids
    in_task = ranking.order if task_ids is None else ranking.order[np.isin(ranking.order, task_ids)]
    summary = {
        "source_model": loaded.name,
        "embeddings": str(config.embeddings),
        "embeddings_metadata": definitions.metadata,
        "table": table,
        "ranking": ranking.method,
        "vocabulary": len(ranking.order),
        "task_tokens": None if task_ids is None else len(in_task),
        "rows": len(definitions),
        "candidates": int(np.isin(in_task, definitions.token_ids).sum()),
        "replaced": len(result.ids),
        "alpha": None if config.all_tokens or config.select == "degenerate" else config.alpha,
        "all": config.all_tokens,
        "select": config.select,
        "numbers": config.numbers,
        "spread": config.spread,
        "refit": config.refit,
        "blend": config.blend,
        "blend_mean": float(result.blend.mean()) if len(result.ids) else None,
        **result.notes,
        "tying": tying(loaded.model),
        "config": config.to_dict(),
    }
    tsv = _replaced_tsv(result, ranking.band_of(E.shape[0]))
    with atomic_dir(out, force) as tmp:
        save_model(loaded, tmp)
        write_text_atomic(tmp / "replaced.tsv", tsv)
        write_json_atomic(tmp / "defemb.json", summary)
    return summary
