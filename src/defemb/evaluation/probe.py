"""Numeric probe (paper Table 7, App. B.3; METHOD §4): do a frozen model's last-layer states still say
which words are numbers?

A logistic-regression probe reads the last hidden state of an input word (mean over its tokens; the
encoder's last layer for encoder-decoders) and predicts one of three classes: numeric < 1000, numeric
≥ 1000, other. It is trained on dictionary headwords and the numbers 0-1999 written as digits (split
9:1 into train and valid) and tested on rare vocabulary tokens: as many rare numeric as rare
non-numeric tokens (the paper: 78 + 78), each fed alone as a word-initial token. No test token's
text is a train or valid word.

The word lists depend only on the tokenizer, the ranking and the seed, so every model of one
tokenizer is probed on the same words in the same order (the records' ``per_example`` lists are
paired).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from defemb.errors import DefembError, check_text_file, quote
from defemb.evaluation.records import (
    RunRecord,
    error_line,
    finished,
    open_out,
    parse_model_specs,
    parse_seeds,
    run_dir,
    write_record,
)
from defemb.evaluation.wordsim import word_text
from defemb.frequency import encoder, parse_method, rank_tokens
from defemb.models import LoadedModel, input_table, load_model, resolve_model_name, vocabulary_hash
from defemb.outputs import write_text_atomic
from defemb.seeding import seed_everything
from defemb.tokens import integer_value, special_frame, surface

EVALUATOR = "probe"
PRIMARY = "test/accuracy"
LABELS = ("numeric<1000", "numeric>=1000", "other")
SMALL, LARGE, OTHER = 0, 1, 2
NUMBERS = range(2000)  # train/valid numbers, written as digits (paper: [0, 1999])
#: Word-initial forms: the test token stands for a whole word, as the training words do.
_WORD_START = {"bpe": "Ġ", "sentencepiece": "▁"}


def label_of(text: str) -> int:
    value = integer_value(text)
    if value is None:
        return OTHER
    return SMALL if value < 1000 else LARGE


@dataclass
class ProbeData:
    """What one (tokenizer, seed) is probed on: words for train/valid, token ids for test."""

    train_words: list[str]
    train_labels: np.ndarray  # (n_train,) int
    valid_words: list[str]
    valid_labels: np.ndarray
    test_ids: list[int]  # numeric tokens by id, then the others by id
    test_tokens: list[str]
    test_labels: np.ndarray


def dictionary_words() -> list[str]:
    """GCIDE headwords that are one alphabetic word, sorted (the pool of 'other' training words)."""
    from defemb.dictionaries import SkipLog, read_gcide

    return sorted({e.word for e in read_gcide(SkipLog()) if e.word.isascii() and e.word.isalpha()})


def candidate_tokens(tokenizer, tokenizer_kind: str, n_rows: int, ranking: str | None) -> tuple[list[int], list[int]]:
    """Rare word-initial tokens: (numeric ids, alphabetic ids), both sorted."""
    limit = min(len(tokenizer), n_rows)
    rare = rank_tokens(tokenizer, limit, ranking, tokenizer_kind).bands["rare"]
    marker = _WORD_START.get(tokenizer_kind)
    numeric, other = [], []
    for token_id in sorted(int(i) for i in rare):
        token = tokenizer.convert_ids_to_tokens(token_id)
        if (marker and not token.startswith(marker)) or (tokenizer_kind == "wordpiece" and token.startswith("##")):
            continue
        if integer_value(token) is not None:
            numeric.append(token_id)
        elif surface(token).isalpha():
            other.append(token_id)
    return numeric, other


def build_probe_data(tokenizer, candidates: tuple[list[int], list[int]], words: list[str], seed: int,
                     n_test: int = 78, n_other: int = 1000, valid_share: float = 0.1) -> ProbeData:
    """Draw the test tokens from `candidate_tokens`, then the train/valid words that do not overlap them
    (all from ``seed``)."""
    rng = seed_everything(seed)
    numeric, other = candidates
    n = min(n_test, len(numeric), len(other))
    if n == 0:
        raise DefembError(f"the rare band has {len(numeric)} word-initial numeric and {len(other)} alphabetic "
                          "tokens: the probe needs some of each (try another --ranking)")
    numeric = sorted(int(i) for i in rng.choice(numeric, size=n, replace=False))
    other = sorted(int(i) for i in rng.choice(other, size=n, replace=False))
    test_ids = numeric + other
    test_tokens = tokenizer.convert_ids_to_tokens(test_ids)
    taken = {surface(t).lower() for t in test_tokens}
    taken |= {str(integer_value(t)) for t in test_tokens if integer_value(t) is not None}
    pool = [w for w in dict.fromkeys(words) if w.lower() not in taken and integer_value(w) is None]
    if not pool:
        raise DefembError("no dictionary word is left for the 'other' class after removing the test tokens")
    chosen = [pool[i] for i in sorted(rng.choice(len(pool), size=min(n_other, len(pool)), replace=False))]
    numbers = [str(v) for v in NUMBERS if str(v) not in taken]
    train: list[str] = []
    valid: list[str] = []
    for group in (numbers, chosen):  # split each kind 9:1, so both sets see numbers and words
        order = rng.permutation(len(group))
        cut = round(valid_share * len(group))
        valid += [group[i] for i in order[:cut]]
        train += [group[i] for i in order[cut:]]
    seen = {w.lower() for w in train + valid}
    overlap = seen & {surface(t).lower() for t in test_tokens}
    assert not overlap, f"probe train/valid words overlap the test tokens: {sorted(overlap)[:5]}"
    return ProbeData(train, _labels(train), valid, _labels(valid), test_ids, test_tokens, _labels(test_tokens))


def _labels(words: list[str]) -> np.ndarray:
    return np.array([label_of(w) for w in words], dtype=np.int64)


@torch.inference_mode()
def word_states(loaded: LoadedModel, words: list[list[int]], batch_size: int = 64, desc: str = "states") -> np.ndarray:
    """Last-layer state of each word, fed alone between the usual specials, mean over its tokens. # (n, h)"""
    before, after = special_frame(loaded.tokenizer)
    pad = loaded.tokenizer.pad_token_id if loaded.tokenizer.pad_token_id is not None else 0
    body = loaded.model.get_encoder() if loaded.kind == "encoder-decoder" else loaded.model.base_model
    device = next(loaded.model.parameters()).device
    order = sorted(range(len(words)), key=lambda k: len(words[k]))  # similar lengths share a batch
    out: list[np.ndarray] = [np.empty(0)] * len(words)
    for start in tqdm(range(0, len(order), batch_size), desc=desc, unit="batch", leave=False):
        chunk = order[start : start + batch_size]
        seqs = [before + words[k] + after for k in chunk]
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), pad, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        span = torch.zeros((len(seqs), width), dtype=torch.float32)  # 1 on the word's own tokens
        for row, (k, seq) in enumerate(zip(chunk, seqs, strict=True)):
            ids[row, : len(seq)] = torch.tensor(seq)
            mask[row, : len(seq)] = 1
            span[row, len(before) : len(before) + len(words[k])] = 1.0
        hidden = body(input_ids=ids.to(device), attention_mask=mask.to(device)).last_hidden_state.float().cpu()
        means = (hidden * span[..., None]).sum(1) / span.sum(1, keepdim=True)  # (B, h)
        for row, k in enumerate(chunk):
            out[k] = means[row].numpy()
    return np.stack(out)


def fit_probe(X_train: np.ndarray, y_train: np.ndarray, X_valid: np.ndarray, y_valid: np.ndarray,
              X_test: np.ndarray, y_test: np.ndarray, seed: int) -> tuple[dict[str, float], np.ndarray]:
    """Standardise, fit a multinomial logistic regression, score; returns (metrics, test predictions)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, random_state=seed))
    probe.fit(X_train, y_train)
    predicted = probe.predict(X_test)
    correct = predicted == y_test
    numeric = y_test != OTHER
    metrics = {
        "test/accuracy": float(correct.mean()),
        "valid/accuracy": float((probe.predict(X_valid) == y_valid).mean()),
        "train/accuracy": float((probe.predict(X_train) == y_train).mean()),
    }
    for name, part in (("numeric", numeric), ("other", ~numeric)):
        if part.any():  # a class absent from the test set has no accuracy, rather than a made-up 0
            metrics[f"test/accuracy_{name}"] = float(correct[part].mean())
    return metrics, predicted


@dataclass
class ProbeConfig:
    """Settings of `defemb evaluate probe`."""

    models: list[str] = field(metadata={"help": "LABEL=PATH or PATH (dir, hub name, minilm)"})
    seeds: list[int] = field(default_factory=lambda: [0])
    n_test: int = field(default=78, metadata={"help": "rare numeric and as many rare other test tokens"})
    n_other: int = field(default=1000, metadata={"help": "dictionary words drawn for the 'other' class"})
    words: str | None = field(default=None, metadata={"help": "file of words (one a line) instead of GCIDE"})
    ranking: str | None = field(default=None, metadata={"help": "index | wordfreq | corpus:PATH"})
    batch_size: int = 64
    trust_remote_code: bool = False

    def __post_init__(self) -> None:
        if not self.models:
            raise DefembError("--models: name at least one model")
        for name in ("n_test", "n_other", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise DefembError(f"--{name.replace('_', '-')} must be a positive whole number (got {value!r})")
        if self.ranking is not None:
            parse_method(self.ranking)
        if self.words is not None and not Path(self.words).is_file():
            raise DefembError(f"--words file '{self.words}' does not exist")


def read_words(path: str | Path) -> list[str]:
    """One word a line; blank lines and '#' comments skipped; a line with whitespace is an error."""
    check_text_file(path, "--words file")
    words = []
    for no, line in enumerate(Path(path).read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        word = line.strip()
        if not word or word.startswith("#"):
            continue
        if len(word.split()) > 1:
            raise DefembError(f"{path}:{no}: {quote(word)} is not one word; give one word per line")
        words.append(word)
    if not words:
        raise DefembError(f"--words file '{path}' holds no words")
    return words


def probe_model(loaded: LoadedModel, data: ProbeData, seed: int, batch_size: int = 64) -> tuple[dict, np.ndarray]:
    """States for every probe word, then `fit_probe`; returns (metrics, test predictions)."""
    encode = encoder(loaded.tokenizer)  # every token the model reads, [UNK] included
    states = {
        split: word_states(loaded, encode([word_text(w, loaded.tokenizer_kind) for w in ws]), batch_size, desc=split)
        for split, ws in (("train", data.train_words), ("valid", data.valid_words))
    }
    states["test"] = word_states(loaded, [[i] for i in data.test_ids], batch_size, desc="test")
    seed_everything(seed)
    return fit_probe(states["train"], data.train_labels, states["valid"], data.valid_labels,
                     states["test"], data.test_labels, seed)


def _tokens_tsv(data: ProbeData, predicted: np.ndarray) -> str:
    lines = ["token_id\ttoken\tlabel\tpredicted\tcorrect"]
    for token_id, token, label, guess in zip(data.test_ids, data.test_tokens, data.test_labels, predicted, strict=True):
        lines.append(f"{token_id}\t{token}\t{LABELS[label]}\t{LABELS[guess]}\t{int(label == guess)}")
    return "\n".join(lines) + "\n"


def run_probe(config: ProbeConfig, out: str | Path, force: bool = False,
              words: list[str] | None = None) -> list[RunRecord]:
    """One record per (model, seed) under OUT, with the tested tokens in ``tokens.tsv`` beside it.

    ``words`` (or ``config.words``) replaces the GCIDE headwords as the pool of 'other' words.
    """
    specs = parse_model_specs(config.models)
    seeds = parse_seeds(config.seeds)
    for spec in specs:
        resolve_model_name(spec.path)
    if words is None and config.words is not None:
        words = read_words(config.words)
    open_out(out, asdict(config), force, free=("models", "seeds", "batch_size", "trust_remote_code"), what=EVALUATOR)
    todo = {s.label: [seed for seed in seeds if not finished(out, s.label, seed)] for s in specs}
    if words is None and any(todo.values()):
        words = dictionary_words()
    candidates: dict[tuple, tuple[list[int], list[int]]] = {}  # one ranking per vocabulary
    drawn: dict[tuple, ProbeData] = {}  # one draw per (vocabulary, seed): paired across models
    records = []
    for spec in tqdm([s for s in specs if todo[s.label]], desc="probe", unit="model"):
        loaded: LoadedModel | None = None
        for seed in todo[spec.label]:
            start = time.perf_counter()
            run_config = {**asdict(config), "models": [f"{spec.label}={spec.path}"], "seeds": [seed]}
            base = dict(evaluator=EVALUATOR, task="numeric", model=spec.path, label=spec.label, seed=seed,
                        primary=PRIMARY, config=run_config)
            try:
                loaded = loaded or load_model(spec.path, trust_remote_code=config.trust_remote_code)
                rows = input_table(loaded.model).weight.shape[0]
                vocabulary = (vocabulary_hash(loaded.tokenizer), rows)
                if vocabulary not in candidates:
                    candidates[vocabulary] = candidate_tokens(loaded.tokenizer, loaded.tokenizer_kind, rows,
                                                             config.ranking)
                if (vocabulary, seed) not in drawn:
                    drawn[vocabulary, seed] = build_probe_data(loaded.tokenizer, candidates[vocabulary], words, seed,
                                                               config.n_test, config.n_other)
                data = drawn[vocabulary, seed]
                metrics, predicted = probe_model(loaded, data, seed, config.batch_size)
                run_config.update(train_words=len(data.train_words), valid_words=len(data.valid_words),
                                  test_tokens=len(data.test_ids))
                folder = run_dir(out, spec.label, seed)
                folder.mkdir(parents=True, exist_ok=True)
                write_text_atomic(folder / "tokens.tsv", _tokens_tsv(data, predicted))
                record = RunRecord(**base, metrics=metrics,
                                   per_example={PRIMARY: [float(c) for c in predicted == data.test_labels]},
                                   wall_s=time.perf_counter() - start)
            except Exception as exc:  # one run failing must not stop the others; its record says why
                record = RunRecord(**base, status="failed", error=error_line(exc), wall_s=time.perf_counter() - start)
            write_record(out, record)
            records.append(record)
    return records
