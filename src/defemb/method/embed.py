"""`defemb embed`: a definition row for every vocabulary token that occurs in some prompt (METHOD §8).

Each prompt is read the way training read it, with nothing of the word left in view: encoders see every
occurrence of the word (and every other copy of its tokens) masked — the authors masked one token and left
the other copies visible — and give rows for all its tokens in one pass; encoder-decoders replace each
occurrence by a sentinel; decoders read the definition and then one form of the word, one pass per form.

Which prompts: a token's own headword first (for a numeric token, its number definition), then the rest in
corpus order, so "wolf" is read from *wolf*, not from *aard-wolf*, and "7" from "seven; a one-digit number".
``aggregate="mean"`` (the default) averages the rows read from up to ``max_prompts`` of them; ``"first"`` keeps
the first. On MiniLM the mean is barely closer to the pretrained rows (per token, 0.3–0.5 % less squared error)
but its rows carry more of each word: with every covered row rebuilt (`replace --all --spread directions`) the
mean word-similarity ρ is 0.465 against 0.327 from the first prompt (docs/results.md, "Issue 9, ninth part").
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from tqdm import tqdm

from defemb.config import MAX_PROMPTS
from defemb.embeddings import save_embeddings
from defemb.errors import DefembError
from defemb.method.data import batch_plan, check_corpus, load_records, vocabulary_limit
from defemb.method.masking import STRATEGIES, Example, Vocabulary, definition_first, mask_encoder
from defemb.method.model import DefinitionEMB, collate, read_rows
from defemb.method.train import reading
from defemb.models import load_model, vocabulary_hash
from defemb.outputs import check_writable
from defemb.tokens import integer_value, surface


def load_run(run_dir: str | Path) -> tuple[DefinitionEMB, object, dict]:
    """The trained model of a finished run: body from ``model/``, W from ``head.safetensors``."""
    run_dir = Path(run_dir)
    if not all((run_dir / name).exists() for name in ("config.json", "model", "head.safetensors")):
        raise DefembError(f"'{run_dir}' holds no finished training run (config.json, model/ and head.safetensors)")
    with reading(run_dir / "config.json", run_dir) as path:
        config = dict(json.loads(path.read_text()))
    loaded = load_model(str(run_dir / "model"))
    with reading(run_dir / "head.safetensors", run_dir) as path:
        with safe_open(path, "pt") as handle:
            names = tuple((handle.metadata() or {}).get("maps", "all").split(","))
            stored = {key: handle.get_tensor(key) for key in handle.keys()}
        rows = loaded.model.get_input_embeddings().weight.shape[0]
        head_of_token = stored.get("head_of_token", torch.zeros(rows, dtype=torch.long))  # runs before band heads
        if len(head_of_token) != rows or int(head_of_token.max()) >= len(names):
            raise ValueError(f"its map index covers {len(head_of_token)} of {rows} tokens and {len(names)} maps")
        model = DefinitionEMB(loaded.model, loaded.kind, stored["weight"].shape[0], head_of_token=head_of_token,
                              names=names)
        model.head.load_state_dict({k: v for k, v in stored.items() if k != "head_of_token"})
    model.eval()
    model.bf16 = bool(config.get("bf16", False))  # rows are read in the precision the run trained in
    return model, loaded, config


def predictable(record: dict) -> list[tuple[int, int]]:
    """(group, position) of every marked token: every form of the word is a target, in every architecture."""
    return [(g, p) for g, group in enumerate(record["word_positions"]) for p in group]


def preference(record: dict, token: str) -> int:
    """0: the number definition of a numeric token; 1: the token's own headword; 2: any other prompt."""
    text = surface(token)
    if integer_value(token) is not None and record.get("location", "").startswith("numbers:"):
        return 0
    return 1 if text and text.casefold() == record["word"].casefold() else 2


def assign(records: list[dict], tokens: list[str], max_prompts: int) -> dict[int, list[tuple[int, int, int]]]:
    """token id -> up to ``max_prompts`` (record, group, position) sources: preferred prompts first (see
    `preference`); among equally preferred ones the dictionaries take turns (the first prompt from each
    source, then the second from each, ...), so a second dictionary is read even where the first holds
    ``max_prompts`` senses of the word; then corpus order. One source per prompt."""
    candidates: dict[int, list[tuple[int, int, int, int]]] = defaultdict(list)
    for r, record in enumerate(records):
        for g, p in predictable(record):
            token = record["input_ids"][p]
            if not candidates[token] or candidates[token][-1][1] != r:
                candidates[token].append((preference(record, tokens[token]), r, g, p))
    chosen = {}
    for token, found in candidates.items():
        turns: Counter = Counter()
        ranked = []
        for rank, r, g, p in sorted(found):
            source = (rank, records[r].get("source", ""))
            ranked.append((rank, turns[source], r, g, p))
            turns[source] += 1
        chosen[token] = [src[2:] for src in sorted(ranked)[:max_prompts]]
    return chosen


def examples(records: list[dict], kind: str, wanted: set[tuple[int, int]], vocab: Vocabulary
             ) -> list[tuple[Example, list[tuple[int, int]]]]:
    """The model inputs that read the ``wanted`` (record, position) pairs, each with the pairs it reads in order."""
    chosen = sorted({r for r, _ in wanted})
    if kind == "decoder":
        return [(definition_first(records[r], vocab, group=g), [(r, p) for p in group])
                for r in chosen for g, group in enumerate(records[r]["word_positions"])
                if any((r, p) in wanted for p in group)]
    strategy = mask_encoder if kind == "encoder" else STRATEGIES[kind]
    return [(strategy(records[r], vocab, None), [(r, p) for _, p in predictable(records[r])]) for r in chosen]


@torch.no_grad()
def embed(run_dir: str | Path, corpus: str | Path, out: str | Path, aggregate: str = "mean",
          max_prompts: int = MAX_PROMPTS, token_budget: int = 8192, force: bool = False,
          select: Callable[[np.ndarray], np.ndarray] | None = None) -> dict:
    """Write ``out`` (safetensors rows + provenance); returns counts.

    ``select`` maps the ids the corpus covers to the ids wanted (a pipeline embeds only what it replaces:
    on a decoder each row costs one pass of the model)."""
    if aggregate not in ("first", "mean"):
        raise DefembError(f"unknown --aggregate '{aggregate}'; choose first or mean")
    if isinstance(max_prompts, bool) or not isinstance(max_prompts, int) or max_prompts < 1:
        raise DefembError(f"--max-prompts must be a positive whole number (got {max_prompts!r})")
    if check_writable(out, force).is_dir():
        raise DefembError(f"--out '{out}' is a directory; give the name of a .safetensors file")
    model, loaded, config = load_run(run_dir)
    corpus_config = check_corpus(corpus, loaded.tokenizer)
    limit = vocabulary_limit(loaded)
    records = load_records(corpus, "train", limit) + load_records(corpus, "valid", limit)
    if not records:
        raise DefembError(f"corpus '{corpus}' has no records (train.jsonl and valid.jsonl are empty): nothing to embed")
    vocab = Vocabulary.for_model(loaded)
    tokens = loaded.tokenizer.convert_ids_to_tokens(list(range(limit)))
    sources = assign(records, tokens, 1 if aggregate == "first" else max_prompts)
    if select is not None:
        keep = set(np.asarray(select(np.array(sorted(sources), dtype=np.int64))).tolist())
        sources = {token: srcs for token, srcs in sources.items() if token in keep}
        if not sources:
            raise DefembError(f"corpus '{corpus}': none of the tokens asked for has a prompt; nothing to embed")
    wanted = {(r, p): token for token, srcs in sources.items() for r, _, p in srcs}
    items = examples(records, model.kind, set(wanted), vocab)
    sums: dict[int, torch.Tensor] = {}
    counts: dict[int, int] = defaultdict(int)
    lengths = np.array([len(example.input_ids) for example, _ in items])
    for batch_ids in tqdm(batch_plan(lengths, token_budget, 0, 0), desc="embed", unit=" batches"):
        chunk = [items[i] for i in batch_ids]
        rows = read_rows(model, collate([example for example, _ in chunk], vocab.pad_id))  # (N, h_e)
        keys = [key for _, flat in chunk for key in flat]
        for key, row in zip(keys, rows, strict=True):
            if key in wanted:
                token = wanted[key]
                sums[token] = sums.get(token, 0) + row
                counts[token] += 1
    token_ids = np.array(sorted(sums), dtype=np.int64)
    embeddings = torch.stack([sums[t] / counts[t] for t in token_ids.tolist()]).numpy().astype(np.float32)
    tokens = loaded.tokenizer.convert_ids_to_tokens(token_ids.tolist())
    provenance = [
        {"token_id": int(t), "token": tok, "prompts": [records[r]["location"] for r, _, _ in sources[int(t)]]}
        for t, tok in zip(token_ids, tokens, strict=True)
    ]
    metadata = {
        "vocab_hash": vocabulary_hash(loaded.tokenizer),
        "table": config.get("table", "input"),
        "model": config["model"],
        "aggregate": aggregate,
        "run": str(run_dir),
        "corpus": str(corpus),
        "corpus_vocab_hash": corpus_config["vocab_hash"],
    }
    save_embeddings(out, token_ids, embeddings, metadata, provenance)
    return {"rows": len(token_ids), "prompts": len(items)}
