"""`defemb evaluate lm`: held-out text, rare tokens and chosen words under causal LMs."""

from __future__ import annotations

import argparse

from defemb.commands import results_folder_options


def register(subparsers) -> None:
    p = subparsers.add_parser("lm", help="causal LMs: bits per byte, rare-token NLL, NLL of and after chosen words")
    p.add_argument("--models", nargs="+", required=True, help="LABEL=PATH or PATH (dir, hub name, smollm2, .gguf)")
    p.add_argument("--data", default="cnndm", help="cnndm | xsum (their test documents) | FILE (.jsonl/.csv/.tsv "
                   "text columns, other files one text per line)")
    p.add_argument("--max-docs", type=int, default=200, help="documents scored (the first N; default 200)")
    p.add_argument("--max-length", type=int, default=256, help="tokens per document (default 256)")
    p.add_argument("--words", help="added.tsv (from add-tokens/extend) or one word per line: NLL of each word and "
                   "of the tokens after it, on sentences of --data that contain it")
    p.add_argument("--sentences-per-word", type=int, default=8, help="sentences per word (default 8)")
    p.add_argument("--after", type=int, default=24, help="tokens after the word that are scored (default 24)")
    p.add_argument("--ranking", help="index | wordfreq | corpus:PATH, for the rare band (default by tokenizer)")
    p.add_argument("--batch-size", type=int, default=4, help="sequences per forward pass (default 4)")
    results_folder_options(p)
    p.set_defaults(func=cmd_lm)


def cmd_lm(args: argparse.Namespace) -> None:
    from defemb.commands import print_table
    from defemb.evaluation.lm import EVALUATOR, LmConfig, run_lm
    from defemb.evaluation.records import read_records

    config = LmConfig(models=args.models, data=args.data, max_docs=args.max_docs, max_length=args.max_length,
                      words=args.words, sentences_per_word=args.sentences_per_word, after=args.after,
                      ranking=args.ranking, batch_size=args.batch_size, trust_remote_code=args.trust_remote_code)
    run_lm(config, args.out, force=args.force)
    records = [r for r in read_records(args.out) if r.evaluator == EVALUATOR]
    ok = [r for r in records if r.status == "ok"]
    names = [n for n in ("text/bpb", "text/nll", "text/ppl", "rare/nll", "word/nll", "after/nll")
             if any(n in r.metrics for r in ok)]
    rows = [[n] + [f"{r.metrics[n]:.4f}" if n in r.metrics else "—" for r in ok] for n in names]
    print_table(f"language modelling (lower is better) -> {args.out}", ["measure", *[r.label for r in ok]], rows)
    for r in records:
        if r.status != "ok":
            print(f"{r.label}: failed: {r.error}")
