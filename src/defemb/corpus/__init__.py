"""The definition corpus: prompts with the defined word's spans and token positions (METHOD §6)."""

from __future__ import annotations

from defemb.corpus.build import build_corpus, make_records
from defemb.corpus.prompts import Prompt, build_prompt

__all__ = ["Prompt", "build_corpus", "build_prompt", "make_records"]
