"""The `defemb` command: subcommands parse, call the library, print. No logic lives here."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from defemb.errors import DefembError


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (exit code 2), like DefembError."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def _common(p: argparse.ArgumentParser, ranking: bool = True) -> None:
    if ranking:
        p.add_argument("--ranking", help="token frequency ranking: index | wordfreq | corpus:PATH "
                       "(default: index for byte-level BPE, wordfreq otherwise)")
    p.add_argument("--table", default="input", help="input | encoder | decoder | output (default input)")
    p.add_argument("--trust-remote-code", action="store_true", help="allow a model's own Python code to run")
    p.add_argument("--force", action="store_true", help="overwrite an existing --out")


def _print_table(title: str, header, rows) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for column in header:
        table.add_column(column)
    for row in rows:
        table.add_row(*[str(c) for c in row])
    Console().print(table)


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
    _print_table(f"{s['model']}: {s['table']} table, ranking {s['ranking']}", BAND_COLUMNS, band_rows(s["bands"]))
    numeric = s["numeric_max_difference"]
    _print_table("numeric Max Difference (lower is better)", NUMERIC_COLUMNS, numeric_rows(numeric))
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
    _print_table(f"drift {result['model_a']} -> {result['model_b']}", header, rows)
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


def cmd_corpus_build(args: argparse.Namespace) -> None:
    from defemb.config import CorpusConfig
    from defemb.corpus.build import build_corpus

    config = CorpusConfig(
        tokenizer=args.tokenizer, sources=args.source or ([] if args.entities else ["gcide"]), entities=args.entities,
        numbers=not args.no_numbers, valid_percent=args.valid_percent, max_tokens=args.max_tokens,
        strict=args.strict, trust_remote_code=args.trust_remote_code,
    )
    stats = build_corpus(config, args.out, force=args.force, resume=args.resume)
    records = stats["records"]
    print(f"{records.get('train', 0)} train + {records.get('valid', 0)} valid records -> {args.out}")
    print("by source: " + ", ".join(f"{k} {v}" for k, v in sorted(stats["sources"].items())))
    if stats["skipped"]:
        print("skipped: " + ", ".join(f"{k} {v}" for k, v in sorted(stats["skipped"].items(), key=lambda kv: -kv[1])))
        for reason, examples in stats["skipped_examples"].items():
            for example in examples[:2]:
                print(f"  {reason}: {example['location']}: {example['excerpt']}")


def cmd_corpus_stats(args: argparse.Namespace) -> None:
    from defemb.corpus.coverage import coverage

    result = coverage(args.corpus, args.tokenizer, args.ranking)
    rows = [["vocabulary", result["vocabulary"]]] + [[f"{b} band", v] for b, v in result["bands"].items()]
    rows.append(["numeric tokens", result["numeric"]])
    _print_table(f"coverage of {args.tokenizer} by {args.corpus} (ranking {result['ranking']})",
                 ["tokens", "total", "covered", "%"], [[n, v["total"], v["covered"], v["percent"]] for n, v in rows])
    if args.json:
        from defemb.outputs import write_json_atomic

        write_json_atomic(args.json, result)


def cmd_replace(args: argparse.Namespace) -> None:
    from defemb.replace import ReplaceConfig, replace

    config = ReplaceConfig(
        args.model, args.embeddings, task_data=args.task_data or [], alpha=args.alpha, all_tokens=args.all_tokens,
        blend=args.blend, numbers=args.numbers, ranking=args.ranking, table=args.table,
        trust_remote_code=args.trust_remote_code,
    )
    summary = replace(config, args.out, args.force)
    print(f"replaced {summary['replaced']} rows of the {summary['table']} table "
          f"({summary['candidates']} candidates with a definition row, blend {summary['blend']}) -> {args.out}")


def cmd_train(args: argparse.Namespace) -> None:
    from defemb.config import TrainConfig
    from defemb.method.train import resume, train

    if args.resume:
        summary = resume(args.resume)
        out = args.resume
    else:
        if not (args.model and args.corpus and args.out):
            raise DefembError("defemb train needs MODEL, --corpus and --out (or --resume RUN_DIR)")
        fields = {k: getattr(args, k) for k in ("preset", "table", "objective", "steps", "warmup", "tokens", "lr",
                                               "head_lr_scale", "grad_accum", "eval_every", "save_every",
                                               "patience", "train_embeddings", "seed", "trust_remote_code")}
        if args.no_warm_start:
            fields["warm_start"] = False
        summary = train(TrainConfig(model=args.model, corpus=args.corpus, **fields), args.out, args.force)
        out = args.out
    print(f"trained {summary['steps']} steps; best validation ‖e−ẽ‖² {summary['best_valid_mse']:.4f} -> {out}")


def cmd_embed(args: argparse.Namespace) -> None:
    from defemb.method.embed import embed

    result = embed(args.run, args.corpus, args.out, aggregate=args.aggregate, max_prompts=args.max_prompts,
                   force=args.force)
    print(f"{result['rows']} definition rows from {result['prompts']} prompts -> {args.out}")


def cmd_add_tokens(args: argparse.Namespace) -> None:
    from defemb.method.add_tokens import add_tokens

    result = add_tokens(args.model, args.run, args.words, args.out, force=args.force, table=args.table)
    print(f"added {result['added']} tokens (ids from {result['first_id']}) -> {args.out}; see added.tsv")


def cmd_run(args: argparse.Namespace) -> None:
    from defemb.pipeline import run_pipeline

    print(run_pipeline(args.out, preset=args.preset, model=args.model, source=args.source, ranking=args.ranking,
                       seed=args.seed))


def _nonnegative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got '{text}'") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    from defemb import __version__

    parser = _Parser(prog="defemb", description="Diagnose and repair rare-token embeddings of pretrained LMs.")
    parser.add_argument("--version", action="version", version=f"defemb {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("analyze", help="isotropy per band, neighbours, numbers, plots and an HTML report")
    p.add_argument("model", help="local HF directory, hub name, or 'minilm' (the embedded default)")
    p.add_argument("--out", help="output directory (default analysis-<model name>)")
    p.add_argument("--tokens", nargs="+", default=[], help="tokens whose neighbours to list and label")
    p.add_argument("--sample", type=_nonnegative, default=8, help="rare tokens sampled for neighbours")
    p.add_argument("-k", type=int, default=10, help="neighbours per token")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--plot-points", type=int, default=20_000, help="most points drawn in the projection")
    _common(p)
    p.set_defaults(func=cmd_analyze)

    p = sub.add_parser("drift", help="geometry change between two checkpoints with one vocabulary")
    p.add_argument("model_a")
    p.add_argument("model_b")
    p.add_argument("--out", help="also write drift.json and drift.md here")
    p.add_argument("-k", type=int, default=10)
    p.add_argument("--queries", type=int, default=1000, help="tokens per band whose neighbour sets are compared")
    p.add_argument("--seed", type=int, default=0)
    _common(p)
    p.set_defaults(func=cmd_drift)

    p = sub.add_parser("baseline", help="write a DelDirection or Del-zscore checkpoint")
    p.add_argument("method", choices=["deldirection", "zscore"])
    p.add_argument("model")
    p.add_argument("--out", required=True)
    p.add_argument("--components", type=_nonnegative, help="D principal directions to remove (default h/100)")
    p.add_argument("--projection", default="centred", choices=["centred", "raw"],
                   help="remove projections of the centred rows (default) or of the raw rows (Mu et al. Alg. 1)")
    _common(p, ranking=False)
    p.set_defaults(func=cmd_baseline)

    p = sub.add_parser("export-projector", help="vectors.tsv + metadata.tsv for TensorBoard's projector")
    p.add_argument("model")
    p.add_argument("--out", required=True)
    p.add_argument("--limit", type=_nonnegative, help="only the N most frequent tokens")
    _common(p)
    p.set_defaults(func=cmd_export_projector)

    corpus = sub.add_parser("corpus", help="definition corpus: build prompts, measure coverage")
    corpus_sub = corpus.add_subparsers(dest="corpus_command", required=True, parser_class=_Parser)
    p = corpus_sub.add_parser("build", help="dictionary definitions -> prompts with the word's token positions")
    p.add_argument("--tokenizer", required=True, help="model whose tokenizer to build for (dir, hub name, minilm)")
    p.add_argument("--source", action="append", help="gcide | gcide:DIR | gcide-examples[:DIR] (usage examples instead "
                   "of definitions) | wiktionary:PATH | tsv:PATH | jsonl:PATH "
                   "(repeatable; default gcide)")
    p.add_argument("--entities", help="TSV of manual definitions for names and pieces: word<TAB>[pos<TAB>]definition")
    p.add_argument("--no-numbers", action="store_true", help="do not define the numeric vocabulary tokens")
    p.add_argument("--valid-percent", type=float, default=5.0)
    p.add_argument("--max-tokens", type=int, default=128, help="token budget per prompt")
    p.add_argument("--strict", action="store_true", help="stop at the first bad input line")
    p.add_argument("--resume", action="store_true", help="continue an interrupted build of the same settings")
    p.add_argument("--out", required=True)
    p.add_argument("--force", action="store_true")
    p.add_argument("--trust-remote-code", action="store_true")
    p.set_defaults(func=cmd_corpus_build)
    p = corpus_sub.add_parser("stats", help="vocabulary coverage per band and of numeric tokens")
    p.add_argument("corpus")
    p.add_argument("--tokenizer", required=True)
    p.add_argument("--ranking", help="index | wordfreq | corpus:PATH (default by tokenizer type)")
    p.add_argument("--json", help="also write the figures to this JSON file")
    p.set_defaults(func=cmd_corpus_stats)

    p = sub.add_parser("replace", help="write a checkpoint with definition embeddings for the task's rare tokens")
    p.add_argument("model")
    p.add_argument("--embeddings", required=True, help="definition-embeddings file from `defemb embed`")
    p.add_argument("--alpha", type=float, help="replace the rarest task tokens, up to this percent of the vocabulary")
    p.add_argument("--task-data", nargs="+", help="task training files: .tsv/.csv (text columns), .jsonl, text")
    p.add_argument("--all", dest="all_tokens", action="store_true", help="replace every token that has a row")
    p.add_argument("--blend", type=float, default=1.0, help="λ: new = (1-λ)·old + λ·definition (default 1)")
    p.add_argument("--numbers", action="store_true",
                   help="also replace every numeric token with a row, so number rows stay one consistent set")
    p.add_argument("--ranking", help="index | wordfreq | corpus:PATH (default by tokenizer type)")
    p.add_argument("--table", help="input | encoder | decoder (default: the embeddings file's table)")
    p.add_argument("--out", required=True)
    p.add_argument("--force", action="store_true")
    p.add_argument("--trust-remote-code", action="store_true")
    p.set_defaults(func=cmd_replace)

    p = sub.add_parser("train", help="train DefinitionEMB on a definition corpus")
    p.add_argument("model", nargs="?", help="model to initialise from (dir, hub name, minilm)")
    p.add_argument("--corpus", help="corpus directory built for this model's tokenizer")
    p.add_argument("--out", help="run directory")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run from its last checkpoint")
    p.add_argument("--preset", default="small", help="roberta | bart | t5 (paper Table 12) | small (CPU)")
    p.add_argument("--table", default="input", help="table to rebuild: input | encoder | decoder")
    p.add_argument("--objective", default="mimic", help="mimic | lm (the paper's w/o-mimicking ablation)")
    for name, kind in (("steps", int), ("warmup", int), ("tokens", int), ("lr", float), ("head-lr-scale", float)):
        p.add_argument(f"--{name}", type=kind, help="override the preset")
    p.add_argument("--grad-accum", type=int, default=1)
    p.add_argument("--eval-every", type=int, default=200)
    p.add_argument("--save-every", type=int, default=200)
    p.add_argument("--patience", type=int, default=0, help="early stop after N evaluations without improvement")
    p.add_argument("--train-embeddings", action="store_true", help="also update the token tables")
    p.add_argument("--no-warm-start", action="store_true", help="do not fit W by ridge least squares first")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--force", action="store_true")
    p.add_argument("--trust-remote-code", action="store_true")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("embed", help="definition rows for every token the corpus covers")
    p.add_argument("run", help="finished training run directory")
    p.add_argument("--corpus", required=True)
    p.add_argument("--out", required=True, help="output .safetensors file")
    p.add_argument("--aggregate", default="first", choices=["first", "mean"])
    p.add_argument("--max-prompts", type=int, default=5, help="prompts averaged per token with --aggregate mean")
    p.add_argument("--force", action="store_true")
    p.set_defaults(func=cmd_embed)

    p = sub.add_parser("add-tokens", help="add new words with rows predicted from their definitions")
    p.add_argument("model")
    p.add_argument("--run", required=True, help="finished training run directory")
    p.add_argument("--words", required=True, help="TSV: word<TAB>[pos<TAB>]definition")
    p.add_argument("--out", required=True)
    p.add_argument("--table", default="input")
    p.add_argument("--force", action="store_true")
    p.set_defaults(func=cmd_add_tokens)

    p = sub.add_parser("run", help="the whole pipeline: analyze, corpus, train, embed, replace, analyze again")
    p.add_argument("--preset", default="quickstart", help="quickstart (~15 min on 2 CPU cores) | full")
    p.add_argument("--out", default="defemb-run", help="pipeline directory (rerun the command to continue)")
    p.add_argument("--model", default="minilm")
    p.add_argument("--source", default="gcide", help="dictionary source spec (see corpus build)")
    p.add_argument("--ranking", help="index | wordfreq | corpus:PATH")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_run)

    import importlib

    from defemb import commands

    evaluate = sub.add_parser("evaluate", help="fine-tune and score checkpoints: classification, summarization, ...")
    evaluate_sub = evaluate.add_subparsers(dest="evaluate_command", required=True, parser_class=_Parser)
    for name in commands.EVALUATE:
        importlib.import_module(f"defemb.commands.{name}").register(evaluate_sub)
    for name in commands.TOP:
        importlib.import_module(f"defemb.commands.{name}").register(sub)

    p = sub.add_parser("compare", help="side-by-side Markdown table of several `defemb analyze` outputs")
    p.add_argument("analyses", nargs="+", help="analysis directories (or analysis.json files)")
    p.set_defaults(func=cmd_compare)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from transformers.utils import logging as hf_logging

    # Per-tensor "Loading weights" bars are noise next to our own output; errors stay one line.
    hf_logging.disable_progress_bar()
    try:
        args.func(args)
    except DefembError as exc:
        print(f"defemb: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("defemb: interrupted; no output was written", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
