"""`defemb evaluate probe`: the numeric probe of paper Table 7 on frozen models."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser("probe", help="numeric probe: logistic regression on last-layer word states")
    p.add_argument("--models", nargs="+", required=True, help="LABEL=PATH or PATH (dir, hub name, minilm)")
    p.add_argument("--seeds", default="1", help="a count (3 -> 0,1,2) or a comma list (default 1: seed 0)")
    p.add_argument("--test-tokens", dest="n_test", type=int, default=78,
                   help="rare numeric test tokens, and as many rare non-numeric ones (default 78, as the paper)")
    p.add_argument("--other-words", dest="n_other", type=int, default=1000,
                   help="dictionary words drawn for the 'other' class of train/valid (default 1000)")
    p.add_argument("--words", help="file of words, one a line, instead of the GCIDE headwords")
    p.add_argument("--ranking", help="index | wordfreq | corpus:PATH: which tokens are rare (default by tokenizer)")
    p.add_argument("--batch-size", type=int, default=64, help="words per forward pass when reading states")
    p.add_argument("--out", required=True, help="results folder (a rerun skips finished runs)")
    p.add_argument("--force", action="store_true", help="replace an existing --out")
    p.add_argument("--trust-remote-code", action="store_true", help="allow a model's own Python code to run")
    p.set_defaults(func=cmd_probe)


def cmd_probe(args: argparse.Namespace) -> None:
    from defemb.commands import print_table as _print_table
    from defemb.evaluation.probe import EVALUATOR, ProbeConfig, run_probe
    from defemb.evaluation.records import parse_seeds, read_records

    config = ProbeConfig(models=args.models, seeds=parse_seeds(args.seeds), n_test=args.n_test, n_other=args.n_other,
                         words=args.words, ranking=args.ranking, batch_size=args.batch_size,
                         trust_remote_code=args.trust_remote_code)
    run_probe(config, args.out, force=args.force)
    columns = ("test/accuracy", "test/accuracy_numeric", "test/accuracy_other", "valid/accuracy")
    rows = []
    for r in read_records(args.out):
        if r.evaluator != EVALUATOR:
            continue
        cells = [f"{r.metrics[c]:.3f}" if c in r.metrics else "—" for c in columns] if r.status == "ok" else \
            [f"failed: {r.error}"] + [""] * (len(columns) - 1)
        rows.append([r.label, r.seed, r.config.get("test_tokens", ""), *cells])
    _print_table(f"numeric probe -> {args.out}", ["model", "seed", "test tokens", "test", "numeric", "other", "valid"],
                 rows)
