"""Subcommands that register themselves: each module has ``register(subparsers)`` (keeps cli.py small).

``EVALUATE`` modules become ``defemb evaluate <name>``; ``TOP`` modules become top-level commands.
Modules import heavy libraries inside their command functions only, so ``defemb --help`` stays fast.
"""

EVALUATE: list[str] = ["wordsim", "probe", "drift", "summarization"]
TOP: list[str] = ["results"]
