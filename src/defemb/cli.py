"""The `defemb` command: subcommands parse, call the library, print. No logic lives here.

Each command lives in a module of `defemb.commands` (accelerate's layout); this file builds the parser
and turns `DefembError` into a one-line message with exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from defemb.errors import DefembError


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (exit code 2), like DefembError."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    from defemb import __version__, commands

    parser = _Parser(prog="defemb", description="Diagnose and repair rare-token embeddings of pretrained LMs.")
    parser.add_argument("--version", action="version", version=f"defemb {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name in commands.TOP:
        importlib.import_module(f"defemb.commands.{name}").register(sub)
    evaluate = sub.add_parser("evaluate", help="fine-tune and score checkpoints: classification, summarization, ...")
    evaluate_sub = evaluate.add_subparsers(dest="evaluate_command", required=True, parser_class=_Parser)
    for name in commands.EVALUATE:
        importlib.import_module(f"defemb.commands.{name}").register(evaluate_sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from transformers.utils import logging as hf_logging

    # Per-tensor "Loading weights" bars are noise next to our own output; errors stay one line.
    hf_logging.disable_progress_bar()
    try:
        args.func(args)
    except DefembError as exc:
        print(f"defemb: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        # A command that keeps partial work says so in a note on the exception (PEP 678); outputs are
        # atomic, so without one nothing was written.
        kept = "; ".join(getattr(exc, "__notes__", ())) or "no output was written"
        print(f"defemb: interrupted; {kept}", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
