"""Diagnosis of token-embedding tables: the pure maths is importable without loading any model.

>>> from defemb.analysis import isotropy, isoscore, mean_pairwise_cosine
"""

from __future__ import annotations

from defemb.analysis.geometry import band_statistics, isoscore, isotropy, mean_pairwise_cosine
from defemb.analysis.neighbours import knn_overlap, nearest_neighbours
from defemb.analysis.numbers import max_difference, numeric_tokens

__all__ = [
    "band_statistics",
    "isoscore",
    "isotropy",
    "knn_overlap",
    "max_difference",
    "mean_pairwise_cosine",
    "nearest_neighbours",
    "numeric_tokens",
]
