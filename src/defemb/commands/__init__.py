"""The subcommands, one small module each with ``register(subparsers)``; the logic lives in the library.

``TOP`` modules add top-level commands (in this order in ``defemb --help``); ``EVALUATE`` modules become
``defemb evaluate <name>``. Modules import heavy libraries inside their command functions only, so
``defemb --help`` stays fast.
"""

from __future__ import annotations

import argparse

TOP: list[str] = ["diagnose", "corpus", "repair", "extend", "results", "tune_alpha"]
EVALUATE: list[str] = ["classification", "wordsim", "probe", "drift", "summarization", "lm", "lm_finetune", "generate"]


def common_options(p: argparse.ArgumentParser, ranking: bool = True) -> None:
    if ranking:
        p.add_argument("--ranking", help="token frequency ranking: index | wordfreq | corpus:PATH "
                       "(default: index for byte-level BPE, wordfreq otherwise)")
    p.add_argument("--table", default="input", help="input | encoder | decoder | output (default input)")
    p.add_argument("--trust-remote-code", action="store_true", help="allow a model's own Python code to run")
    p.add_argument("--force", action="store_true", help="overwrite an existing --out")



def results_folder_options(p: argparse.ArgumentParser, out_help: str = "results folder (a rerun skips finished "
                                                                      "models)") -> None:
    """--out, --force and --trust-remote-code of the evaluators that resume a results folder."""
    p.add_argument("--out", required=True, help=out_help)
    p.add_argument("--force", action="store_true", help="redo every model, also in a folder of other settings")
    p.add_argument("--trust-remote-code", action="store_true", help="allow a model's own Python code to run")


def print_table(title: str, header, rows) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for column in header:
        table.add_column(column)
    for row in rows:
        table.add_row(*[str(c) for c in row])
    Console().print(table)



def nonnegative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got '{text}'") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value
