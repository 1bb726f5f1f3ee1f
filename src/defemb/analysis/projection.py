"""2-D pictures of a table: rows projected onto the top-2 singular vectors, coloured by band."""

from __future__ import annotations

import csv
import warnings
from pathlib import Path

import numpy as np

BAND_COLOURS = {"frequent": "#1f77b4", "medium": "#2ca02c", "rare": "#d62728"}


def top_axes(G: np.ndarray, count: int = 2) -> np.ndarray:
    """Top right-singular vectors of E from its Gram matrix EᵀE (sign fixed for stable pictures). # (h, count)"""
    _, vectors = np.linalg.eigh(G)
    axes = vectors[:, ::-1][:, :count].copy()
    signs = np.sign(axes[np.abs(axes).argmax(axis=0), np.arange(count)])
    return axes * np.where(signs == 0, 1.0, signs)


def plot_ids(bands: dict[str, np.ndarray], max_points: int, keep: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Ids to draw: every band subsampled in proportion to its size, ``keep`` ids always included."""
    total = sum(len(ids) for ids in bands.values())
    chosen = [np.asarray(keep, dtype=np.int64)]
    for ids in bands.values():
        quota = len(ids) if total <= max_points else max(1, int(max_points * len(ids) / total))
        chosen.append(rng.choice(ids, size=min(quota, len(ids)), replace=False) if len(ids) else ids)
    return np.unique(np.concatenate(chosen))


def write_png(
    path: Path,
    coords: np.ndarray,
    band_names: np.ndarray,
    labels: dict[int, str],
    title: str,
) -> None:
    """Scatter of ``coords`` (n, 2) coloured by band; ``labels`` maps row positions to text to print."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 7), dpi=120)
    for band, colour in BAND_COLOURS.items():
        mask = band_names == band
        ax.scatter(coords[mask, 0], coords[mask, 1], s=3, c=colour, alpha=0.5, label=f"{band} ({mask.sum()})")
    for position, text in labels.items():
        x, y = coords[position]
        ax.scatter([x], [y], s=30, facecolors="none", edgecolors="black", linewidths=0.8)
        ax.annotate(text, (x, y), fontsize=8, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("singular vector 1")
    ax.set_ylabel("singular vector 2")
    ax.set_title(title)
    ax.legend(markerscale=4, loc="best")
    with warnings.catch_warnings():
        # Tokens in scripts DejaVu Sans lacks (CJK, ...) draw as boxes; the warning per glyph is noise.
        warnings.filterwarnings("ignore", message="Glyph .* missing from font")
        fig.tight_layout()
        fig.savefig(path)
    plt.close(fig)


def write_projector(out_dir: Path, E: np.ndarray, ids: np.ndarray, tokens: list[str], bands: np.ndarray) -> None:
    """TensorBoard embedding-projector files: vectors.tsv (no header) and metadata.tsv (token, id, band)."""
    with open(out_dir / "vectors.tsv", "w", encoding="utf-8", newline="") as handle:
        np.savetxt(handle, E[ids], delimiter="\t", fmt="%.6g")
    with open(out_dir / "metadata.tsv", "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
        writer.writerow(["token", "id", "band"])
        for i in ids:
            writer.writerow([printable(tokens[i]), int(i), bands[i]])


def printable(token: str) -> str:
    """Token text safe for one TSV cell and one label: control characters shown escaped."""
    return token.encode("unicode_escape").decode("ascii") if not token.isprintable() else token
