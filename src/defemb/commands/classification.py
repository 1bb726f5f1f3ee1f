"""`defemb evaluate classification`: fine-tune checkpoints on MRPC / RTE / a TSV task and score dev and test."""

from __future__ import annotations

import argparse


def add_training_arguments(p: argparse.ArgumentParser) -> None:
    """Options shared with `defemb tune-alpha`: a preset and overrides of its values."""
    p.add_argument("--task", required=True, help="mrpc | rte | tsv:DIR (DIR holds train.tsv, dev.tsv[, test.tsv] "
                   "with columns sentence1[, sentence2], label)")
    p.add_argument("--data", help="dataset folder (default: $DEFEMB_DATA/<name> or ../shared/data/<name>)")
    p.add_argument("--seeds", help="a count (3 -> seeds 0,1,2) or a comma list (0,5,9)")
    p.add_argument("--preset", default="small", help="small (default: small encoders on CPU; 3 epochs, lr 5e-5, "
                   "batch 32) | roberta | bart (the paper's Tables 13 and 15, MRPC and RTE only)")
    p.add_argument("--epochs", type=float, help="passes over train (replaces a paper preset's update count)")
    p.add_argument("--steps", type=int, help="total updates (overrides --epochs)")
    p.add_argument("--lr", type=float, help="peak learning rate")
    p.add_argument("--batch-size", type=int, help="examples per update")
    p.add_argument("--max-length", type=int, help="tokens per example after truncation")
    p.add_argument("--warmup-ratio", type=float, help="share of updates with linear warmup")
    p.add_argument("--weight-decay", type=float, help="AdamW weight decay")
    p.add_argument("--bf16", action="store_true", default=None,
                   help="bfloat16 autocast while fine-tuning (2-3x faster on CPUs with AMX, and on GPUs)")
    p.add_argument("--trust-remote-code", action="store_true", help="allow a model's own Python code to run")
    p.add_argument("--force", action="store_true", help="start a fresh --out (default: resume what is there)")


def training_from_args(args: argparse.Namespace):
    from defemb.evaluation.classification import training_config

    return training_config(args.preset, args.task, epochs=args.epochs, steps=args.steps, lr=args.lr,
                           batch_size=args.batch_size, max_length=args.max_length, warmup_ratio=args.warmup_ratio,
                           weight_decay=args.weight_decay, bf16=args.bf16)


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def print_records(title: str, records) -> None:
    from defemb.commands import print_table

    names = sorted({name for r in records for name in r.metrics}, key=lambda n: (n.split("/")[0] != "dev", n))
    rows = []
    for r in records:
        speed = r.config.get("train", {}).get("examples_per_s")
        rows.append([r.label, r.seed, r.status if r.status == "ok" else f"failed: {r.error}",
                     *[_cell(r.metrics.get(n)) for n in names], f"{r.wall_s:.0f}", f"{speed:.0f}" if speed else "-"])
    short = [n.replace("/accuracy", " acc").replace("/f1", " F1") for n in names]
    print_table(title, ["model", "seed", "status", *short, "wall s", "ex/s"], rows)


def run(args: argparse.Namespace) -> None:
    from defemb.evaluation.classification import ClassificationConfig, evaluate_classification

    config = ClassificationConfig(task=args.task, models=args.models, seeds=args.seeds or "3", data=args.data,
                                  training=training_from_args(args), save_models=args.save_models,
                                  trust_remote_code=args.trust_remote_code)
    records = evaluate_classification(config, args.out, args.force)
    print_records(f"{args.task}, {config.training.preset} preset", records)
    print(f"records: {args.out}/<model>/seed-<seed>/result.json")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "classification", help="fine-tune each model on MRPC / RTE / a TSV task; dev and test accuracy (and F1)",
        description="Fine-tune every --models checkpoint once per seed with a new classification head and score "
                    "dev and (where labelled) test. Rerunning the same command resumes: finished runs are skipped.",
    )  # fmt: skip
    p.add_argument("--models", nargs="+", required=True, help="LABEL=PATH or PATH (the alias 'minilm' works)")
    p.add_argument("--out", required=True, help="results folder: <label>/seed-<seed>/result.json")
    p.add_argument("--save-models", action="store_true", help="keep each fine-tuned model in <label>/seed-<seed>/model")
    add_training_arguments(p)
    p.set_defaults(func=run)
