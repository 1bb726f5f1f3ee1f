"""Where extension can act downstream: accuracy on the test pairs that hold a new token vs the rest.

    HF_HUB_OFFLINE=1 python benchmarks/quality_new_token_pairs.py --results runs/mrpc --extended runs/mrpc-ext \
        --task mrpc --reference original

Reads the per-example test scores of `defemb evaluate classification` (every seed) and splits the test
pairs by whether the extended checkpoint's tokenizer reads a token it added (its added.tsv) in them.
Prints, per model, mean accuracy on each part (pooled over seeds) and the paired bootstrap p against
--reference on the pairs with a new token, as Markdown.
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import numpy as np

from defemb.analysis.report import markdown_table
from defemb.evaluation.bootstrap import paired_bootstrap
from defemb.evaluation.records import read_records
from defemb.evaluation.tasks import load_task
from defemb.extend import added_ids
from defemb.models import load_tokenizer


def holds_new_token(extended: str, texts: list[tuple[str, str | None]]) -> np.ndarray:
    """For each (text_a, text_b): does the extended tokenizer read one of the added tokens in it? # (n,)"""
    tokenizer, added = load_tokenizer(extended), set(added_ids(extended).tolist())
    encoded = tokenizer([a for a, _ in texts], [b or "" for _, b in texts], add_special_tokens=False)["input_ids"]
    return np.array([bool(added.intersection(ids)) for ids in encoded])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", required=True, help="folder of `defemb evaluate classification`")
    parser.add_argument("--extended", required=True, help="the `defemb extend` checkpoint whose tokens count")
    parser.add_argument("--task", default="mrpc")
    parser.add_argument("--data", help="dataset folder (default: found by name)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--reference", default="original")
    args = parser.parse_args()
    examples = load_task(args.task, args.data).splits[args.split]
    mask = holds_new_token(args.extended, [(e.text_a, e.text_b) for e in examples])
    scores: dict[str, dict[int, np.ndarray]] = defaultdict(dict)
    for record in read_records(args.results):
        if record.status == "ok" and f"{args.split}/accuracy" in record.per_example:
            scores[record.label][record.seed] = np.asarray(record.per_example[f"{args.split}/accuracy"])
    reference = scores[args.reference]
    rows = []
    for label, by_seed in scores.items():
        seeds = sorted(set(by_seed) & set(reference))
        mine = np.concatenate([by_seed[s] for s in seeds])
        theirs = np.concatenate([reference[s] for s in seeds])
        inside = np.tile(mask, len(seeds))
        p = "—" if label == args.reference else f"{paired_bootstrap(theirs[inside], mine[inside])['p']:.3f}"
        rows.append([label, str(len(seeds)), f"{100 * mine[inside].mean():.2f}", f"{100 * mine[~inside].mean():.2f}",
                     f"{100 * (mine[inside].mean() - theirs[inside].mean()):+.2f}", p])
    print(f"{int(mask.sum())} of {len(mask)} {args.split} pairs hold a token that '{args.extended}' added\n")
    print(markdown_table(["model", "seeds", "accuracy, pairs with a new token %", "accuracy, the rest %",
                          f"Δ vs {args.reference} on pairs with a new token", "p"], rows))


if __name__ == "__main__":
    main()
