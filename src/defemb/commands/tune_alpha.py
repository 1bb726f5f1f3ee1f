"""`defemb tune-alpha`: pick α (and λ) for replacement before fine-tuning by dev accuracy (paper App. A.5)."""

from __future__ import annotations

import argparse


def run(args: argparse.Namespace) -> None:
    from defemb.commands import print_table
    from defemb.commands.classification import training_from_args
    from defemb.evaluation.tune_alpha import TuneAlphaConfig, tune_alpha

    config = TuneAlphaConfig(model=args.model, embeddings=args.embeddings, task=args.task, grid=args.grid,
                             blends=args.blend, numbers=args.numbers, seeds=args.seeds or "1", data=args.data,
                             training=training_from_args(args), trust_remote_code=args.trust_remote_code)
    result = tune_alpha(config, args.out, args.force)
    choice = result["choice"]
    metrics = sorted({m for r in result["rows"] for m in r["metrics"]})
    rows = []
    for r in result["rows"]:
        cells = [("-" if r["metrics"][m]["mean"] is None else f"{r['metrics'][m]['mean']:.4f} ± "
                  f"{r['metrics'][m]['std']:.4f}") for m in metrics]
        alpha = "original" if r["alpha"] is None else f"{r['alpha']:g}"
        rows.append([alpha, "-" if r["blend"] is None else f"{r['blend']:g}", r["replaced"], *cells, r["failed"]])
    print_table(f"{args.task}: dev scores per α (test not read)", ["α", "λ", "replaced", *metrics, "failed"], rows)
    print(f"chosen: α {choice['alpha']:g}, λ {choice['blend']:g} ({choice['metric']} {choice['mean']:.4f}; "
          f"original {choice['original'] if choice['original'] is None else round(choice['original'], 4)}) -> "
          f"{args.out}/choice.json")


def register(subparsers) -> None:
    from defemb.commands.classification import add_training_arguments

    p = subparsers.add_parser(
        "tune-alpha", help="choose α (and λ) for `defemb replace` by fine-tuning and scoring on dev only",
        description="For every α (× λ): write the replaced checkpoint (defemb replace, V_task = the task's train "
                    "file), fine-tune it and score it on dev; the unreplaced model is the reference row. Writes "
                    "table.md, table.json and choice.json. The test split is never read. Rerun to resume.",
    )  # fmt: skip
    p.add_argument("model", help="checkpoint to replace (directory, hub name or 'minilm')")
    p.add_argument("--embeddings", required=True, help="definition-embeddings file from `defemb embed`")
    p.add_argument("--grid", default="1,3,5,10,20,100", help="α values, percent of |V| (default 1,3,5,10,20,100)")
    p.add_argument("--blend", default="1", help="λ values in [0, 1], e.g. 0.25,0.5,1 (default 1)")
    p.add_argument("--numbers", action="store_true", help="also replace every numeric row (see `replace --numbers`)")
    p.add_argument("--out", required=True, help="folder for models/, runs/, table.md, choice.json")
    add_training_arguments(p)
    p.set_defaults(func=run)
