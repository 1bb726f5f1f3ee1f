"""`defemb corpus build|stats`: the definition corpus."""

from __future__ import annotations

import argparse

from defemb.commands import print_table


def cmd_corpus_build(args: argparse.Namespace) -> None:
    from defemb.config import CorpusConfig
    from defemb.corpus.build import build_corpus

    config = CorpusConfig(
        tokenizer=args.tokenizer, sources=args.source or ([] if args.entities else ["gcide"]), entities=args.entities,
        numbers=not args.no_numbers, valid_percent=args.valid_percent, max_tokens=args.max_tokens,
        strict=args.strict, references=args.references, trust_remote_code=args.trust_remote_code,
    )
    stats = build_corpus(config, args.out, force=args.force, resume=args.resume)
    records = stats["records"]
    print(f"{records.get('train', 0)} train + {records.get('valid', 0)} valid records -> {args.out}")
    print("by source: " + ", ".join(f"{k} {v}" for k, v in sorted(stats["sources"].items())))
    if any(stats["references"].values()):
        print(f"cross-references ('See X.'): {stats['references']['resolved']} given the definition of X, "
              f"{stats['references']['unresolved']} kept (X has no definition of its own)")
    if stats["skipped"]:
        print("skipped: " + ", ".join(f"{k} {v}" for k, v in sorted(stats["skipped"].items(), key=lambda kv: -kv[1])))
        for reason, examples in stats["skipped_examples"].items():
            for example in examples[:2]:
                print(f"  {reason}: {example['location']}: {example['excerpt']}")


def cmd_corpus_stats(args: argparse.Namespace) -> None:
    from defemb.corpus.coverage import coverage
    from defemb.outputs import check_writable

    if args.json:
        check_writable(args.json, args.force)  # before the work, not after it
    result = coverage(args.corpus, args.tokenizer, args.ranking)
    rows = [["vocabulary", result["vocabulary"]]] + [[f"{b} band", v] for b, v in result["bands"].items()]
    rows.append(["numeric tokens", result["numeric"]])
    print_table(f"coverage of {args.tokenizer} by {args.corpus} (ranking {result['ranking']})",
                 ["tokens", "total", "covered", "%"], [[n, v["total"], v["covered"], v["percent"]] for n, v in rows])
    if args.json:
        from defemb.outputs import write_json_atomic

        write_json_atomic(args.json, result)


def register(subparsers: argparse._SubParsersAction) -> None:
    corpus = subparsers.add_parser("corpus", help="definition corpus: build prompts, measure coverage")
    corpus_sub = corpus.add_subparsers(dest="corpus_command", required=True, parser_class=type(corpus))
    p = corpus_sub.add_parser("build", help="dictionary definitions -> prompts with the word's token positions")
    p.add_argument("--tokenizer", required=True, help="model whose tokenizer to build for (dir, hub name, minilm)")
    p.add_argument("--source", action="append", help="gcide | gcide:DIR | gcide-examples[:DIR] (usage examples instead "
                   "of definitions) | wiktionary:PATH | tsv:PATH (word<TAB>[pos<TAB>]definition, or a header row "
                   "naming the columns) | jsonl:PATH (repeatable; default gcide)")
    p.add_argument("--entities", help="TSV of manual definitions for names and pieces: word<TAB>[pos<TAB>]definition "
                   "(like tsv:PATH; '#' starts a comment)")
    p.add_argument("--no-numbers", action="store_true", help="do not define the numeric vocabulary tokens")
    p.add_argument("--valid-percent", type=float, default=5.0,
                   help="share of headwords in valid.jsonl (split by a hash of the headword; default 5)")
    p.add_argument("--max-tokens", type=int, default=128, help="token budget per prompt")
    p.add_argument("--strict", action="store_true", help="stop at the first bad input line")
    p.add_argument("--references", default="resolve", choices=["resolve", "keep"],
                   help="a definition that only points elsewhere ('See Abnet.', 'Same as Aby.') gets the first "
                   "definition of the word it names (resolve, default) or stays as it is (keep)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted build of the same settings")
    p.add_argument("--out", required=True, help="corpus directory (train.jsonl, valid.jsonl, stats.json)")
    p.add_argument("--force", action="store_true", help="overwrite an existing --out")
    p.add_argument("--trust-remote-code", action="store_true", help="allow a model's own Python code to run")
    p.set_defaults(func=cmd_corpus_build)
    p = corpus_sub.add_parser("stats", help="vocabulary coverage per band and of numeric tokens")
    p.add_argument("corpus", help="corpus directory from `defemb corpus build`")
    p.add_argument("--tokenizer", required=True, help="model whose vocabulary to measure (dir, hub name, minilm)")
    p.add_argument("--ranking", help="index | wordfreq | corpus:PATH (default by tokenizer type)")
    p.add_argument("--json", help="also write the figures to this JSON file")
    p.add_argument("--force", action="store_true", help="overwrite an existing --json file")
    p.set_defaults(func=cmd_corpus_stats)
