"""`defemb evaluate wordsim`: Spearman ρ of static word vectors on word-similarity sets."""

from __future__ import annotations

import argparse

from defemb.commands import results_folder_options
from defemb.config import SENSES


def register(subparsers) -> None:
    p = subparsers.add_parser("wordsim", help="word similarity: Spearman ρ of mean token rows vs human scores")
    p.add_argument("--models", nargs="+", help="LABEL=PATH or PATH (dir, hub name, minilm)")
    p.add_argument("--add-tokens", metavar="RUN|CHECKPOINT",
                   help="instead of --models: the words a `defemb extend` checkpoint added (or, for a training run, "
                   "every set word the model splits and a source defines), initialised four ways: resize, pieces, "
                   "desc_init, definitionemb; scored on all pairs and on the pairs holding a new word")
    p.add_argument("--source", action="append", help="definitions of the new words with --add-tokens RUN, as in "
                   "`corpus build` (repeatable; default gcide)")
    p.add_argument("--senses", type=int, default=SENSES, help="with --add-tokens RUN: definitions per new word whose "
                   "predicted rows are averaged (default %(default)s)")
    p.add_argument("--min-pairs", type=int, default=20,
                   help="pairs with a new word a set needs to be scored on them (default 20)")
    p.add_argument("--sets", nargs="+", metavar="DIR|FILE",
                   help="similarity files or folders (default: the shared word-sim/eval-word-vectors)")
    p.add_argument("--table", default="input", help="input | encoder | decoder | output (default input)")
    results_folder_options(p)
    p.set_defaults(func=cmd_wordsim)


def cmd_wordsim(args: argparse.Namespace) -> None:
    from defemb.commands import print_table as _print_table
    from defemb.evaluation.records import read_records
    from defemb.evaluation.wordsim import EVALUATOR, WordsimConfig, run_wordsim

    config = WordsimConfig(models=args.models or [], sets=args.sets, table=args.table,
                           trust_remote_code=args.trust_remote_code, add_tokens=args.add_tokens,
                           sources=args.source or ["gcide"], min_pairs=args.min_pairs, senses=args.senses)
    run_wordsim(config, args.out, force=args.force)
    records = [r for r in read_records(args.out) if r.evaluator == EVALUATOR]
    ok = [r for r in records if r.status == "ok"]
    names = sorted({k.rsplit("/", 1)[0] for r in ok for k in r.metrics if k.endswith("/coverage")})
    rows = [[n] + [f"{r.metrics[f'{n}/spearman']:.3f} ({r.metrics[f'{n}/coverage']:.0%})"
                   if f"{n}/spearman" in r.metrics else "—" for r in ok] for n in names]
    rows.append(["mean"] + [f"{r.metrics['mean/spearman']:.3f}" for r in ok])
    if any("new/mean/spearman" in r.metrics for r in ok):
        rows.append(["mean (pairs with a new word)"] + [f"{r.metrics.get('new/mean/spearman', float('nan')):.3f}"
                                                        for r in ok])
    _print_table(f"word similarity: Spearman ρ (coverage) -> {args.out}", ["set", *[r.label for r in ok]], rows)
    for r in records:
        if r.status != "ok":
            print(f"{r.label}: failed: {r.error}")
