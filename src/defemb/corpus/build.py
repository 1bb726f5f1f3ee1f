"""`defemb corpus build`: dictionary entries -> tokenized prompts with the defined word's positions.

The build streams: entries are read lazily, processed in fixed-size chunks, and each chunk is written
atomically as a part file under ``OUT.partial/``. An interrupted build is continued with ``resume``
(the same entries come in the same order, so finished chunks are skipped, not redone); only when every
chunk is done are the parts joined into ``OUT/train.jsonl`` and ``OUT/valid.jsonl`` and the directory
renamed into place, so a directory that looks complete is complete.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import shutil
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Encoding
from tqdm import tqdm

from defemb.config import CorpusConfig
from defemb.corpus.align import span_positions
from defemb.corpus.prompts import build_prompt
from defemb.dictionaries import Entry, SkipLog, number_entries, read_source
from defemb.dictionaries.references import definition_index, referenced_words, resolve
from defemb.errors import DefembError
from defemb.models import load_tokenizer, plain_backend, tokenizer_kind, vocabulary_hash
from defemb.outputs import atomic_dir, check_writable, write_json_atomic, write_text_atomic

CHUNK_ENTRIES = 4096


@dataclass
class Tokenizing:
    """What record building needs to know about the tokenizer, resolved once."""

    tokenizer: object
    kind: str
    max_tokens: int
    specials: int  # tokens the tokenizer adds around a text ([CLS] ... [SEP])
    backend: object  # the Rust tokenizer without saved truncation/padding

    @classmethod
    def load(cls, name: str, max_tokens: int, trust_remote_code: bool = False) -> Tokenizing:
        tokenizer = load_tokenizer(name, trust_remote_code)
        if not getattr(tokenizer, "is_fast", False):
            raise DefembError(f"tokenizer of '{name}' is not a fast (Rust) tokenizer; offsets are needed")
        limit = tokenizer.model_max_length if tokenizer.model_max_length < 1_000_000 else max_tokens
        return cls(
            tokenizer,
            tokenizer_kind(tokenizer),
            min(max_tokens, limit),
            tokenizer.num_special_tokens_to_add(),
            plain_backend(tokenizer),
        )

    def normalise(self, text: str) -> str:
        normalizer = self.tokenizer.backend_tokenizer.normalizer
        return normalizer.normalize_str(text) if normalizer is not None else text


def in_validation(word: str, valid_percent: float) -> bool:
    """Deterministic split by a hash of the headword: a word never lands in both files."""
    digest = hashlib.sha1(word.lower().encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "big") / 2**32 * 100 < valid_percent


def entries(config: CorpusConfig, tok: Tokenizing, skips: SkipLog, references: Counter[str]) -> Iterator[Entry]:
    """All sources in the order given (cross-references resolved unless ``config.references`` is ``keep``;
    ``references`` counts them), then numbers for every numeric vocabulary token."""
    specs = [*config.sources, *([f"entities:{config.entities}"] if config.entities else [])]
    streams: list[Iterable[Entry]] = [read_source(spec, skips) for spec in specs]
    if config.references == "resolve" and specs:
        def again() -> Iterator[Entry]:  # the same entries, skips not counted twice
            return itertools.chain.from_iterable(read_source(spec, SkipLog()) for spec in specs)

        index = definition_index(again(), referenced_words(again()))
        streams = [resolve(itertools.chain.from_iterable(streams), index, references)]
    if config.numbers:
        vocab = sorted(tok.tokenizer.get_vocab().items(), key=lambda item: item[1])
        streams.append(number_entries(token for token, _ in vocab))
    return itertools.chain.from_iterable(streams)


def _encode(tok: Tokenizing, texts: list[str]) -> list[Encoding]:
    """Ids, character offsets and token strings straight from the Rust backend (batched, parallel)."""
    return tok.backend.encode_batch(texts, add_special_tokens=True)


def _cut(text: str, prefix_end: int, encoding: Encoding, budget: int) -> str | None:
    """The prompt cut to ``budget`` non-special tokens at a word boundary after the prefix, or None."""
    # Zero-width pieces (a lone "Ġ" before punctuation) take up the budget like any other token.
    content = [o for o, special in zip(encoding.offsets, encoding.special_tokens_mask, strict=True) if not special]
    cut = content[min(budget, len(content)) - 1][1]
    space = text.rfind(" ", prefix_end, cut + 1)
    if cut < len(text) and not text[cut].isspace() and space > prefix_end:
        cut = space  # do not end in the middle of a word
    return text[:cut].rstrip() if cut > prefix_end else None


def make_records(chunk: list[Entry], tok: Tokenizing, skips: SkipLog) -> list[dict]:
    """Prompts, token ids and word positions for one chunk of entries (one tokenizer batch)."""
    prompts = [build_prompt(e, tok.kind, tok.normalise) for e in chunk]
    texts = [p.text for p in prompts]
    encoded = _encode(tok, texts)
    budget = tok.max_tokens - tok.specials
    for again in range(2):  # a cut can change merges at the edge: check once more
        over = [i for i, e in enumerate(encoded) if len(e.ids) > tok.max_tokens]
        if not over:
            break
        for i in over:
            cut = _cut(texts[i], prompts[i].prefix_end, encoded[i], budget - again)
            texts[i] = cut if cut is not None else texts[i][: prompts[i].prefix_end].rstrip()
        for i, enc in zip(over, _encode(tok, [texts[i] for i in over]), strict=True):
            encoded[i] = enc
    records = []
    for entry, prompt, text, encoding in zip(chunk, prompts, texts, encoded, strict=True):
        ids = encoding.ids
        if len(ids) > tok.max_tokens:
            skips.add("word-too-long", entry.location, entry.word)
            continue
        spans, forms, positions = [], [], []
        for (start, end), form in zip(prompt.spans, prompt.forms, strict=True):
            if end > len(text):
                continue  # an occurrence in the part of the definition that was cut off
            found = span_positions(text, encoding.offsets, encoding.tokens, start, end)
            if found is not None:
                spans.append([start, end])
                forms.append(form)
                positions.append(found)
        if not positions:
            skips.add("word-not-in-prompt", entry.location, entry.word)
            continue
        records.append(
            {
                "word": entry.word,
                "pos": entry.pos,
                "definition": text[prompt.prefix_end :],
                "source": entry.source,
                "location": entry.location,
                "prompt": text,
                "spans": spans,
                "forms": forms,
                "input_ids": ids,
                "word_positions": positions,
                "truncated": len(text) < len(prompt.text),
            }
        )
    return records


def _write_part(records: list[dict], valid_percent: float, part: Path, skips: SkipLog) -> dict:
    """One chunk's train/valid lines and counts, each file written atomically; stats last = done."""
    lines: dict[str, list[str]] = {"train": [], "valid": []}
    sources: Counter[str] = Counter()
    for record in records:
        split = "valid" if in_validation(record["word"], valid_percent) else "train"
        lines[split].append(json.dumps(record, ensure_ascii=False))
        sources[record["source"]] += 1
    for split, rows in lines.items():
        write_text_atomic(part.with_suffix(f".{split}.jsonl"), "".join(row + "\n" for row in rows))
    stats = {
        "records": {split: len(rows) for split, rows in lines.items()},
        "truncated": sum(r["truncated"] for r in records),
        "sources": dict(sources),
        "skipped": skips.counts,
        "examples": {r: [vars(x) for x in xs] for r, xs in skips.examples.items()},
    }
    write_json_atomic(part.with_suffix(".stats.json"), stats)
    return stats


def _chunks(stream: Iterable[Entry], size: int) -> Iterator[list[Entry]]:
    iterator = iter(stream)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def build_corpus(config: CorpusConfig, out: str | Path, force: bool = False, resume: bool = False) -> dict:
    """Build the corpus into ``out``; returns its stats (also written to ``out/stats.json``)."""
    out = Path(out)
    check_writable(out, force)
    work = out.with_name(out.name + ".partial")
    tok = Tokenizing.load(config.tokenizer, config.max_tokens, config.trust_remote_code)
    resolved = {
        **config.to_dict(),
        "max_tokens": tok.max_tokens,
        "tokenizer_kind": tok.kind,
        "vocab_hash": vocabulary_hash(tok.tokenizer),
        "inputs": input_fingerprints(config),
    }
    if work.exists():
        if not work.is_dir():
            raise DefembError(f"'{work}' is a file, but the build keeps its unfinished work there; move or remove it")
        previous = _previous_config(work)
        if force and not (resume and previous == resolved):
            shutil.rmtree(work)
        elif not resume or previous != resolved:
            why = "pass --resume to continue it" if previous == resolved else "its settings or inputs differ"
            raise DefembError(f"an unfinished build is in '{work}'; {why} (or pass --force to start over)")
    work.mkdir(parents=True, exist_ok=True)
    read_skips = SkipLog(strict=config.strict)
    references: Counter[str] = Counter()
    parts: list[dict] = []
    progress = tqdm(desc="corpus", unit=" entries", smoothing=0.1)
    try:
        write_json_atomic(work / "config.json", resolved)
        for index, chunk in enumerate(_chunks(entries(config, tok, read_skips, references), CHUNK_ENTRIES)):
            part = work / f"part-{index:05d}"
            stats_file = part.with_suffix(".stats.json")
            if stats_file.exists():
                parts.append(json.loads(stats_file.read_text()))
            else:
                skips = SkipLog(strict=config.strict)
                parts.append(_write_part(make_records(chunk, tok, skips), config.valid_percent, part, skips))
            progress.update(len(chunk))
        stats = {**_merge_stats(parts, read_skips),
                 "references": {key: references[key] for key in ("resolved", "unresolved")}}
        _refuse_empty(stats)
    except BaseException as error:
        _keep_or_remove(work, error)
        raise
    finally:
        progress.close()
    with atomic_dir(out, force) as tmp:
        for split in ("train", "valid"):
            with open(tmp / f"{split}.jsonl", "wb") as joined:
                for index in range(len(parts)):
                    with open(work / f"part-{index:05d}.{split}.jsonl", "rb") as piece:
                        shutil.copyfileobj(piece, joined)
        write_json_atomic(tmp / "stats.json", stats)
        write_json_atomic(tmp / "config.json", resolved)
    shutil.rmtree(work)
    return stats


def _previous_config(work: Path) -> dict | None:
    """The settings of an unfinished build, or None when they are unreadable (they then count as differing)."""
    try:
        return json.loads((work / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):  # missing, a folder, damaged JSON or bytes
        return None


def _refuse_empty(stats: dict) -> None:
    """A corpus without records is useless to every later stage: an error saying why, not an empty output."""
    if sum(stats["records"].values()):
        return
    skipped = sorted(stats["skipped"].items(), key=lambda kv: -kv[1])
    if not skipped:
        raise DefembError("the build produced no records: the sources hold no definitions; check --source and "
                          "--entities (numbers were left out or the vocabulary has none)")
    first = stats["skipped_examples"][skipped[0][0]][0]
    raise DefembError(
        "the build produced no records: every input item was skipped ("
        + ", ".join(f"{reason} {count}" for reason, count in skipped)
        + f"; first: {first['location']}: {first['reason']}: '{first['excerpt']}'); fix the input, or check that "
        "it has the layout its --source kind expects"
    )


def _keep_or_remove(work: Path, error: BaseException) -> None:
    """After a failed build: keep finished chunks for ``--resume`` and say so on the exception (the CLI
    prints its notes), else remove ``work``. Bad input (strict mode) will be edited, so its parts are stale."""
    if isinstance(error, DefembError) or not any(work.glob("part-*.stats.json")):
        shutil.rmtree(work, ignore_errors=True)
    else:
        error.add_note(f"partial work kept in '{work}'; rerun with --resume to continue, or --force to start over")


def input_fingerprints(config: CorpusConfig) -> dict[str, list[int]]:
    """Size and modification time of every input file, so a resumed build notices edited inputs."""
    paths = [spec.partition(":")[2] for spec in config.sources] + ([config.entities] if config.entities else [])
    return {p: [Path(p).stat().st_size, Path(p).stat().st_mtime_ns] for p in paths if p and Path(p).is_file()}


def _merge_stats(parts: list[dict], read_skips: SkipLog) -> dict:
    records: Counter[str] = Counter()
    sources: Counter[str] = Counter()
    skipped: Counter[str] = Counter(read_skips.counts)
    examples = {r: [vars(x) for x in xs] for r, xs in read_skips.examples.items()}
    for part in parts:
        records.update(part["records"])
        sources.update(part["sources"])
        skipped.update(part["skipped"])
        for reason, shown in part["examples"].items():
            examples.setdefault(reason, []).extend(shown)
    return {
        "records": dict(records),
        "truncated": sum(p["truncated"] for p in parts),
        "sources": dict(sources),
        "skipped": dict(skipped),
        "skipped_examples": {r: xs[:5] for r, xs in examples.items()},
    }
