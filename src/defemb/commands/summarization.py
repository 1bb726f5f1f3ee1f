"""`defemb evaluate summarization`: fine-tune seq2seq checkpoints, decode with beam search, score ROUGE."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "summarization", help="fine-tune and score seq2seq models on CNN/DM, XSum or your JSONL (ROUGE-1/2/L)",
        description="Fine-tune each model per seed, decode the test set with beam search (paper Table 15: "
                    "CNN/DM beam 4 / length penalty 2.0, XSum 6 / 1.0) and score ROUGE F1 in [0, 1]. "
                    "Encoder-only checkpoints (e.g. minilm) are warm-started as tied encoder-decoders.")
    p.add_argument("--task", required=True, help="cnndm | xsum | jsonl:PATH (folder with train/valid/test.jsonl, "
                   "or one test .jsonl file; fields document, summary)")
    p.add_argument("--models", nargs="+", required=True, help="LABEL=PATH or PATH (local dir, hub name, minilm)")
    p.add_argument("--seeds", default="1", help="a count (3 -> 0,1,2) or a comma list (default 1 -> seed 0)")
    p.add_argument("--out", required=True, help="results folder; rerunning resumes (skips finished runs)")
    p.add_argument("--data", help="folder holding the task's files (default: DEFEMB_DATA or ../shared/data)")
    p.add_argument("--train-file", help="training set (.jsonl document/summary, or .csv) replacing the task's")
    p.add_argument("--valid-file", help="validation set: its loss is logged after each epoch (training.json)")
    p.add_argument("--test-file", help="test set replacing the task's")
    p.add_argument("--train-from-test", type=int, default=0, metavar="N",
                   help="fine-tune on N test examples (fixed split) and test on the rest; e.g. xsum")
    p.add_argument("--train-limit", type=int, help="first N training examples only")
    p.add_argument("--test-limit", type=int, help="first N test examples only")
    p.add_argument("--epochs", type=int, default=1, help="0 = no fine-tuning (default 1)")
    p.add_argument("--max-steps", type=int, help="stop after N optimizer steps")
    p.add_argument("--lr", type=float, default=3e-5, help="peak learning rate (default 3e-5, Table 15)")
    p.add_argument("--warmup-ratio", type=float, default=0.025, help="share of steps warming up (default 0.025)")
    p.add_argument("--batch-tokens", type=int, default=4096, help="padded source+target tokens per batch")
    p.add_argument("--accumulate", type=int, default=1, help="batches per optimizer step")
    p.add_argument("--max-source-length", type=int, help="source tokens kept (default 1024, clipped to the model)")
    p.add_argument("--max-target-length", type=int, help="target tokens kept / new tokens decoded "
                   "(default cnndm 140, xsum 60, jsonl 128)")
    p.add_argument("--min-length", type=int, help="fewest new tokens decoded (default cnndm 55, xsum 10, jsonl 0)")
    p.add_argument("--beams", type=int, help="beam size (default cnndm 4, xsum 6, jsonl 4)")
    p.add_argument("--length-penalty", type=float, help="beam length penalty (default cnndm 2.0, xsum 1.0)")
    p.add_argument("--decode-batch-size", type=int, default=8, help="documents per generate() call")
    p.add_argument("--prefix", help="text put before every source (default 'summarize: ' for T5, else none)")
    p.add_argument("--rare-subset", nargs="?", const="add", default="off", choices=["off", "add", "only"],
                   help="also score the test documents whose summary has >= 5%% rare tokens (add), or only them")
    p.add_argument("--rare-threshold", type=float, default=0.05, help="rare-token share for --rare-subset")
    p.add_argument("--ranking", help="rare band ranking: index | wordfreq | corpus:PATH (default by tokenizer)")
    p.add_argument("--rare-seen-only", action="store_true",
                   help="rare subset: keep only summaries whose tokens all occur in the training set (App. B.2)")
    p.add_argument("--no-tie", action="store_true", help="warm start: do not tie encoder and decoder weights")
    p.add_argument("--device", help="cpu | cuda | cuda:1 (default cuda when available)")
    p.add_argument("--trust-remote-code", action="store_true", help="allow a model's own Python code to run")
    p.add_argument("--force", action="store_true", help="rerun every run in an existing --out")
    p.set_defaults(func=cmd_summarization)


def cmd_summarization(args: argparse.Namespace) -> None:
    from defemb.commands import print_table as _print_table
    from defemb.evaluation.records import parse_seeds
    from defemb.evaluation.summarization import SummarizationConfig, evaluate_summarization

    config = SummarizationConfig(
        task=args.task, models=args.models, seeds=parse_seeds(args.seeds), data=args.data,
        train_file=args.train_file, valid_file=args.valid_file, test_file=args.test_file,
        train_from_test=args.train_from_test, train_limit=args.train_limit, test_limit=args.test_limit,
        epochs=args.epochs, max_steps=args.max_steps, lr=args.lr, warmup_ratio=args.warmup_ratio,
        batch_tokens=args.batch_tokens, accumulate=args.accumulate, max_source_length=args.max_source_length,
        max_target_length=args.max_target_length, min_length=args.min_length, beams=args.beams,
        length_penalty=args.length_penalty, decode_batch_size=args.decode_batch_size, prefix=args.prefix,
        rare_subset=args.rare_subset, rare_threshold=args.rare_threshold, ranking=args.ranking,
        rare_seen_only=args.rare_seen_only, tie_encoder_decoder=not args.no_tie, device=args.device,
        trust_remote_code=args.trust_remote_code,
    )
    records = evaluate_summarization(config, args.out, args.force)
    # one row per (model, seed, scored set) keeps the table narrow enough for an 80-column terminal
    rows = []
    for r in records:
        for part in ("test", "rare"):
            if f"{part}/rouge1" not in r.metrics:
                continue
            n = len(r.per_example[f"{part}/rouge1"])
            rows.append([r.label, r.seed, part, n] + [f"{100 * r.metrics[f'{part}/{m}']:.2f}"
                                                      for m in ("rouge1", "rouge2", "rougeL", "rougeLsum")]
                        + [f"{r.wall_s:.0f}"])
    header = ["model", "seed", "set", "docs", "R-1", "R-2", "R-L", "R-Lsum", "wall s"]
    _print_table(f"summarization {config.task}: ROUGE F1 x100 -> {args.out}", header, rows)
    for r in records:
        if r.status != "ok":
            print(f"{r.label} seed {r.seed} failed: {r.error}")
