"""Diagnosis commands: analyze, drift, baseline, export-projector, compare."""

from __future__ import annotations

import argparse
from pathlib import Path

from defemb.commands import common_options, nonnegative, print_table


def cmd_analyze(args: argparse.Namespace) -> None:
    from defemb.analysis.analyze import analyze, write_analysis
    from defemb.analysis.report import BAND_COLUMNS, NUMERIC_COLUMNS, band_rows, numeric_rows
    from defemb.config import AnalyzeConfig
    from defemb.outputs import check_writable

    config = AnalyzeConfig(
        model=args.model, ranking=args.ranking, table=args.table, tokens=args.tokens, sample=args.sample,
        k=args.k, seed=args.seed, plot_points=args.plot_points, trust_remote_code=args.trust_remote_code,
    )
    out = args.out or f"analysis-{Path(args.model.rstrip('/')).name}"
    check_writable(out, args.force)
    result = analyze(config)
    write_analysis(result, out, args.force)
    s = result.summary
    print_table(f"{s['model']}: {s['table']} table, ranking {s['ranking']}", BAND_COLUMNS, band_rows(s["bands"]))
    numeric = s["numeric_max_difference"]
    print_table("numeric Max Difference (lower is better)", NUMERIC_COLUMNS, numeric_rows(numeric))
    print(f"report: {Path(out) / 'report.html'}")


def cmd_drift(args: argparse.Namespace) -> None:
    from defemb.analysis.drift import drift
    from defemb.analysis.report import markdown_table
    from defemb.config import DriftConfig
    from defemb.outputs import atomic_dir, check_writable, write_json_atomic, write_text_atomic

    config = DriftConfig(args.model_a, args.model_b, ranking=args.ranking, table=args.table, k=args.k,
                         queries=args.queries, seed=args.seed, trust_remote_code=args.trust_remote_code)
    if args.out:
        check_writable(args.out, args.force)
    result = drift(config)
    header = ["band", "tokens", "moved", "moved/norm", "I(E) A", "I(E) B", "change", f"{args.k}-NN kept"]
    rows = [[name, b["n"], f"{b['displacement']:.4f}", f"{b['relative_displacement']:.4f}", f"{b['isotropy_a']:.4f}",
             f"{b['isotropy_b']:.4f}", f"{b['isotropy_change']:+.4f}", f"{b['knn_overlap']:.3f}"]
            for name, b in result["bands"].items()]
    print_table(f"drift {result['model_a']} -> {result['model_b']}", header, rows)
    if args.out:
        with atomic_dir(args.out, args.force) as tmp:
            write_json_atomic(tmp / "drift.json", result)
            write_text_atomic(tmp / "drift.md", markdown_table(header, [[str(c) for c in r] for r in rows]) + "\n")


def cmd_baseline(args: argparse.Namespace) -> None:
    from defemb.baselines import apply_baseline
    from defemb.config import BaselineConfig

    config = BaselineConfig(args.method, args.model, components=args.components, projection=args.projection,
                            table=args.table, trust_remote_code=args.trust_remote_code)
    summary = apply_baseline(config, args.out, args.force)
    print(f"{summary['method']} (D={summary['components']}, {summary['projection']} projection) "
          f"on the {summary['table']} table -> {args.out}")


def cmd_export_projector(args: argparse.Namespace) -> None:
    from defemb.analysis.analyze import vocabulary
    from defemb.analysis.projection import write_projector
    from defemb.frequency import rank_tokens
    from defemb.models import get_table, load_model
    from defemb.outputs import atomic_dir, check_writable

    check_writable(args.out, args.force)
    loaded = load_model(args.model, trust_remote_code=args.trust_remote_code)
    E = get_table(loaded.model, args.table)
    ranking = rank_tokens(loaded.tokenizer, E.shape[0], args.ranking, loaded.tokenizer_kind)
    ids = ranking.order[: args.limit] if args.limit else ranking.order
    with atomic_dir(args.out, args.force) as tmp:
        write_projector(tmp, E, ids, vocabulary(loaded, E.shape[0]), ranking.band_of(E.shape[0]))
    print(f"{len(ids)} rows -> {Path(args.out) / 'vectors.tsv'} and metadata.tsv")


def cmd_compare(args: argparse.Namespace) -> None:
    from defemb.analysis.report import comparison_rows, load_summary, markdown_table

    header, rows = comparison_rows({Path(d).name: load_summary(d) for d in args.analyses})
    print(markdown_table(header, rows))


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("analyze", help="isotropy per band, neighbours, numbers, plots and an HTML report")
    p.add_argument("model", help="local HF directory, hub name, or 'minilm' (the embedded default)")
    p.add_argument("--out", help="output directory (default analysis-<model name>)")
    p.add_argument("--tokens", nargs="+", default=[], help="tokens whose neighbours to list and label")
    p.add_argument("--sample", type=nonnegative, default=8, help="rare tokens sampled for neighbours")
    p.add_argument("-k", type=int, default=10, help="neighbours per token")
    p.add_argument("--seed", type=int, default=0, help="seed of the rare-token sample and the plotted points")
    p.add_argument("--plot-points", type=int, default=20_000, help="most points drawn in the projection")
    common_options(p)
    p.set_defaults(func=cmd_analyze)
    p = subparsers.add_parser("drift", help="geometry change between two checkpoints with one vocabulary")
    p.add_argument("model_a", help="the checkpoint before (local HF directory, hub name, or 'minilm')")
    p.add_argument("model_b", help="the checkpoint after, with the same vocabulary as model_a")
    p.add_argument("--out", help="also write drift.json and drift.md here")
    p.add_argument("-k", type=int, default=10, help="neighbours per query token whose overlap is reported")
    p.add_argument("--queries", type=int, default=1000, help="tokens per band whose neighbour sets are compared")
    p.add_argument("--seed", type=int, default=0, help="seed of the query-token sample")
    common_options(p)
    p.set_defaults(func=cmd_drift)
    p = subparsers.add_parser("baseline", help="write a DelDirection or Del-zscore checkpoint")
    p.add_argument("method", choices=["deldirection", "zscore"],
                   help="deldirection (All-but-the-top) or zscore (Del-zscore: DelDirection, then z-score)")
    p.add_argument("model", help="local HF directory, hub name, or 'minilm' (the embedded default)")
    p.add_argument("--out", required=True, help="directory for the new checkpoint (safetensors) and defemb.json")
    p.add_argument("--components", type=nonnegative, help="D principal directions to remove (default h/100)")
    p.add_argument("--projection", default="centred", choices=["centred", "raw"],
                   help="remove projections of the centred rows (default) or of the raw rows (Mu et al. Alg. 1)")
    common_options(p, ranking=False)
    p.set_defaults(func=cmd_baseline)
    p = subparsers.add_parser("export-projector", help="vectors.tsv + metadata.tsv for TensorBoard's projector")
    p.add_argument("model", help="local HF directory, hub name, or 'minilm' (the embedded default)")
    p.add_argument("--out", required=True, help="directory for vectors.tsv and metadata.tsv")
    p.add_argument("--limit", type=nonnegative, help="only the N most frequent tokens")
    common_options(p)
    p.set_defaults(func=cmd_export_projector)
    p = subparsers.add_parser("compare", help="side-by-side Markdown table of several `defemb analyze` outputs")
    p.add_argument("analyses", nargs="+", help="analysis directories (or analysis.json files)")
    p.set_defaults(func=cmd_compare)
