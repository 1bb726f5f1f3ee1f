"""`defemb extend`: the task's rare words become tokens, with rows DefinitionEMB predicts from their definitions.

    words of the task data (or a word list) -> those the tokenizer splits into >= 2 pieces, seen at least
    ``min_count`` times -> those a dictionary source defines -> one prompt each, built with the original
    tokenizer -> one predicted row each (`defemb.method.add_tokens`) -> new tokens in the tokenizer and
    the tables -> an HF checkpoint with ``added.tsv`` and ``defemb.json``

Words are maximal runs of letters (`WORD`) in the task text after the tokenizer's own normaliser, so an
uncased vocabulary (MiniLM) adds ``sediment`` for "Sediment" and a cased one keeps the case it saw.

A new token matches the word where running text has it: WordPiece adds the word itself as a whole word
(``single_word``: "swords" does not hold "sword"); byte-level BPE and SentencePiece add the
leading-space form ``" word"``, the form ``Ġword`` / ``▁word`` take, so "a word here" becomes
``a`` + new token + ``here`` and decodes back unchanged. A word at the very start of a text keeps its
pieces there, as the original vocabulary distinguishes ``word`` from ``Ġword``. Every added token is
checked on "a WORD here" before anything is written.

Tables: the run's table gets the predicted rows; a tied output head follows it, an untied output head
gets the predicted rows too (its new rows would otherwise be a mean); any other table (a T5Gemma
encoder when the run rebuilt the decoder) keeps what ``resize_token_embeddings`` (mean_resizing) gives.

With ``--refine STEPS`` (causal LMs), the placed rows, from any ``--init``, are then refined on the words'
definitions (`defemb.method.refine`); the progress file beside ``out`` lets an interrupted run resume.

The baseline initialisations of the same words (``--init``; `initialisations`, scored by ``evaluate
wordsim --add-tokens``): ``resize`` (the mean row, what mean_resizing samples around, with covariance 1e-9·Σ),
``pieces`` (the mean of the word's pieces), ``desc_init`` (LlamaFactory: the mean of the input rows of
the definition's tokens) and ``definitionemb`` (the predicted row).
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import io
import json
import re
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import AddedToken
from transformers import PretrainedConfig
from transformers.utils import logging as hf_logging

from defemb.analysis.neighbours import nearest_neighbours
from defemb.analysis.projection import printable
from defemb.config import NEW_WORD_BAND, SENSES, CorpusConfig
from defemb.corpus.build import Tokenizing, make_records
from defemb.dictionaries import Entry, SkipLog, read_source, take_turns
from defemb.embeddings import EMBEDDING_TABLES
from defemb.errors import DefembError, check_text_file, quote
from defemb.frequency import BANDS, encoder
from defemb.method.refine import RefineConfig, refine_rows
from defemb.models import (
    LoadedModel,
    get_table,
    get_table_module,
    load_model,
    load_tokenizer,
    save_model,
    set_table,
    tables_present,
    tokenizer_kind,
    tying,
    vocabulary_hash,
)
from defemb.outputs import atomic_dir, check_writable, write_json_atomic, write_text_atomic
from defemb.replace import task_texts

WORD = re.compile(r"(?<!\w)[^\W\d_]+(?!\w)")  # letters only, not glued to digits or underscores
NEIGHBOURS = 5
INITIALISATIONS = ("resize", "pieces", "desc_init", "definitionemb")  # the four that word similarity compares
MIXED = "definitionemb+pieces"  # the mean of the two: the best start for `--refine` measured on SmolLM2
EXTEND_INITS = (*INITIALISATIONS, MIXED)
ADDED_FILE = "added.tsv"  # one row per word an `extend` output added


@dataclass
class ExtendConfig:
    """Settings of `defemb extend`."""

    model: str = field(metadata={"help": "model to extend (dir, hub name, minilm); same vocabulary as the run"})
    run: str = field(metadata={"help": "finished `defemb train` run directory"})
    task_data: list[str] = field(default_factory=list, metadata={"help": "task files whose words to add"})
    words: str | None = field(default=None, metadata={"help": "file of words (one a line) instead of task data"})
    sources: list[str] = field(default_factory=lambda: ["gcide"], metadata={"help": "dictionary source specs"})
    entities: str | None = field(default=None, metadata={"help": "TSV of definitions for names and terms"})
    min_count: int = field(default=2, metadata={"help": "occurrences in the task data a word needs"})
    senses: int = field(default=SENSES, metadata={"help": "definitions per word whose predicted rows are averaged"})
    max_words: int | None = field(default=None, metadata={"help": "add at most this many (most frequent first)"})
    table: str | None = field(default=None, metadata={"help": "input | encoder | decoder (default: the run's)"})
    init: str = field(default="definitionemb", metadata={
        "help": "rows of the new tokens: definitionemb, definitionemb+pieces (the mean of that row and the pieces' "
                "mean), or a baseline on the same words (resize, pieces, desc_init)"})
    band: str = field(default=NEW_WORD_BAND, metadata={"help": "the map of a band-head run that reads the new "
                                                              "words: shared (default), frequent, medium or rare"})
    refine: int = field(default=0, metadata={"help": "causal LMs: steps that refine the new rows on their "
                                                     "definitions (`defemb.method.refine`; 0: off)"})
    refine_lr: float = field(default=RefineConfig.lr, metadata={"help": "learning rate of the refinement"})
    trust_remote_code: bool = False

    def __post_init__(self) -> None:
        if self.task_data and self.words:
            raise DefembError("give --task-data FILE... (words found in the task text) or --words FILE, not both")
        if not self.task_data and not self.words:
            raise DefembError("give --task-data FILE... (words found in the task text) or --words FILE (a list)")
        if self.senses < 1:
            raise DefembError(f"--senses must be at least 1 (got {self.senses})")
        if self.min_count < 1:
            raise DefembError(f"--min-count must be at least 1 (got {self.min_count})")
        if self.max_words is not None and self.max_words < 1:
            raise DefembError(f"--max-words must be at least 1 (got {self.max_words})")
        if self.table is not None and self.table not in EMBEDDING_TABLES:
            choices = ", ".join(EMBEDDING_TABLES)
            raise DefembError(f"--table {quote(self.table)} cannot get rows; choose one of {choices}")
        if self.band not in (NEW_WORD_BAND, *BANDS):
            maps = ", ".join((NEW_WORD_BAND, *BANDS))
            raise DefembError(f"--band {quote(self.band)} is not a map; choose one of {maps}")
        if not isinstance(self.refine, int) or self.refine < 0:
            raise DefembError(f"--refine must be a whole number of steps >= 0 (got {self.refine!r})")
        if self.refine:
            self.refine_config()  # its own checks, before anything is loaded
        if self.init not in EXTEND_INITS:
            raise DefembError(f"--init {quote(self.init)} is not known; choose one of {', '.join(EXTEND_INITS)}")
        for path in [*self.task_data, *([self.words] if self.words else [])]:
            if not Path(path).is_file():
                raise DefembError(f"file '{path}' not found")

    def refine_config(self) -> RefineConfig:
        return RefineConfig(steps=self.refine, lr=self.refine_lr)


@dataclass
class NewWord:
    word: str  # as the tokenizer's normaliser gives it
    count: int | None  # occurrences in the task data (None for --words)
    pieces: list[int]  # the original tokenizer's ids for the word in running text
    entry: Entry  # the definition used (the first found), its word set to ``word``
    more: list[Entry] = field(default_factory=list)  # further definitions whose predictions are averaged in

    @property
    def definitions(self) -> str:
        """Every definition used, joined: the text desc_init averages over, so it sees what DefinitionEMB saw."""
        return " ".join(e.definition for e in (self.entry, *self.more))


@dataclass
class Plan:
    """What `extend` would add, and how many words each filter dropped."""

    words: list[NewWord]
    candidates: int  # distinct words found
    in_vocabulary: int  # one token already
    below_min_count: int
    undefined: list[str]  # split, frequent enough, but no source defines them
    over_max_words: int = 0
    duplicates: int = 0  # repeated lines of --words

    def counts(self) -> dict[str, int]:
        return {"candidates": self.candidates, "in_vocabulary": self.in_vocabulary,
                "below_min_count": self.below_min_count, "no_definition": len(self.undefined),
                "over_max_words": self.over_max_words, "duplicates": self.duplicates, "added": len(self.words)}


def normaliser(tokenizer):
    """The tokenizer's own text normaliser (lowercasing for uncased vocabularies), or the identity."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    norm = backend.normalizer if backend is not None else None
    return norm.normalize_str if norm is not None else (lambda text: text)


def task_word_counts(paths: list[str], normalise) -> Counter[str]:
    """Occurrences of every word of the task files; a file without a single word is refused."""
    counts: Counter[str] = Counter()
    for path in paths:
        found: Counter[str] = Counter()
        for text in task_texts(path):
            found.update(WORD.findall(normalise(text)))
        if not found:
            raise DefembError(f"{path}: no words in this task file (empty, or no text column with letters)")
        counts.update(found)
    return counts


def read_word_list(path: str, normalise) -> tuple[list[str], int]:
    """Words of a list file (first tab-separated field of each line; ``#`` comments), in file order, and the
    number of repeated ones dropped."""
    check_text_file(path, "word list")
    words, seen, duplicates = [], set(), 0
    for line in Path(path).read_text(encoding="utf-8-sig").splitlines():
        word = normalise(line.split("\t", 1)[0].strip())
        if not word or line.lstrip().startswith("#") or (not words and word.lower() == "word"):
            continue
        if word in seen:
            duplicates += 1
            continue
        seen.add(word)
        words.append(word)
    if not words:
        raise DefembError(f"{path}: no words in this list (one word a line)")
    return words, duplicates


def word_pieces(tokenizer, words: list[str]) -> list[list[int]]:
    """Each word's ids as running text has it (BPE and SentencePiece: after a space)."""
    from defemb.evaluation.wordsim import word_text

    kind = tokenizer_kind(tokenizer)
    return encoder(tokenizer)([word_text(w, kind) for w in words])


def find_definitions(words: list[str], sources: list[str], normalise, skips: SkipLog, limit: int = 1
                     ) -> dict[str, list[Entry]]:
    """Up to ``limit`` definitions of every word (as written, else its lowercase): the first of each source,
    then the second of each, ... (`take_turns`)."""
    wanted, wanted_lower = set(words), {w.lower() for w in words}
    exact: dict[str, dict[str, list[Entry]]] = defaultdict(dict)
    lower: dict[str, dict[str, list[Entry]]] = defaultdict(dict)
    for spec in sources:
        for entry in read_source(spec, skips):
            key = normalise(entry.word)
            if key in wanted and len(exact[key].setdefault(spec, [])) < limit:
                exact[key][spec].append(entry)
            if key.lower() in wanted_lower and len(lower[key.lower()].setdefault(spec, [])) < limit:
                lower[key.lower()][spec].append(entry)
    found = {w: take_turns((exact.get(w) or lower.get(w.lower()) or {}).values(), limit) for w in words}
    return {w: [dataclasses.replace(e, word=w) for e in es] for w, es in found.items() if es}


def choose_words(tokenizer, words: list[str], counts: dict[str, int | None], sources: list[str],
                 min_count: int = 1, max_words: int | None = None, senses: int = 1) -> Plan:
    """Of ``words`` (normalised, in order of preference), those to add; ``counts`` None: no frequency filter."""
    pieces = dict(zip(words, word_pieces(tokenizer, words), strict=True))
    split = [w for w in words if len(pieces[w]) >= 2 or tokenizer.unk_token_id in pieces[w]]
    frequent = [w for w in split if counts[w] is None or counts[w] >= min_count]
    definitions = find_definitions(frequent, sources, normaliser(tokenizer), SkipLog(), senses)
    defined = [w for w in frequent if w in definitions]
    chosen = defined[:max_words]
    return Plan(
        [NewWord(w, counts[w], pieces[w], definitions[w][0], definitions[w][1:]) for w in chosen],
        candidates=len(words), in_vocabulary=len(words) - len(split), below_min_count=len(split) - len(frequent),
        undefined=[w for w in frequent if w not in definitions], over_max_words=len(defined) - len(chosen),
    )


def plan_extension(config: ExtendConfig, tokenizer) -> Plan:
    """Choose the words to add from the task data or the word list (no model is loaded)."""
    normalise = normaliser(tokenizer)
    sources = config.sources + ([f"entities:{config.entities}"] if config.entities else [])
    if config.words:
        words, duplicates = read_word_list(config.words, normalise)
        plan = choose_words(tokenizer, words, dict.fromkeys(words), sources, max_words=config.max_words,
                            senses=config.senses)
        plan.duplicates = duplicates
        return plan
    counted = task_word_counts(config.task_data, normalise)
    words = sorted(counted, key=lambda w: (-counted[w], w))  # most frequent first
    return choose_words(tokenizer, words, dict(counted), sources, config.min_count, config.max_words, config.senses)


def run_tokenizer_check(run_dir: str | Path, tokenizer) -> dict:
    """The run's config, after checking it was trained for this vocabulary (rows from another model's
    space, even of the same width, would be meaningless here)."""
    run_dir = Path(run_dir)
    if not (run_dir / "head.safetensors").is_file() or not (run_dir / "model").is_dir():
        raise DefembError(f"'{run_dir}' holds no finished training run (model/ and head.safetensors)")
    config = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
    if vocabulary_hash(load_tokenizer(str(run_dir / "model"))) != vocabulary_hash(tokenizer):
        raise DefembError(f"run '{run_dir}' was trained on {quote(config.get('model'))}, whose vocabulary differs "
                          f"from this model's; train a run on this model (or extend the run's own model)")
    return config


def predicted_rows(run_dir: str | Path, words: list[NewWord], band: str = NEW_WORD_BAND
                   ) -> tuple[list[NewWord], np.ndarray]:
    """DefinitionEMB rows for the words (one model load, batched): the mean of the rows predicted from each
    of a word's definitions, by the map of ``band`` when the run has a band head. Words none of whose prompts
    can hold them are dropped (their count is the difference)."""
    from defemb.method.add_tokens import predict_rows
    from defemb.method.embed import load_run
    from defemb.method.masking import Vocabulary

    model, loaded, _ = load_run(run_dir)
    tok = Tokenizing.load(str(Path(run_dir) / "model"), CorpusConfig.max_tokens)  # prompts as long as in training
    by_word = {w.word: w for w in words}
    records = make_records([e for w in words for e in (w.entry, *w.more)], tok, SkipLog())
    rows = predict_rows(model, Vocabulary.for_model(loaded), records, band)
    groups: dict[str, list[int]] = {}
    for k, r in enumerate(records):
        groups.setdefault(r["word"], []).append(k)
    kept = [by_word[w] for w in groups]
    return kept, np.stack([rows[ks].astype(np.float64).mean(axis=0) for ks in groups.values()]).astype(rows.dtype)


def token_content(word: str, kind: str) -> AddedToken:
    """The added token that matches ``word`` in running text (module docstring)."""
    if kind in ("bpe", "sentencepiece"):
        return AddedToken(" " + word, normalized=False)
    return AddedToken(word, single_word=True, normalized=True)


def add_word_tokens(tokenizer, words: list[str]) -> np.ndarray:
    """Add the words as tokens; their ids, each checked to be what "a WORD here" tokenizes to. # (n,)"""
    kind = tokenizer_kind(tokenizer)
    if kind == "other":
        raise DefembError("this tokenizer is neither WordPiece, byte-level BPE nor SentencePiece; "
                          "defemb does not know how it marks a word in running text")
    tokens = [token_content(w, kind) for w in words]
    tokenizer.add_tokens(tokens)
    ids = np.array(tokenizer.convert_tokens_to_ids([t.content for t in tokens]), dtype=np.int64)
    probes = tokenizer([f"a {w} here" for w in words], add_special_tokens=False)["input_ids"]
    missed = [w for w, i, probe in zip(words, ids, probes, strict=True) if int(i) not in probe]
    if missed:
        raise DefembError(f"the new tokens do not match their words in text (e.g. {quote(missed[0])}); "
                          f"{len(missed)} of {len(words)} words; nothing was written")
    return ids


def _same_table(model, a: str, b: str) -> bool:
    return get_table_module(model, a).weight.data_ptr() == get_table_module(model, b).weight.data_ptr()


def _place_rows(target: LoadedModel, table: str, ids: np.ndarray, rows_for: Callable[[np.ndarray], np.ndarray]
                ) -> dict[str, Any]:
    """Grow every table to the new vocabulary, put the rows in ``table`` and an untied output head
    (``rows_for(E)``: the new rows for a table whose rows are ``E``)."""
    size = len(target.tokenizer)
    rows_before = get_table_module(target.model, table).weight.shape[0]
    if rows_before < size:  # T5-style tables may have spare rows
        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # its note on mean_resizing is not for our users: every row is reported
        try:
            target.model.resize_token_embeddings(size, mean_resizing=True)
        finally:
            hf_logging.set_verbosity(verbosity)
        # resize_token_embeddings sets only the top-level vocab_size; nested configs (T5Gemma's encoder and
        # decoder) must match too, or the saved checkpoint does not load
        for sub in vars(target.model.config).values():
            if isinstance(sub, PretrainedConfig) and getattr(sub, "vocab_size", None) == rows_before:
                sub.vocab_size = size
    present = [t for t, ok in tables_present(target.model).items() if ok]
    short = [t for t in present if get_table_module(target.model, t).weight.shape[0] < size]
    if short:
        raise DefembError(f"resize_token_embeddings left the {', '.join(short)} table(s) of "
                          f"{type(target.model).__name__} short of the new vocabulary; nothing was written")
    untied = "output" in present and not tying(target.model)["output_tied_to"]
    predicted = [t for t in present if _same_table(target.model, t, table) or (t == "output" and untied)]
    for name in [table] + (["output"] if untied else []):
        E = get_table(target.model, name)
        E[ids] = rows_for(E)
        set_table(target.model, E, name)  # in place: tables tied to it follow
    return {"output_head": "none" if "output" not in present else "untied" if untied else "tied",
            "tables_with_predicted_rows": predicted,
            "tables_with_mean_rows": [t for t in present if t not in predicted]}


def _check_table(target: LoadedModel, table: str, run_table: str, width: int) -> None:
    if not _same_table(target.model, table, run_table):
        raise DefembError(f"--table {table}: the run's rows mimic the {run_table} table, a different table of this "
                          f"model; leave --table out")
    have = get_table_module(target.model, table).weight.shape[1]
    if have != width:
        raise DefembError(f"the run predicts rows of size {width}, the model's {table} table has {have}")


def added_tsv(tokenizer, new: list[NewWord], ids: np.ndarray, near: np.ndarray) -> str:
    """word, id, token, count, pieces (and their ids), definition, source, the nearest old tokens."""
    handle = io.StringIO()
    writer = csv.writer(handle, delimiter="\t", lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerow(["word", "id", "token", "count", "pieces", "piece_ids", "definition", "source", "senses",
                     "neighbours"])
    for w, i, neighbours in zip(new, ids, near, strict=True):
        pieces = " ".join(printable(t) for t in tokenizer.convert_ids_to_tokens(w.pieces))
        writer.writerow([w.word, int(i), printable(tokenizer.convert_ids_to_tokens(int(i))),
                         "" if w.count is None else w.count, pieces, " ".join(map(str, w.pieces)),
                         w.entry.definition, w.entry.location, 1 + len(w.more),
                         " ".join(printable(t) for t in tokenizer.convert_ids_to_tokens(neighbours.tolist()))])
    return handle.getvalue()


def extend(config: ExtendConfig, out: str | Path | None, force: bool = False, dry_run: bool = False,
           plan: Plan | None = None) -> dict:
    """Write the extended checkpoint to ``out`` (or, with ``dry_run``, only plan); returns the summary.
    ``plan``: one `plan_extension` already made for this config (the sources are not read again)."""
    if not dry_run:
        if out is None:
            raise DefembError("--out is needed (or --dry-run to only list the words)")
        check_writable(out, force)
    tokenizer = load_tokenizer(config.model, config.trust_remote_code)
    run_config = run_tokenizer_check(config.run, tokenizer)
    plan = plan or plan_extension(config, tokenizer)
    summary: dict[str, Any] = {"model": config.model, "run": str(config.run), **plan.counts(),
                               "no_definition_words": plan.undefined, "config": dataclasses.asdict(config)}
    if dry_run:
        return {**summary, "words": [dataclasses.asdict(w) | {"entry": vars(w.entry)} for w in plan.words]}
    if not plan.words:
        raise DefembError(f"no word to add ({', '.join(f'{k} {v}' for k, v in plan.counts().items())}); "
                          f"see --dry-run for the lists")
    new, rows = predicted_rows(config.run, plan.words, config.band)
    run_table = run_config.get("table", "input")
    table = config.table or run_table
    target = load_model(config.model, trust_remote_code=config.trust_remote_code)
    _check_table(target, table, run_table, rows.shape[1])
    if config.refine and target.kind != "decoder":
        raise DefembError(f"--refine reads the new words as a causal LM does; {config.model} is an {target.kind} "
                          f"model (leave --refine out)")
    old_size = len(target.tokenizer)
    # desc_init reads the definitions with the original vocabulary, so it needs the tokenizer before the new words
    tokenizer = copy.deepcopy(target.tokenizer) if config.init == "desc_init" else None

    def rows_for(E: np.ndarray) -> np.ndarray:  # a baseline on the very words DefinitionEMB would add
        if config.init == "definitionemb":
            return rows
        if config.init == MIXED:
            pieces = pieces_mean_rows(E[:old_size], [w.pieces for w in new])
            return ((rows.astype(np.float64) + pieces) / 2).astype(E.dtype)
        return initial_rows(config.init, E[:old_size], tokenizer, new)

    ids = add_word_tokens(target.tokenizer, [w.word for w in new])
    placed = _place_rows(target, table, ids, rows_for)
    state = refine_state_path(out)
    if config.refine:
        summary["refine"] = refine_new_rows(target, table, new, ids, config.refine_config(), state)
    near, _ = nearest_neighbours(get_table(target.model, table), ids, np.arange(old_size), k=NEIGHBOURS)
    summary.update(init=config.init, added=len(new), unplaceable=len(plan.words) - len(new), table=table,
                   first_id=int(ids.min()), vocabulary=len(target.tokenizer), **placed)
    with atomic_dir(out, force) as tmp:
        save_model(target, tmp)
        write_text_atomic(tmp / ADDED_FILE, added_tsv(target.tokenizer, new, ids, near))
        write_json_atomic(tmp / "defemb.json", summary)
    state.unlink(missing_ok=True)
    return summary


def refine_state_path(out: str | Path) -> Path:
    """Where an interrupted refinement for ``out`` keeps its progress (beside ``out``, removed when it is written)."""
    out = Path(out)
    return out.parent / f".{out.name}.refine-state.safetensors"


def refine_new_rows(target: LoadedModel, table: str, new: list[NewWord], ids: np.ndarray, config: RefineConfig,
                    state: Path) -> dict:
    """Refine the rows just placed (`defemb.method.refine`); the model's tables get the refined rows."""
    from defemb.precision import use_bf16

    state.parent.mkdir(parents=True, exist_ok=True)
    start = get_table(target.model, table)[ids]
    _, summary = refine_rows(target.model, target.tokenizer, [w.word for w in new],
                             [w.entry.definition for w in new], ids.tolist(), [w.pieces for w in new], start,
                             config, state=state, bf16=use_bf16())
    return summary


# --- the four initialisations of the same new words, for `evaluate wordsim --add-tokens` -------------------


@dataclass
class Extension:
    """New words with their pieces, definitions and DefinitionEMB rows, over the original model."""

    base: LoadedModel  # the model before extension
    table: str
    words: list[str]
    pieces: list[list[int]]
    definitions: list[str]
    rows: np.ndarray  # (n, h) DefinitionEMB rows


def mean_resizing_rows(E: np.ndarray, n: int) -> np.ndarray:
    """What ``resize_token_embeddings(mean_resizing=True)`` gives new rows, up to noise of covariance
    1e-9·Σ: the mean row. # (V, h) -> (n, h)"""
    return np.repeat(E.astype(np.float64).mean(axis=0, keepdims=True), n, axis=0).astype(E.dtype)


def pieces_mean_rows(E: np.ndarray, pieces: list[list[int]]) -> np.ndarray:
    """The mean of each word's piece rows. # (V, h) -> (n, h)"""
    return np.stack([E[p].astype(np.float64).mean(axis=0) for p in pieces]).astype(E.dtype)


def definition_mean_rows(E: np.ndarray, tokenizer, definitions: list[str]) -> np.ndarray:
    """LlamaFactory's desc_init: the mean of the input rows of the definition's tokens. # (V, h) -> (n, h)"""
    ids = encoder(tokenizer)(definitions)
    return pieces_mean_rows(E, [[i for i in d if i < E.shape[0]] for d in ids])


def initial_rows(init: str, E: np.ndarray, tokenizer, words: list[NewWord]) -> np.ndarray:
    """A baseline's rows for ``words`` from the table ``E`` they join. # (V, h) -> (n, h)"""
    if init == "resize":
        return mean_resizing_rows(E, len(words))
    if init == "pieces":
        return pieces_mean_rows(E, [w.pieces for w in words])
    return definition_mean_rows(E, tokenizer, [w.definitions for w in words])


def initialisations(ext: Extension) -> dict[str, np.ndarray]:
    """name -> (n, h) rows for the new words, one entry per `INITIALISATIONS`."""
    E = get_table(ext.base.model, ext.table)
    return {"resize": mean_resizing_rows(E, len(ext.words)), "pieces": pieces_mean_rows(E, ext.pieces),
            "desc_init": definition_mean_rows(E, ext.base.tokenizer, ext.definitions), "definitionemb": ext.rows}


def read_added(path: str | Path) -> list[dict[str, str]]:
    """The rows of an `extend` output's ``added.tsv`` (word, id, pieces, definition, ...)."""
    with open(Path(path) / ADDED_FILE, encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def added_ids(path: str | Path) -> np.ndarray:
    """The token ids an `extend` output added, in ``added.tsv`` order."""
    return np.array([int(row["id"]) for row in read_added(path)], dtype=np.int64)


def extension_from_checkpoint(path: str | Path, trust_remote_code: bool = False) -> Extension:
    """The words an `extend` output added, their rows read back from its table."""
    path = Path(path)
    summary = json.loads((path / "defemb.json").read_text(encoding="utf-8"))
    rows = read_added(path)
    extended = load_model(str(path), trust_remote_code=trust_remote_code)
    ids = [int(r["id"]) for r in rows]
    return _extension(load_model(summary["model"], trust_remote_code=trust_remote_code), summary["table"],
                      [r["word"] for r in rows], [r["definition"] for r in rows],
                      get_table(extended.model, summary["table"])[ids])


def extension_from_run(run: str | Path, words: list[str], sources: list[str], trust_remote_code: bool = False,
                       senses: int = SENSES, band: str = NEW_WORD_BAND) -> Extension:
    """Every word of ``words`` that the run's model splits and the sources define, with its predicted row
    (read by ``band``'s map of a band head; nothing is written)."""
    model = json.loads((Path(run) / "config.json").read_text(encoding="utf-8"))["model"]
    base = load_model(model, trust_remote_code=trust_remote_code)
    run_config = run_tokenizer_check(run, base.tokenizer)
    normalise = normaliser(base.tokenizer)
    unique = list(dict.fromkeys(normalise(w) for w in words))
    plan = choose_words(base.tokenizer, unique, dict.fromkeys(unique), sources, senses=senses)
    new, rows = predicted_rows(run, plan.words, band)
    return _extension(base, run_config.get("table", "input"), [w.word for w in new],
                      [w.definitions for w in new], rows)


def _extension(base: LoadedModel, table: str, words: list[str], definitions: list[str], rows: np.ndarray
               ) -> Extension:
    """Pieces as word similarity reads a word (no unknown tokens or bare word-start markers, unless that is all)."""
    from defemb.evaluation.wordsim import word_token_ids

    kept = word_token_ids(base.tokenizer, base.tokenizer_kind, words)
    pieces = [k or raw for k, raw in zip(kept, word_pieces(base.tokenizer, words), strict=True)]
    return Extension(base, table, words, pieces, definitions, rows)
