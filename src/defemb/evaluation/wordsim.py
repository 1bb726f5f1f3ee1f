"""Word similarity (METHOD §4): Spearman ρ between human scores and the cosine of static word vectors.

A word's vector is the mean of its tokens' rows in one table of the model (input by default). Words
are tokenized as they appear in running text: byte-level BPE and SentencePiece get a leading space
(``" word"`` -> ``Ġword`` / ``▁word``), WordPiece the bare word. Unknown tokens and bare word-start
markers (``▁`` alone) carry nothing about the word, so they are left out of the mean; a pair is
*covered* when both words keep at least one token, and uncovered pairs are dropped and counted.

Readers accept every layout of the shared word-sim folder: headerless TSVs (word1 word2 score),
SimVerb and SimLex with a header and extra columns (the score column is found by name or as the first
numeric column), MEN's space-separated files (``-n``/``-v``/``-j`` lemma suffixes are stripped) and
the WordSim-353 CSVs.
"""

from __future__ import annotations

import csv
import math
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from defemb.config import SENSES
from defemb.errors import DefembError, quote
from defemb.evaluation.records import RunRecord, error_line, finished, open_out, parse_model_specs, write_record
from defemb.frequency import encoder
from defemb.models import TABLES, get_table, load_model, resolve_model_name
from defemb.tokens import surface

EVALUATOR = "wordsim"
PRIMARY = "mean/spearman"
#: Files in a --sets folder that are documentation, not pairs.
_DOCUMENTS = ("readme", "licen", "instructions")
_SCORE_NAMES = ("score", "simlex999", "human (mean)", "similarity", "relatedness", "rating", "sim", "mean")
_LEMMA = re.compile(r"(.+)-[nvjar]")
_SET_SUFFIXES = (".txt", ".tsv", ".csv")


@dataclass(frozen=True)
class WordPairs:
    """One similarity set: pairs of words with their human score, in file order."""

    name: str
    path: str
    pairs: tuple[tuple[str, str], ...]
    scores: np.ndarray = field(repr=False)  # (n,) float64


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _fields(line: str, is_csv: bool) -> list[str]:
    if is_csv:
        return [f.strip() for f in next(csv.reader([line]))]
    if "\t" in line:
        return [f.strip() for f in line.split("\t")]
    return line.split()


def _score_column(header: list[str] | None, first: list[str] | None) -> int:
    """The header's score column by name, else the first numeric column after the two words (default 3rd)."""
    if header is not None:
        names = [h.strip().lower() for h in header]
        for name in _SCORE_NAMES:
            if name in names[2:]:
                return names.index(name, 2)
    return next((c for c in range(2, len(first or [])) if _number(first[c]) is not None), 2)


def set_name(path: str | Path) -> str:
    """``EN-MC-30.txt`` -> ``EN-MC-30``; names without a known suffix (``MEN_..._form.dev``) stay whole."""
    path = Path(path)
    return path.stem if path.suffix.lower() in _SET_SUFFIXES else path.name


def read_pairs(path: str | Path) -> WordPairs:
    """Read one similarity file of any supported layout; a bad line raises naming file:line:value."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DefembError(f"cannot read similarity file '{path}': {exc}") from None
    is_csv = path.suffix.lower() == ".csv"
    rows = [(no, _fields(line, is_csv)) for no, line in enumerate(text.splitlines(), 1) if line.strip()]
    header = None
    # A header is a first line naming its score column ("word1 word2 score", "w1 w2 pos score wn",
    # "Word 1,Word 2,Human (mean),1,2,..."); any other first line is data, so a bad one is reported.
    if rows and any(f.lower() in _SCORE_NAMES for f in rows[0][1][2:]):
        header = rows.pop(0)[1]
    column = _score_column(header, rows[0][1] if rows else None)
    pairs, scores = [], []
    for no, fields in rows:
        if len(fields) <= column:
            raise DefembError(f"{path}:{no}: too few fields in {quote(' '.join(fields))}: expected the two words and "
                              f"a score in column {column + 1}; fix or remove the line")
        score = _number(fields[column])
        if score is None:
            hint = f" (a header line names its score column: {', '.join(_SCORE_NAMES)})" if no == 1 else ""
            raise DefembError(f"{path}:{no}: score {quote(fields[column])} (column {column + 1}) is not a number; "
                              f"fix or remove the line{hint}")
        pairs.append((fields[0], fields[1]))
        scores.append(score)
    if not pairs:
        raise DefembError(f"{path}: no word pairs found (expected lines 'word1 word2 score')")
    words = [w for pair in pairs for w in pair]
    if all(_LEMMA.fullmatch(w) for w in words):  # MEN lemma form: sun-n, bright-j, run-v
        pairs = [(_LEMMA.fullmatch(a).group(1), _LEMMA.fullmatch(b).group(1)) for a, b in pairs]
    return WordPairs(set_name(path), str(path), tuple(pairs), np.asarray(scores, dtype=np.float64))


def set_files(specs: list[str] | None) -> list[Path]:
    """Files named by --sets (files, or folders whose non-documentation files are all read); default:
    the shared ``word-sim/eval-word-vectors`` folder."""
    if not specs:
        from defemb.evaluation.data import dataset_dir

        specs = [str(dataset_dir("word-sim") / "eval-word-vectors")]
    files: list[Path] = []
    for spec in specs:
        path = Path(spec)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")
                           and not p.name.lower().startswith(_DOCUMENTS))
            if not found:
                raise DefembError(f"--sets folder '{path}' holds no similarity files")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise DefembError(f"--sets '{spec}' is neither a file nor a folder")
    return files


def read_sets(specs: list[str] | None) -> list[WordPairs]:
    sets = [read_pairs(p) for p in set_files(specs)]
    names = [s.name for s in sets]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise DefembError(f"similarity sets must have distinct file names (they name the metrics); repeated: "
                          f"{', '.join(repeated)}")
    return sets


def word_text(word: str, tokenizer_kind: str) -> str:
    """The text a word takes in running text: BPE and SentencePiece mark the preceding space."""
    return " " + word if tokenizer_kind in ("bpe", "sentencepiece") else word


def word_token_ids(tokenizer, tokenizer_kind: str, words: list[str]) -> list[list[int]]:
    """Token ids per word (no special tokens), without unknown tokens and bare word-start markers."""
    encoded = encoder(tokenizer)([word_text(w, tokenizer_kind) for w in words])
    unknown = tokenizer.unk_token_id
    empty: dict[int, bool] = {}

    def keep(token_id: int) -> bool:
        if token_id not in empty:
            empty[token_id] = surface(tokenizer.convert_ids_to_tokens(token_id)) == ""
        return token_id != unknown and not empty[token_id]

    return [[i for i in ids if keep(i)] for ids in encoded]


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman ρ (ties share their mean rank); NaN when fewer than two pairs or a constant side."""
    from scipy.stats import spearmanr

    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if len(x) < 2 or np.all(x == x[0]) or np.all(y == y[0]):
        return float("nan")
    return float(spearmanr(x, y).statistic)


def score_sets(sets: list[WordPairs], vector: Callable[[list[str]], tuple[np.ndarray, np.ndarray]]) -> dict:
    """Metrics for every set; ``vector(words) -> (vectors (n, h), covered (n,) bool)``."""
    metrics: dict[str, float] = {}
    for s in sets:
        words = sorted({w for pair in s.pairs for w in pair})
        vectors, covered = vector(words)
        index = {w: k for k, w in enumerate(words)}
        a = np.array([index[p[0]] for p in s.pairs])
        b = np.array([index[p[1]] for p in s.pairs])
        keep = covered[a] & covered[b]
        va, vb = vectors[a[keep]], vectors[b[keep]]  # (m, h)
        norms = np.maximum(np.linalg.norm(va, axis=1) * np.linalg.norm(vb, axis=1), 1e-12)
        cosines = np.einsum("ij,ij->i", va, vb) / norms
        rho = spearman(s.scores[keep], cosines)
        metrics[f"{s.name}/pairs"] = int(keep.sum())
        metrics[f"{s.name}/coverage"] = float(keep.mean())
        if not math.isnan(rho):
            metrics[f"{s.name}/spearman"] = rho
    rhos = [v for k, v in metrics.items() if k.endswith("/spearman")]
    if not rhos:
        raise DefembError("no similarity set has two covered pairs with varying scores: Spearman is undefined")
    metrics[PRIMARY] = float(np.mean(rhos))
    return metrics


def table_vectors(E: np.ndarray, tokenizer, tokenizer_kind: str):
    """``vector`` for `score_sets`: mean of the words' token rows of table E. # (V, h) -> (n, h)"""

    def vector(words: list[str]) -> tuple[np.ndarray, np.ndarray]:
        ids = word_token_ids(tokenizer, tokenizer_kind, words)
        vectors = np.zeros((len(words), E.shape[1]), dtype=np.float64)
        covered = np.zeros(len(words), dtype=bool)
        for k, token_ids in enumerate(ids):
            token_ids = [i for i in token_ids if i < E.shape[0]]
            if token_ids:
                vectors[k] = E[token_ids].astype(np.float64).mean(axis=0)
                covered[k] = True
        return vectors, covered

    return vector


@dataclass
class WordsimConfig:
    """Settings of `defemb evaluate wordsim`."""

    models: list[str] = field(metadata={"help": "LABEL=PATH or PATH (dir, hub name, minilm)"})
    sets: list[str] | None = field(default=None, metadata={"help": "files or folders; default eval-word-vectors"})
    table: str = field(default="input", metadata={"help": "input | encoder | decoder | output"})
    trust_remote_code: bool = False
    add_tokens: str | None = field(default=None, metadata={
        "help": "a `defemb extend` checkpoint or a training run: score its new words initialised four ways"})
    sources: list[str] = field(default_factory=lambda: ["gcide"],
                               metadata={"help": "definitions of the new words when add_tokens is a run"})
    min_pairs: int = field(default=20, metadata={"help": "pairs with a new word a set needs to be scored on them"})
    senses: int = field(default=SENSES, metadata={"help": "definitions averaged per new word when add_tokens is a run"})

    def __post_init__(self) -> None:
        if self.table not in TABLES:
            raise DefembError(f"unknown --table '{self.table}'; choose one of {', '.join(TABLES)}")
        if self.add_tokens is not None:
            if self.models:
                raise DefembError("--add-tokens scores one model's new words four ways; leave out --models")
            if self.min_pairs < 2:
                raise DefembError(f"--min-pairs must be at least 2 (got {self.min_pairs})")
            if self.senses < 1:
                raise DefembError(f"--senses must be at least 1 (got {self.senses})")
        elif not self.models:
            raise DefembError("--models: name at least one model (or --add-tokens RUN|CHECKPOINT)")


def run_wordsim(config: WordsimConfig, out: str | Path, force: bool = False) -> list[RunRecord]:
    """One record per model under OUT; every input is read and checked before the first model loads."""
    if config.add_tokens is not None:
        return run_added_words(config, out, force)
    specs = parse_model_specs(config.models)
    for spec in specs:
        resolve_model_name(spec.path)
    sets = read_sets(config.sets)
    settings = {**asdict(config), "sets": [s.path for s in sets]}
    open_out(out, settings, force, free=("models", "trust_remote_code"), what=EVALUATOR)
    records = []
    for spec in tqdm(specs, desc="wordsim", unit="model"):
        if finished(out, spec.label, None):
            continue
        start = time.perf_counter()
        run_config = {**settings, "models": [f"{spec.label}={spec.path}"]}
        base = dict(evaluator=EVALUATOR, task=EVALUATOR, model=spec.path, label=spec.label, seed=None,
                    primary=PRIMARY, config=run_config)
        try:
            loaded = load_model(spec.path, trust_remote_code=config.trust_remote_code)
            E = get_table(loaded.model, config.table)
            metrics = score_sets(sets, table_vectors(E, loaded.tokenizer, loaded.tokenizer_kind))
            record = RunRecord(**base, metrics=metrics, wall_s=time.perf_counter() - start)
        except Exception as exc:  # one model failing must not stop the others; its record says why
            record = RunRecord(**base, status="failed", error=error_line(exc), wall_s=time.perf_counter() - start)
        write_record(out, record)
        records.append(record)
    return records


PRIMARY_NEW = "new/mean/spearman"


def new_word_pairs(sets: list[WordPairs], new: set[str], key: Callable[[str], str], min_pairs: int) -> list[WordPairs]:
    """Per set, the pairs holding at least one new word (sets with fewer than ``min_pairs`` are left out)."""
    subsets = []
    for s in sets:
        keep = [k for k, (a, b) in enumerate(s.pairs) if key(a) in new or key(b) in new]
        if len(keep) >= min_pairs:
            subsets.append(WordPairs(f"{s.name}/new", s.path, tuple(s.pairs[k] for k in keep), s.scores[keep]))
    return subsets


def added_word_scores(ext, sets: list[WordPairs], min_pairs: int) -> dict[str, dict[str, float]]:
    """initialisation name -> metrics of the extension's new words (`run_added_words`): every set on all its
    pairs, and on the pairs holding a new word (``SET/new/...``, ``new/mean/spearman``)."""
    from defemb.extend import initialisations, normaliser

    tokenizer = ext.base.tokenizer
    key = normaliser(tokenizer)
    index = {w: k for k, w in enumerate(ext.words)}
    subsets = new_word_pairs(sets, set(index), key, min_pairs)
    plain = table_vectors(get_table(ext.base.model, ext.table), tokenizer, ext.base.tokenizer_kind)
    scores = {}
    for name, rows in initialisations(ext).items():
        def vector(words: list[str], rows: np.ndarray = rows) -> tuple[np.ndarray, np.ndarray]:
            vectors, covered = plain(words)
            for k, word in enumerate(words):
                if key(word) in index:
                    vectors[k], covered[k] = rows[index[key(word)]], True
            return vectors, covered

        metrics = score_sets(sets, vector)
        if subsets:
            new = score_sets(subsets, vector)
            metrics |= {k: v for k, v in new.items() if k != PRIMARY} | {PRIMARY_NEW: new[PRIMARY]}
        scores[name] = metrics | {"new/words": len(ext.words)}
    return scores


def run_added_words(config: WordsimConfig, out: str | Path, force: bool = False) -> list[RunRecord]:
    """One record per initialisation of the new words (`defemb.extend.INITIALISATIONS`): every set on all its
    pairs, and on the pairs holding a new word (``SET/new/...``, primary ``new/mean/spearman``). Words that
    were not added keep the mean of their token rows, the same in every record."""
    from defemb.extend import ADDED_FILE, extension_from_checkpoint, extension_from_run

    path = Path(config.add_tokens)
    if not (path / ADDED_FILE).is_file() and not (path / "head.safetensors").is_file():
        raise DefembError(f"--add-tokens '{path}' is neither a `defemb extend` checkpoint (added.tsv) nor a "
                          "finished training run (head.safetensors)")
    sets = read_sets(config.sets)
    settings = {**asdict(config), "sets": [s.path for s in sets]}
    open_out(out, settings, force, free=("trust_remote_code",), what=EVALUATOR)
    start = time.perf_counter()
    if (path / ADDED_FILE).is_file():
        ext = extension_from_checkpoint(path, config.trust_remote_code)
    else:
        words = sorted({w for s in sets for pair in s.pairs for w in pair})
        ext = extension_from_run(path, words, config.sources, config.trust_remote_code, config.senses)
    records = []
    for name, metrics in added_word_scores(ext, sets, config.min_pairs).items():
        record = RunRecord(evaluator=EVALUATOR, task=EVALUATOR, model=str(path), label=name, seed=None,
                           primary=PRIMARY_NEW if PRIMARY_NEW in metrics else PRIMARY, config=settings, metrics=metrics,
                           wall_s=time.perf_counter() - start)
        write_record(out, record)
        records.append(record)
    return records
