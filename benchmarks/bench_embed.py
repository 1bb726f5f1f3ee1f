"""`embed` speed: every covered token of a corpus, beside a one-prompt-at-a-time loop, same run.

    HF_HUB_OFFLINE=1 python benchmarks/bench_embed.py --run runs/train --corpus runs/corpus [--naive 200]

The naive loop runs embed's own examples (one per prompt for encoders, one per form for decoders) one by one
(no batching, no length buckets) for the first ``--naive`` tokens and is extrapolated linearly to all of
them (each costs about the same).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from defemb.method.data import load_records, vocabulary_limit
from defemb.method.embed import assign, embed, examples, load_run
from defemb.method.masking import Vocabulary
from defemb.method.model import collate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True)
    parser.add_argument("--corpus", required=True)
    parser.add_argument("--naive", type=int, default=200, help="tokens embedded one at a time")
    args = parser.parse_args()
    torch.set_flush_denormal(True)
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        # one prompt per row, as the tables in docs/benchmarks.md were measured
        result = embed(args.run, args.corpus, Path(folder) / "emb.safetensors", aggregate="first")
        ours = time.perf_counter() - started
    model, loaded, _ = load_run(args.run)
    limit = vocabulary_limit(loaded)
    records = load_records(args.corpus, "train", limit) + load_records(args.corpus, "valid", limit)
    vocab = Vocabulary.for_model(loaded)
    tokens = loaded.tokenizer.convert_ids_to_tokens(list(range(limit)))
    sources = list(assign(records, tokens, 1).values())[: args.naive]
    items = examples(records, model.kind, {(r, p) for (r, _, p), *_ in sources}, vocab)
    started = time.perf_counter()
    with torch.no_grad():
        for example, _ in items:
            model(collate([example], vocab.pad_id))
    naive = (time.perf_counter() - started) / len(sources) * result["rows"]
    print("| method | rows | wall s | rows/s | naive ÷ ours |")
    print("|---|---|---|---|---|")
    print(f"| defemb embed (batched, length buckets; includes loading) | {result['rows']} | {ours:.1f} | "
          f"{result['rows'] / ours:.0f} | {naive / ours:.1f} |")
    print(f"| one prompt at a time (extrapolated from {len(sources)}) | {result['rows']} | {naive:.1f} | "
          f"{result['rows'] / naive:.0f} | 1.0 |")


if __name__ == "__main__":
    main()
