"""`defemb evaluate generate`: a chat model's answers about words, one section per word, models side by side."""

from __future__ import annotations

import argparse

from defemb.commands import results_folder_options


def register(subparsers) -> None:
    p = subparsers.add_parser("generate", help="chat LMs: greedy answers to 'What does WORD mean?' per model")
    p.add_argument("--models", nargs="+", required=True, help="LABEL=PATH or PATH (dir, hub name, smollm2, .gguf)")
    p.add_argument("--words", required=True, help="added.tsv (from extend/add-tokens) or one word per line")
    p.add_argument("--prompt", default="What does {word} mean?", help="the user message; {word} is replaced by "
                   "each word (default: 'What does {word} mean?')")
    p.add_argument("--max-words", type=int, default=8, help="the first N words (default 8)")
    p.add_argument("--max-new-tokens", type=int, default=48, help="tokens per answer (default 48)")
    results_folder_options(p, "folder: <label>.json per model and generations.md (a rerun skips models done)")
    p.set_defaults(func=cmd_generate)


def cmd_generate(args: argparse.Namespace) -> None:
    from pathlib import Path

    from defemb.evaluation.generate import REPORT, GenerateConfig, run_generate

    config = GenerateConfig(models=args.models, words=args.words, prompt=args.prompt, max_words=args.max_words,
                            max_new_tokens=args.max_new_tokens, trust_remote_code=args.trust_remote_code)
    run_generate(config, args.out, force=args.force)
    print(f"generations -> {Path(args.out) / REPORT}")
