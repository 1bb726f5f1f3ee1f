"""`defemb embed`: a definition row for every vocabulary token that occurs in some prompt (METHOD §8).

Encoder-only models read one masked token at a time (the others, including the rest of the word, stay
visible), as the paper does. Encoder-decoders and decoders read the word the way they were trained
(every occurrence replaced by a sentinel, or the word moved after the definition) and give rows for
all of its tokens in one pass. ``aggregate="first"`` keeps the first prompt that covers a token (the
authors' choice); ``"mean"`` averages over up to ``max_prompts`` prompts.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from tqdm import tqdm

from defemb.embeddings import save_embeddings
from defemb.errors import DefembError
from defemb.method.data import batch_plan, check_corpus, load_records, vocabulary_limit
from defemb.method.masking import STRATEGIES, Example, Vocabulary
from defemb.method.model import DefinitionEMB, collate
from defemb.method.train import reading
from defemb.models import load_model, vocabulary_hash
from defemb.outputs import check_writable


def load_run(run_dir: str | Path) -> tuple[DefinitionEMB, object, dict]:
    """The trained model of a finished run: body from ``model/``, W from ``head.safetensors``."""
    run_dir = Path(run_dir)
    if not all((run_dir / name).exists() for name in ("config.json", "model", "head.safetensors")):
        raise DefembError(f"'{run_dir}' holds no finished training run (config.json, model/ and head.safetensors)")
    with reading(run_dir / "config.json", run_dir) as path:
        config = dict(json.loads(path.read_text()))
    loaded = load_model(str(run_dir / "model"))
    with reading(run_dir / "head.safetensors", run_dir) as path:
        head = load_file(path)["weight"]
        model = DefinitionEMB(loaded.model, loaded.kind, head.shape[0])
        with torch.no_grad():
            model.head.weight.copy_(head)
    model.eval()
    return model, loaded, config


def predictable(record: dict, kind: str) -> list[tuple[int, int]]:
    """(group, position) pairs whose token this architecture predicts from this record."""
    groups = record["word_positions"]
    chosen = range(len(groups)) if kind != "decoder" else [len(groups) - 1]
    return [(g, p) for g in chosen for p in groups[g]]


def assign(records: list[dict], kind: str, max_prompts: int) -> dict[int, list[tuple[int, int, int]]]:
    """token id -> up to ``max_prompts`` (record, group, position) sources, in corpus order."""
    sources: dict[int, list[tuple[int, int, int]]] = defaultdict(list)
    for r, record in enumerate(records):
        for g, p in predictable(record, kind):
            token = record["input_ids"][p]
            if len(sources[token]) < max_prompts and all(src[0] != r for src in sources[token]):
                sources[token].append((r, g, p))
    return sources


def _single_mask(record: dict, position: int, vocab: Vocabulary) -> Example:
    ids = list(record["input_ids"])
    target = ids[position]
    ids[position] = vocab.mask_id
    return Example(ids, [position], [target])


@torch.no_grad()
def embed(run_dir: str | Path, corpus: str | Path, out: str | Path, aggregate: str = "first",
          max_prompts: int = 5, token_budget: int = 8192, force: bool = False) -> dict:
    """Write ``out`` (safetensors rows + provenance); returns counts."""
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
    sources = assign(records, model.kind, 1 if aggregate == "first" else max_prompts)
    wanted = {(r, p): token for token, srcs in sources.items() for r, _, p in srcs}
    if model.kind == "encoder":
        items = [(_single_mask(records[r], p, vocab), [(r, p)]) for (r, p) in wanted]
    else:
        strategy = STRATEGIES[model.kind]
        items = []
        for r in sorted({r for r, _ in wanted}):
            example = strategy(records[r], vocab, None)
            flat = [(r, p) for _, p in predictable(records[r], model.kind)]
            items.append((example, flat))
    sums: dict[int, torch.Tensor] = {}
    counts: dict[int, int] = defaultdict(int)
    lengths = np.array([len(example.input_ids) for example, _ in items])
    for batch_ids in tqdm(batch_plan(lengths, token_budget, 0, 0), desc="embed", unit=" batches"):
        chunk = [items[i] for i in batch_ids]
        rows = model(collate([example for example, _ in chunk], vocab.pad_id))  # (N, h_e)
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
