"""Calibrated definition rows for `replace` (METHOD §9): spread, per-row blend λ and degeneracy.

A predictor trained with squared error returns E[row | definition], which is shrunk toward the mean of
the rows: its rows spread less than the rows they stand for (MiniLM, 200 steps: rebuilt numbers have
cosine ≈ 0.98 among each other). Four measured corrections, each a pure function on arrays:

**Refit** (`refit_rows`, ``--refit linear``; before the others). A linear map from definition rows to
pretrained rows, fitted by ridge on every row that has both. The predictor was trained per *position*
(every prompt a token occurs in, frequent tokens far more often) and writes per *token* the mean of up
to five prompts; the map that is best for those averaged rows is not the identity (MiniLM, 200 steps:
it removes a further 2–6 % of each band's mean-row error and roughly doubles the share of rows whose own
pretrained row is among their 10 nearest). It is *cross-fitted*: the rows are split into `REFIT_FOLDS`
folds, and each row is mapped by the map fitted on the other folds, so no row's own pretrained row
enters what is written into it. The ridge penalty is chosen from `REFIT_PENALTIES` (times the mean
eigenvalue of the centred rows' Gram matrix, so the grid does not depend on the rows' scale) by the
out-of-fold error.

**Spread** (`fit_spread`, per frequency band; fitted on every row of the band that has a definition
row, so the map does not depend on which rows are then selected — a handful of degenerate rows
would otherwise set the scale). The definition rows keep their own band mean μ (the regression's
mean is unbiased; only the spread around it is shrunk) and are mapped ``μ + (p − μ)·M``:

* ``scale``: one factor c = RMS(o − μ_o) / RMS(p − μ_p), the root-mean-square distance to the band
  mean (the square root of the total variance). Afterwards the band's definition rows have the total
  variance of the pretrained rows; directions and the angles between rows around the mean stay.
* ``directions``: per principal direction v_j of the centred definition rows (their SVD), the std of
  the definition rows along v_j is set to the std of the pretrained rows along the same v_j. The
  definition rows' own axes are kept (no rotation toward the pretrained rows' axes, which in the rare
  band are the degenerate ones); components outside their span are left as they are.

**Per-row blend λ** (`reliability_blend`, ``--blend auto``). Two noisy estimates of one unknown row:
the pretrained row o (error variance σ_o², large for a row that got few updates) and the prediction
p (error variance σ_p²). The inverse-variance weight of p is λ = σ_o² / (σ_o² + σ_p²). With
independent errors ‖o − p‖² estimates σ_o² + σ_p² per row; σ_p² is taken from the frequent band,
whose pretrained rows are trusted (σ_o ≈ 0 there), as the median disagreement of its rows. Hence
λ_i = max(0, 1 − u_ref / u_i) with u_i = ‖o_i − p_i‖² / S_b² (S_b²: mean squared distance of the
band's pretrained rows to their mean, so bands of different spread compare) and u_ref the median
u over the frequent band's rows with a definition row. A row that disagrees with its prediction no
more than a typical frequent row keeps its pretrained row (λ = 0); one that disagrees twice as much
is half replaced; one that disagrees far more (a degenerate row) is replaced (λ → 1).

**Degeneracy** (`degeneracy`, ``--select degenerate``): the share of a row's `DEGENERATE_K` nearest
pretrained neighbours (cosine, among the ranked tokens) that are placeholder slots (``[unused12]``,
``<unused3>``, ``<extra_id_0>``) or of another script than the token itself (script = the Unicode
script of its first letter; tokens without letters are ``digits`` or ``symbols``; digits belong to
every script, so "thousand" next to "1000" is not degenerate). A row is
degenerate when that share is at least `DEGENERATE_SHARE`: its neighbours say nothing about it,
whatever its frequency ("acheron" next to ``[unused217]``, ``##辶``, ``##₍``).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Any

import numpy as np

from defemb.analysis.neighbours import nearest_neighbours
from defemb.errors import DefembError
from defemb.tokens import surface

SPREADS = ("none", "scale", "directions")
REFITS = ("none", "linear")
REFIT_FOLDS = 5
REFIT_PENALTIES = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0)
DEGENERATE_K = 10
DEGENERATE_SHARE = 0.5
REFERENCE_BAND = "frequent"
_PLACEHOLDER = re.compile(r"\[unused\d+\]|<unused\d+>|<extra_id_\d+>")
# Directions along which the definition rows have (numerically) no spread cannot be rescaled.
_RANK_TOLERANCE = 1e-6


@dataclass
class SpreadMap:
    """x ↦ μ + (x − μ)·M, M = c·I (``scale``) or I + V·diag(f − 1)·Vᵀ (``directions``)."""

    center: np.ndarray  # (h,) float64
    factor: float = 1.0
    basis: np.ndarray | None = None  # (r, h) orthonormal rows v_j
    factors: np.ndarray | None = None  # (r,) f_j

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        """The mapped rows, in the rows' dtype. # (n, h)"""
        centred = rows.astype(np.float64) - self.center
        if self.basis is None:
            mapped = self.factor * centred
        else:
            mapped = centred + ((centred @ self.basis.T) * (self.factors - 1.0)) @ self.basis
        return (self.center + mapped).astype(rows.dtype)


def rms_spread(rows: np.ndarray) -> float:
    """Root-mean-square distance of the rows to their mean (√ total variance)."""
    rows = rows.astype(np.float64)
    return float(np.sqrt(((rows - rows.mean(axis=0)) ** 2).sum(axis=1).mean()))


def fit_spread(old: np.ndarray, new: np.ndarray, mode: str) -> SpreadMap:
    """The map that gives ``new`` (definition rows) the spread of ``old`` (their pretrained rows).

    ``old`` and ``new`` are aligned (n, h). Fewer than two rows, or rows without spread: identity.
    """
    if mode not in SPREADS:
        raise ValueError(f"unknown spread calibration {mode!r}")
    new64, old64 = new.astype(np.float64), old.astype(np.float64)
    center = new64.mean(axis=0) if len(new64) else np.zeros(new.shape[1])
    if mode == "none" or len(new64) < 2:
        return SpreadMap(center)
    if mode == "scale":
        have = rms_spread(new64)
        return SpreadMap(center, factor=rms_spread(old64) / have if have > 0 else 1.0)
    _, singular, vt = np.linalg.svd(new64 - center, full_matrices=False)
    keep = singular > _RANK_TOLERANCE * singular[0] if singular[0] > 0 else np.zeros_like(singular, dtype=bool)
    basis = vt[keep]  # (r, h)
    have = singular[keep] / np.sqrt(len(new64))
    want = np.linalg.norm((old64 - old64.mean(axis=0)) @ basis.T, axis=0) / np.sqrt(len(old64))
    return SpreadMap(center, basis=basis, factors=want / have)


def calibrate_bands(old: np.ndarray, new: np.ndarray, bands: np.ndarray, mode: str) -> np.ndarray:
    """``new`` with each band's spread fitted to ``old`` (rows aligned; ``bands``: a label per row). # (n, h)"""
    out = new.copy()
    for band in np.unique(bands):
        rows = bands == band
        out[rows] = fit_spread(old[rows], new[rows], mode)(new[rows])
    return out


@dataclass
class _FoldFit:
    """One fold's ridge fit from a single SVD of the other folds' centred rows, for any penalty."""

    held: np.ndarray  # (n,) bool: the rows this fold maps
    coordinates: np.ndarray  # (m, r) held rows, centred by the fit rows' mean, in the right singular basis
    singular: np.ndarray  # (r,)
    projected: np.ndarray  # (r, h) Uᵀ · centred targets of the fit rows
    target_mean: np.ndarray  # (h,)
    unit: float  # mean eigenvalue of the centred Gram matrix (1 when the rows are all equal)

    @classmethod
    def fit(cls, old: np.ndarray, new: np.ndarray, held: np.ndarray) -> _FoldFit:
        fit = ~held
        mean_x, mean_y = new[fit].mean(axis=0), old[fit].mean(axis=0)
        u, s, vt = np.linalg.svd(new[fit] - mean_x, full_matrices=False)
        return cls(held, (new[held] - mean_x) @ vt.T, s, u.T @ (old[fit] - mean_y), mean_y,
                   (s ** 2).sum() / new.shape[1] or 1.0)

    def rows(self, penalty: float) -> np.ndarray:
        """The held rows mapped by the ridge fit with λ = penalty × unit. # (m, h)"""
        s = self.singular
        return (self.coordinates * (s / (s ** 2 + penalty * self.unit))) @ self.projected + self.target_mean


def refit_rows(old: np.ndarray, new: np.ndarray, folds: int = REFIT_FOLDS,
               penalties: tuple[float, ...] = REFIT_PENALTIES, seed: int = 0) -> tuple[np.ndarray, dict[str, Any]]:
    """``new`` (definition rows) mapped toward ``old`` (their pretrained rows, aligned) by a cross-fitted ridge
    map, with the chosen penalty and the mean squared error before and after (out of fold). # (n, h)"""
    if len(new) < 2 * folds:
        raise DefembError(f"--refit linear fits a map on {folds} folds of rows and needs at least {2 * folds} rows "
                          f"with a definition row (got {len(new)})")
    old64, new64 = old.astype(np.float64), new.astype(np.float64)
    fold = np.random.default_rng(seed).permutation(len(new)) % folds
    fits = [_FoldFit.fit(old64, new64, fold == k) for k in range(folds)]
    errors = [sum(((f.rows(c) - old64[f.held]) ** 2).sum() for f in fits) for c in penalties]
    best = penalties[int(np.argmin(errors))]
    rows = np.empty_like(new64)
    for f in fits:
        rows[f.held] = f.rows(best)
    notes = {"penalty": best, "folds": folds, "error_definition": float(((new64 - old64) ** 2).sum(axis=1).mean()),
             "error_refit": float(((rows - old64) ** 2).sum(axis=1).mean())}
    return rows.astype(new.dtype), notes


def relative_disagreement(old: np.ndarray, new: np.ndarray, bands: np.ndarray) -> np.ndarray:
    """u_i = ‖o_i − p_i‖² / S_b², S_b² = mean ‖o − μ_b‖² of row i's band (NaN where S_b = 0). # (n,)"""
    old64, new64 = old.astype(np.float64), new.astype(np.float64)
    u = ((old64 - new64) ** 2).sum(axis=1)
    for band in np.unique(bands):
        rows = bands == band
        spread = rms_spread(old64[rows]) ** 2
        u[rows] = u[rows] / spread if spread > 0 else np.nan
    return u


def reliability_blend(disagreement: np.ndarray, reference: float) -> np.ndarray:
    """λ_i = max(0, 1 − reference / u_i): the inverse-variance weight of the prediction. # (n,)"""
    with np.errstate(divide="ignore", invalid="ignore"):
        blend = 1.0 - reference / disagreement
    return np.clip(np.nan_to_num(blend, nan=0.0), 0.0, 1.0)


def calibrate(old: np.ndarray, new: np.ndarray, bands: np.ndarray, spread: str, blend: float | None,
              refit: str = "none") -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Definition rows ``new``, refitted (``refit``), with each band's spread fitted to ``old`` and λ per row
    (``blend``, or by reliability where ``blend`` is None); with the refit's facts, the per-band spreads and
    the reference disagreement.

    ``old``/``new`` (m, h) aligned, ``bands`` a label per row: every row that has a definition row, so
    the fits and the reference do not depend on which rows are replaced. # (m, h), (m,)
    """
    notes: dict[str, Any] = {}
    if refit not in REFITS:
        raise ValueError(f"unknown refit {refit!r}")
    if refit == "linear":
        new, notes["refit_map"] = refit_rows(old, new)
    if spread != "none":  # skipped, not an identity map: λ = 1 stays bit-exact
        calibrated = calibrate_bands(old, new, bands, spread)
        notes["spread_rms"] = {
            str(b): {"pretrained": rms_spread(old[bands == b]), "definition": rms_spread(new[bands == b]),
                     "calibrated": rms_spread(calibrated[bands == b])}
            for b in np.unique(bands)
        }
        new = calibrated
    if blend is not None:
        return new, np.full(len(new), float(blend)), notes
    u = relative_disagreement(old, new, bands)
    reference = u[(bands == REFERENCE_BAND) & np.isfinite(u)]
    if not len(reference):
        raise DefembError(f"--blend auto takes the predictor's error from {REFERENCE_BAND}-band rows, and no "
                          f"{REFERENCE_BAND} token has a definition row; give a number for --blend")
    notes["blend_reference"] = float(np.median(reference))
    return new, reliability_blend(u, notes["blend_reference"]), notes


def token_script(token: str) -> str:
    """Unicode script of the first letter of a token's surface; ``digits`` / ``symbols`` without letters."""
    text = surface(token)
    for char in text:
        if unicodedata.category(char).startswith("L"):
            return unicodedata.name(char, "UNKNOWN").split()[0]
    return "digits" if text and all(unicodedata.category(c) == "Nd" for c in text) else "symbols"


def is_placeholder(token: str) -> bool:
    """A slot the tokenizer reserves but never trained: ``[unused12]``, ``<unused3>``, ``<extra_id_0>``."""
    return _PLACEHOLDER.fullmatch(token) is not None


def degeneracy(E: np.ndarray, queries: np.ndarray, candidates: np.ndarray, tokens: list[str],
               k: int = DEGENERATE_K) -> np.ndarray:
    """Share of each query's k nearest neighbours (cosine, among ``candidates``) that are placeholders
    or of another script. # (len(queries),)"""
    queries = np.asarray(queries, dtype=np.int64)
    if len(queries) == 0:
        return np.zeros(0)
    neighbours, _ = nearest_neighbours(E, queries, candidates, k)
    scripts: dict[int, str] = {}

    def script(i: int) -> str:
        if i not in scripts:
            scripts[i] = token_script(tokens[i])
        return scripts[i]

    def foreign(q: int, j: int) -> bool:
        return "digits" not in (script(q), script(j)) and script(q) != script(j)  # digits: every script's

    junk = [
        [is_placeholder(tokens[j]) or foreign(int(q), int(j)) for j in row]
        for q, row in zip(queries, neighbours, strict=True)
    ]
    return np.asarray(junk, dtype=np.float64).mean(axis=1)
