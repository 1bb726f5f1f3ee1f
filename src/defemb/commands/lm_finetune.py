"""`defemb evaluate lm-finetune`: held-out LM loss while fine-tuning, per initialisation of the new tokens."""

from __future__ import annotations

import argparse

from defemb.commands import results_folder_options


def register(subparsers) -> None:
    p = subparsers.add_parser("lm-finetune", help="fine-tune causal LMs on sentences with the new words: "
                              "held-out loss curve per model (does a better start converge faster?)")
    p.add_argument("--models", nargs="+", required=True, help="LABEL=PATH or PATH: extend outputs (one per "
                   "--init) and the original model as a reference")
    p.add_argument("--words", required=True, help="added.tsv (from extend) or one word per line: training and "
                   "held-out sentences are those of --data that contain a word")
    p.add_argument("--data", default="cnndm", help="cnndm | xsum (their test documents) | FILE (.jsonl/.csv/.tsv "
                   "text columns, other files one text per line)")
    p.add_argument("--max-docs", type=int, default=500, help="documents searched for sentences (default 500)")
    p.add_argument("--steps", type=int, default=200, help="optimiser steps per model (default 200)")
    p.add_argument("--train", choices=["all", "new"], default="all", help="all: every weight trains; new: only "
                   "the rows of the tokens the checkpoint added (its added.tsv; PEFT's trainable_token_indices)")
    p.add_argument("--lr", type=float, help="peak learning rate, linear warm-up (10%% of the steps) and decay to 0 "
                   "(default 5e-5 for all, the usual full fine-tuning rate; 1e-3 for new: a few rows alone move "
                   "too little at 5e-5, PEFT token and prompt tuning use 1e-3 and up)")
    p.add_argument("--batch-size", type=int, default=8, help="sentences per step (default 8)")
    p.add_argument("--max-length", type=int, default=64, help="tokens per sentence (default 64)")
    p.add_argument("--eval-every", type=int, default=25, help="steps between held-out evaluations (default 25)")
    p.add_argument("--held-out", type=float, default=0.25, help="share of the sentences never trained on, the "
                   "same for every model (seeded; default 0.25)")
    p.add_argument("--after", type=int, default=24, help="tokens after the word scored by after/nll (default 24)")
    p.add_argument("--seed", type=int, default=0, help="seeds the split, the batch order and dropout (default 0)")
    p.add_argument("--precision", choices=["auto", "bf16", "fp32"], default="auto", help="the training forward "
                   "pass: auto (bfloat16 autocast where measured faster on this machine, the default) | bf16 | "
                   "fp32; weights, optimiser and held-out scores stay float32")
    results_folder_options(p)
    p.set_defaults(func=cmd_lm_finetune)


def cmd_lm_finetune(args: argparse.Namespace) -> None:
    from defemb.commands import print_table
    from defemb.evaluation.lm_finetune import PRIMARY, LmFinetuneConfig, run_lm_finetune

    config = LmFinetuneConfig(models=args.models, words=args.words, data=args.data, max_docs=args.max_docs,
                              steps=args.steps, train=args.train, lr=args.lr, batch_size=args.batch_size,
                              max_length=args.max_length, eval_every=args.eval_every, held_out=args.held_out,
                              after=args.after, seed=args.seed, precision=args.precision,
                              trust_remote_code=args.trust_remote_code)
    curves = run_lm_finetune(config, args.out, force=args.force)
    labels = list(curves["models"])
    names = [PRIMARY, "heldout/loss@0", "heldout/loss_mean", "word/nll", "after/nll"]
    rows = [[n] + [_cell(curves["models"][m], n) for m in labels] for n in names]
    print_table(f"fine-tuning, --train {config.train} (lower is better) -> {args.out}/curves.md",
                ["measure", *labels], rows)
    for label, error in curves["failed"].items():
        print(f"{label}: failed: {error}")


def _cell(model: dict, name: str) -> str:
    value = model["heldout_loss"][0] if name == "heldout/loss@0" else model["metrics"].get(name)
    return "—" if value is None else f"{value:.4f}"
