"""The before | after page: both tables on the same axes, replaced rows marked, neighbours before → after."""

from __future__ import annotations

import numpy as np

from defemb.analysis.before_after import compare_tables, html_page

N, H = 200, 8


def _tables():
    rng = np.random.default_rng(1)
    before = rng.normal(size=(N, H)).astype(np.float32)
    before[:, 0] += 2.0
    after = before.copy()
    replaced = np.arange(150, 170)
    after[replaced] = rng.normal(size=(len(replaced), H)) * 0.1  # a clump near the origin
    tokens = [f"t{i}" for i in range(N)]
    bands = {"frequent": np.arange(1, 60), "medium": np.arange(60, 160), "rare": np.arange(160, N)}
    return before, after, tokens, bands, replaced


def _brute_neighbours(E, q, candidates, k):
    unit = E / np.linalg.norm(E, axis=1, keepdims=True)
    scores = [(float(unit[q] @ unit[c]), int(c)) for c in candidates if c != q]
    return [c for _, c in sorted(scores, key=lambda s: -s[0])[:k]]


def test_kept_rows_stay_put_and_replaced_rows_move():
    before, after, tokens, bands, replaced = _tables()
    result = compare_tables(before, after, tokens, bands, replaced, chosen=[165, 3], shown=5, k=4)
    assert set(replaced) <= set(result.plot_ids.tolist())  # every replaced row drawn
    moved = np.abs(result.coords["before"] - result.coords["after"]).sum(axis=1) > 1e-9
    assert np.array_equal(moved, np.isin(result.plot_ids, replaced))
    # Same axes for both: the before table's top singular vector, not the after table's.
    _, _, vt = np.linalg.svd(before.astype(np.float64), full_matrices=False)
    expected = np.abs(before[result.plot_ids].astype(np.float64) @ vt[0])
    assert np.allclose(np.abs(result.coords["before"][:, 0]), expected)


def test_neighbours_before_and_after_match_a_brute_force_search():
    before, after, tokens, bands, replaced = _tables()
    result = compare_tables(before, after, tokens, bands, replaced, chosen=[165, 3], shown=5, k=4)
    assert [item["id"] for item in result.neighbours][0] == 165  # chosen and replaced first; 3 was not replaced
    assert len(result.neighbours) == 5 and all(item["id"] in replaced for item in result.neighbours)
    candidates = np.concatenate(list(bands.values()))
    for item in result.neighbours:
        q = item["id"]
        assert item["before"] == [tokens[j] for j in _brute_neighbours(before, q, candidates, 4)]
        assert item["after"] == [tokens[j] for j in _brute_neighbours(after, q, candidates, 4)]
        assert np.isclose(item["moved"], np.linalg.norm(after[q] - before[q]))


def test_page_holds_both_projections_and_the_measures():
    before, after, tokens, bands, replaced = _tables()
    result = compare_tables(before, after, tokens, bands, replaced, shown=3)
    summary = {"bands": {b: {"isotropy": 0.5, "isoscore": 0.2, "mean_cosine": 0.1} for b in (*bands, "all")},
               "numeric_max_difference": {"mean": 10.0, "median": 3.0}}
    page = html_page(result, {"before": summary, "after": summary}, "test <page>", ["a note"])
    assert 'id="projection-before"' in page and 'id="projection-after"' in page
    assert page.count("replaced (20 shown)") == 2 and "test &lt;page&gt;" in page and "<p>a note</p>" in page
    assert page.count("plotly.js v") == 1  # plotly.js inlined once, for both figures
