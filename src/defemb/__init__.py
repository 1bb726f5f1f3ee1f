"""defemb: diagnose and repair degenerated rare-token embeddings of pretrained language models."""

from __future__ import annotations

__version__ = "0.1.0"
