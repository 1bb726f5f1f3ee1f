"""`defemb evaluate drift`: geometry drift before -> after fine-tuning, as evaluation records."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser("drift", help="geometry drift per band as result records (primary rare/knn_overlap)")
    p.add_argument("before", nargs="?", help="the checkpoint fine-tuning started from")
    p.add_argument("after", nargs="?", help="the fine-tuned checkpoint")
    p.add_argument("--label", help="result folder name (default: AFTER's folder name)")
    p.add_argument("--results", metavar="DIR", help="instead of BEFORE AFTER: every model a results folder saved "
                   "(evaluate ... --save-models) against the checkpoint it started from")
    p.add_argument("--out", required=True, help="results folder (a rerun skips finished pairs)")
    p.add_argument("-k", type=int, default=10, help="neighbours compared per token (default 10)")
    p.add_argument("--queries", type=int, default=1000, help="tokens per band whose neighbour sets are compared")
    p.add_argument("--seed", type=int, default=0, help="seed of the query sample (default 0)")
    p.add_argument("--ranking", help="index | wordfreq | corpus:PATH (default by tokenizer)")
    p.add_argument("--table", default="input", help="input | encoder | decoder | output (default input)")
    p.add_argument("--force", action="store_true", help="replace an existing --out")
    p.add_argument("--trust-remote-code", action="store_true", help="allow a model's own Python code to run")
    p.set_defaults(func=cmd_drift)


def cmd_drift(args: argparse.Namespace) -> None:
    from defemb.commands import print_table as _print_table
    from defemb.config import DriftConfig
    from defemb.errors import DefembError
    from defemb.evaluation.drift import EVALUATOR, MEASURES, DriftJob, run_drift, saved_model_jobs
    from defemb.evaluation.records import read_records

    if bool(args.results) == bool(args.before and args.after):
        raise DefembError("give either BEFORE AFTER or --results DIR")
    if args.results:
        jobs = saved_model_jobs(args.results)
    else:
        jobs = [DriftJob(args.before, args.after, args.label or Path(args.after.rstrip("/")).name, None)]
    settings = DriftConfig(jobs[0].before, jobs[0].after, ranking=args.ranking, table=args.table, k=args.k,
                           queries=args.queries, seed=args.seed, trust_remote_code=args.trust_remote_code)
    run_drift(jobs, settings, args.out, force=args.force)
    rows = []
    for r in read_records(args.out):
        if r.evaluator != EVALUATOR:
            continue
        seed = "none" if r.seed is None else r.seed
        if r.status != "ok":
            rows.append([r.label, seed, "", f"failed: {r.error}", "", ""])
            continue
        groups = [g for g in ("added",) if any(k.startswith(f"{g}/") for k in r.metrics)]  # an extend start's
        for band in ("rare", "medium", "frequent", "all", *groups):
            rows.append([r.label, seed, band, *[f"{r.metrics[f'{band}/{m}']:.4f}" if f"{band}/{m}" in r.metrics
                                                else "—" for m in MEASURES]])
    _print_table(f"drift -> {args.out}", ["model", "seed", "band", "moved/norm", f"{args.k}-NN kept", "ΔI(E)"], rows)
