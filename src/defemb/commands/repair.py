"""Repair commands: replace, train, embed, and the whole pipeline (`run`)."""

from __future__ import annotations

import argparse

from defemb.config import MAX_PROMPTS
from defemb.errors import DefembError


def cmd_replace(args: argparse.Namespace) -> None:
    from defemb.replace import ReplaceConfig, replace

    config = ReplaceConfig(
        args.model, args.embeddings, task_data=args.task_data or [], alpha=args.alpha, all_tokens=args.all_tokens,
        select=args.select, blend=args.blend, spread=args.spread, refit=args.refit, numbers=args.numbers,
        ranking=args.ranking, table=args.table, trust_remote_code=args.trust_remote_code,
    )
    summary = replace(config, args.out, args.force)
    blend = summary["blend"]
    if blend == "auto" and summary["blend_mean"] is not None:
        blend = f"auto, mean {summary['blend_mean']:.3f}"
    print(f"replaced {summary['replaced']} rows of the {summary['table']} table "
          f"({summary['candidates']} candidates with a definition row, blend {blend}, spread {summary['spread']}) "
          f"-> {args.out}")


def cmd_train(args: argparse.Namespace) -> None:
    from defemb.config import TrainConfig
    from defemb.method.train import resume, train

    if args.resume:
        summary = resume(args.resume)
        out = args.resume
    else:
        if not (args.model and args.corpus and args.out):
            raise DefembError("defemb train needs MODEL, --corpus and --out (or --resume RUN_DIR)")
        fields = {k: getattr(args, k) for k in ("preset", "table", "objective", "head", "contrast", "token_weight",
                                               "steps", "warmup", "tokens", "lr", "head_lr_scale", "schedule",
                                               "grad_accum", "eval_every", "save_every", "max_valid",
                                               "ridge_examples", "patience",
                                               "train_embeddings", "bf16", "gradient_checkpointing", "device", "seed",
                                               "trust_remote_code")}
        if args.no_warm_start:
            fields["warm_start"] = False
        summary = train(TrainConfig(model=args.model, corpus=args.corpus, keep_best=not args.keep_last, **fields),
                        args.out, args.force)
        out = args.out
    token, position = (_figure(summary[key]) for key in ("best_valid_token_mse", "best_valid_mse"))
    print(f"trained {summary['steps']} steps; best validation ‖e−ẽ‖² per token {token} (per position {position}); "
          f"weights written: {summary['weights']} -> {out}")


def _figure(value: float | None) -> str:
    """None: a run resumed from before per-token selection that was not scored again."""
    return "–" if value is None else f"{value:.4f}"


def cmd_embed(args: argparse.Namespace) -> None:
    from defemb.method.embed import embed

    result = embed(args.run, args.corpus, args.out, aggregate=args.aggregate, max_prompts=args.max_prompts,
                   force=args.force)
    print(f"{result['rows']} definition rows from {result['prompts']} prompts -> {args.out}")


def cmd_run(args: argparse.Namespace) -> None:
    from defemb.pipeline import run_pipeline

    print(run_pipeline(args.out, preset=args.preset, model=args.model, sources=args.source or ["gcide"],
                       ranking=args.ranking, seed=args.seed))


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("replace",
                              help="write a checkpoint with definition embeddings for the task's rare tokens")
    p.add_argument("model", help="model whose table to change (dir, hub name, minilm)")
    p.add_argument("--embeddings", required=True, help="definition-embeddings file from `defemb embed`")
    p.add_argument("--alpha", type=float, help="replace the rarest task tokens, up to this percent of the vocabulary")
    p.add_argument("--task-data", nargs="+", help="task training files: .tsv/.csv (text columns), .jsonl, text")
    p.add_argument("--all", dest="all_tokens", action="store_true", help="replace every token that has a row")
    p.add_argument("--select", default="frequency", choices=["frequency", "degenerate", "both"],
                   help="rows to replace: the rarest (--alpha/--all, the paper), those whose pretrained neighbours "
                   "are placeholder slots or another script (degenerate), or both")
    p.add_argument("--blend", default="1", help="λ: new = (1-λ)·old + λ·definition (default 1), or 'auto': λ per "
                   "row from how much more the row disagrees with its prediction than frequent rows do")
    p.add_argument("--spread", default="none", choices=["none", "scale", "directions"],
                   help="restore per band the spread of the pretrained rows that regression shrinks: one factor "
                   "(scale) or per principal direction (directions)")
    p.add_argument("--refit", default="none", choices=["none", "linear"],
                   help="before --spread, map the definition rows toward the pretrained ones by a ridge map fitted "
                   "on every row that has both, cross-fitted so no row's own pretrained row enters it (linear)")
    p.add_argument("--numbers", nargs="?", const="all", default="within", choices=["within", "all"],
                   help="numbers where the selection picks them (within, default) or every numeric token with a "
                   "row as one set (all; bare --numbers)")
    p.add_argument("--ranking", help="index | wordfreq | corpus:PATH (default by tokenizer type)")
    p.add_argument("--table", help="input | encoder | decoder (default: the embeddings file's table)")
    p.add_argument("--out", required=True, help="directory for the new checkpoint, replaced.tsv and defemb.json")
    p.add_argument("--force", action="store_true", help="overwrite an existing --out")
    p.add_argument("--trust-remote-code", action="store_true", help="allow a model's own Python code to run")
    p.set_defaults(func=cmd_replace)
    p = subparsers.add_parser("train", help="train DefinitionEMB on a definition corpus")
    p.add_argument("model", nargs="?", help="model to initialise from (dir, hub name, minilm)")
    p.add_argument("--corpus", help="corpus directory built for this model's tokenizer")
    p.add_argument("--out", help="run directory")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run from its last checkpoint")
    p.add_argument("--preset", default="small", help="roberta | bart | t5 (paper Table 12) | small (CPU)")
    p.add_argument("--table", default="input", help="table to rebuild: input | encoder | decoder")
    p.add_argument("--objective", default="mimic", help="mimic | lm (the paper's w/o-mimicking ablation)")
    p.add_argument("--head", default="band", choices=["band", "single"], help="band: W plus a correction per "
                   "frequency band of the token (default); single: the paper's one W")
    p.add_argument("--token-weight", type=float, default=0.0, help="γ: each predicted position weighs n^-γ, n = the "
                   "training positions of its token (0, the paper's: per position; 1: every token alike)")
    p.add_argument("--contrast", type=float, default=0.0, help="weight β of a term that asks each prediction to pick "
                   "its own row among all the table's rows (cosine around the mean row, softmax at τ 0.05), added to "
                   "the squared error; 0 (default) = the paper's loss")
    for name, kind in (("steps", int), ("warmup", int), ("tokens", int), ("lr", float), ("head-lr-scale", float)):
        p.add_argument(f"--{name}", type=kind, help="override the preset")
    p.add_argument("--schedule", choices=["inverse_sqrt", "linear", "cosine", "constant"],
                   help="after the warm-up: the paper's inverse_sqrt, linear or cosine decay to 0 at the last step, "
                   "or constant (default: the preset's; small: cosine)")
    p.add_argument("--grad-accum", type=int, default=1, help="batches whose gradients add up to one update")
    p.add_argument("--eval-every", type=int, default=200, help="validate every N updates")
    p.add_argument("--save-every", type=int, default=200, help="write the resumable checkpoint every N updates")
    p.add_argument("--max-valid", type=int, default=2000, help="validation prompts per evaluation, a seeded sample "
                   "across the split (default 2000; fewer for large models on CPU)")
    p.add_argument("--ridge-examples", type=int, default=4096, help="training prompts, sampled across the corpus, "
                   "that the warm start fits W on (default 4096; each costs a forward pass)")
    p.add_argument("--patience", type=int, default=0, help="early stop after N evaluations without improvement")
    p.add_argument("--keep-last", action="store_true", help="write the last step's weights (default: those of the "
                   "best validation)")
    p.add_argument("--train-embeddings", action="store_true", help="also update the token tables")
    p.add_argument("--no-warm-start", action="store_true", help="do not fit W by ridge least squares first")
    p.add_argument("--bf16", action="store_true", help="bfloat16 autocast for the forward pass (fast on CPUs with "
                   "AMX/AVX512-BF16 and on GPUs); weights, optimiser and loss stay float32")
    p.add_argument("--gradient-checkpointing", action="store_true", help="recompute the body's activations "
                   "during the backward pass: far less memory for large models or --tokens, about a third more time")
    p.add_argument("--device", help="cpu | cuda | cuda:N (default: the GPU when there is one; one per rank)")
    p.add_argument("--seed", type=int, default=0, help="seed of initialisation, masking and batch order")
    p.add_argument("--force", action="store_true", help="replace an existing run directory (once the new run is done)")
    p.add_argument("--trust-remote-code", action="store_true", help="allow a model's own Python code to run")
    p.set_defaults(func=cmd_train)
    p = subparsers.add_parser("embed", help="definition rows for every token the corpus covers")
    p.add_argument("run", help="finished training run directory")
    p.add_argument("--corpus", required=True, help="corpus directory whose prompts define the tokens")
    p.add_argument("--out", required=True, help="output .safetensors file")
    p.add_argument("--aggregate", default="mean", choices=["first", "mean"],
                   help="a token's row as the mean over up to --max-prompts prompts (default), or from its first "
                        "prompt alone (one pass per token: cheaper on decoders)")
    p.add_argument("--max-prompts", type=int, default=MAX_PROMPTS,
                   help="prompts averaged per token with --aggregate mean (default %(default)s)")
    p.add_argument("--force", action="store_true", help="overwrite an existing --out file")
    p.set_defaults(func=cmd_embed)
    p = subparsers.add_parser("run", help="the whole pipeline: analyze, corpus, train, embed, replace, analyze again")
    p.add_argument("--preset", default="quickstart",
                   help="quickstart (~15 min on 2 CPU cores; decoder LLMs get their own, smaller settings) | full")
    p.add_argument("--out", default="defemb-run", help="pipeline directory (rerun the command to continue)")
    p.add_argument("--model", default="minilm", help="model to repair: minilm (default), smollm2, a dir, a .gguf "
                   "file or a hub name")
    p.add_argument("--source", action="append", help="dictionary source spec, as in `corpus build` "
                   "(repeatable: the corpus reads every one; default gcide)")
    p.add_argument("--ranking", help="index | wordfreq | corpus:PATH")
    p.add_argument("--seed", type=int, default=0, help="seed of every stage")
    p.set_defaults(func=cmd_run)
