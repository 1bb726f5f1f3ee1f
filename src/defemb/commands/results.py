"""`defemb results DIR [DIR ...] --out DIR`: one table per (evaluator, task) with paired bootstrap p-values."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("results", help="merge evaluation runs: mean ± std over seeds, Δ, bootstrap p-values")
    p.add_argument("dirs", nargs="+", metavar="DIR", help="evaluation output directories (searched for result.json)")
    p.add_argument("--out", required=True, help="directory for results.md, results.json and results.png")
    p.add_argument("--order", help="model labels in table order, comma separated; the first with an ok run is "
                   "the reference "
                   "(default: the order the runs are found in)")
    p.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap draws (default 0)")
    p.add_argument("--force", action="store_true", help="overwrite an existing --out")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    from defemb.commands import print_table as _print_table
    from defemb.evaluation.results import CAPTION, HEADER, check_out, merge, table_rows, title, write_results

    check_out(args.out, args.dirs, args.force)
    order = [x.strip() for x in args.order.split(",")] if args.order is not None else None
    merged = merge(args.dirs, order=order, resamples=args.resamples, seed=args.seed)
    write_results(merged, args.out, args.force)
    for group in merged["groups"]:
        _print_table(title(group), HEADER, table_rows(group))
    print(CAPTION)
    print(f"results: {args.out}/results.md, results.json, results.png")
