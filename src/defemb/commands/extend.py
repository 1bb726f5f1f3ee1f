"""`defemb extend` (the task's rare words as new tokens) and `defemb add-tokens` (an explicit list of defined words)."""

from __future__ import annotations

import argparse

from defemb.config import NEW_WORD_BAND, SENSES
from defemb.frequency import BANDS  # defemb.config imports it already: no cost at parser build


def _report(summary: dict, out: str | None) -> None:
    counts = ", ".join(f"{k.replace('_', ' ')} {summary[k]}" for k in
                       ("candidates", "in_vocabulary", "below_min_count", "no_definition", "over_max_words",
                        "duplicates") if summary[k])
    print(f"words: {counts or 'none'}")
    if summary["no_definition_words"]:
        shown = summary["no_definition_words"][:20]
        more = len(summary["no_definition_words"]) - len(shown)
        print("no definition: " + " ".join(shown) + (f" ... and {more} more" if more else ""))
    if out is None:
        for w in summary["words"]:
            count = "" if w["count"] is None else f" ({w['count']}x)"
            print(f"  {w['word']}{count}: {w['entry']['definition'][:70]}  [{w['entry']['location']}]")
        print(f"dry run: {len(summary['words'])} words would be added; nothing was written")
        return
    untied = "; the untied output head got the predicted rows too" if summary["output_head"] == "untied" else ""
    rows = {"definitionemb": "DefinitionEMB", "definitionemb+pieces": "DefinitionEMB + pieces' mean (their mean)",
            "resize": "mean (resize)", "pieces": "pieces' mean",
            "desc_init": "definition-token mean (desc_init)"}[summary["init"]]
    refined = f", refined {summary['refine']['steps']} steps on their definitions" if "refine" in summary else ""
    print(f"added {summary['added']} tokens (ids from {summary['first_id']}) with {rows} rows{refined} in the "
          f"{summary['table']} table{untied} -> {out}; see added.tsv")


def cmd_extend(args: argparse.Namespace) -> None:
    from defemb.extend import ExtendConfig, extend

    config = ExtendConfig(
        model=args.model, run=args.run, task_data=args.task_data or [], words=args.words,
        sources=args.source or ([] if args.entities else ["gcide"]), entities=args.entities,
        min_count=args.min_count, max_words=args.max_words, senses=args.senses, table=args.table, init=args.init,
        band=args.band, refine=args.refine, refine_lr=args.refine_lr, trust_remote_code=args.trust_remote_code,
    )
    _report(extend(config, None if args.dry_run else args.out, force=args.force, dry_run=args.dry_run),
            None if args.dry_run else args.out)


def cmd_add_tokens(args: argparse.Namespace) -> None:
    from defemb.extend import ExtendConfig, extend

    config = ExtendConfig(model=args.model, run=args.run, words=args.words, sources=[],
                          entities=args.words, table=args.table, band=args.band, refine=args.refine,
                          refine_lr=args.refine_lr)
    _report(extend(config, args.out, force=args.force), args.out)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("extend", help="add the task's rare words as tokens with rows predicted from their "
                              "definitions")
    p.add_argument("model", help="model to extend (dir, hub name, minilm): the vocabulary the run was trained on")
    p.add_argument("--run", required=True, help="finished `defemb train` run directory")
    p.add_argument("--task-data", nargs="+", metavar="FILE",
                   help="task files whose words to add: .tsv/.csv (text columns), .jsonl, text")
    p.add_argument("--words", metavar="FILE", help="an explicit list instead: one word a line")
    p.add_argument("--source", action="append", help="dictionary source of the definitions, as in `corpus build` "
                   "(repeatable; default gcide)")
    p.add_argument("--entities", metavar="TSV", help="definitions of names and terms: word<TAB>[pos<TAB>]definition")
    p.add_argument("--min-count", type=int, default=2, help="occurrences a word needs in the task data "
                   "(default 2)")
    p.add_argument("--max-words", type=int, help="add at most this many words, most frequent first")
    p.add_argument("--senses", type=int, default=SENSES, help="definitions per word (in source order) whose predicted "
                   "rows are averaged (default %(default)s; 1: the first only)")
    p.add_argument("--table", help="input | encoder | decoder (default: the table the run was trained on)")
    p.add_argument("--init", default="definitionemb",
                   choices=["definitionemb", "definitionemb+pieces", "pieces", "desc_init", "resize"],
                   help="rows of the new tokens: definitionemb (default); definitionemb+pieces (the mean of the "
                   "predicted row and the pieces' mean: the best start for --refine on SmolLM2); or a baseline on the "
                   "same words for comparisons: pieces (mean of the word's pieces), desc_init (mean of the "
                   "definition's token rows), resize (the mean row, as resize_token_embeddings)")
    _row_options(p)
    p.add_argument("--dry-run", action="store_true", help="only list what would be added, with the counts")
    p.add_argument("--out", help="output checkpoint directory (with added.tsv)")
    p.add_argument("--force", action="store_true", help="overwrite an existing --out")
    p.add_argument("--trust-remote-code", action="store_true", help="allow a model's own Python code to run")
    p.set_defaults(func=cmd_extend)
    p = subparsers.add_parser("add-tokens", help="add an explicit list of defined words as tokens (see extend)")
    p.add_argument("model", help="model to extend (dir, hub name, minilm): the vocabulary the run was trained on")
    p.add_argument("--run", required=True, help="finished `defemb train` run directory")
    p.add_argument("--words", required=True, help="TSV: word<TAB>[pos<TAB>]definition (the first per word is used)")
    p.add_argument("--out", required=True, help="output checkpoint directory (with added.tsv)")
    p.add_argument("--table", help="input | encoder | decoder (default: the table the run was trained on)")
    _row_options(p)
    p.add_argument("--force", action="store_true", help="overwrite an existing --out")
    p.set_defaults(func=cmd_add_tokens)


def _row_options(p: argparse.ArgumentParser) -> None:
    """How the new rows are made: --refine, --refine-lr, --band."""
    p.add_argument("--refine", type=int, default=0, metavar="STEPS",
                   help="causal LMs: refine the new rows for STEPS steps on their definitions, so that the model "
                   "reading the word as one token behaves as it does on the word's pieces (default 0: off; "
                   "30 measured on SmolLM2: under 3 min for 60 words on 2 cores)")
    p.add_argument("--refine-lr", type=float, default=5e-3, help="learning rate of --refine (default %(default)s)")
    p.add_argument("--band", default=NEW_WORD_BAND, choices=[NEW_WORD_BAND, *BANDS],
                   help="which map of a band-head run (`train --head band`) reads the new words: the shared W "
                   "(default) or a band's (a run with one W uses it for all)")
