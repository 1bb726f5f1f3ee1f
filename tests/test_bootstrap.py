from __future__ import annotations

import math
import random
import statistics

import numpy as np
import pytest

from defemb.evaluation import bootstrap
from defemb.evaluation.bootstrap import mean_std, paired_bootstrap


def _percentile(sorted_values: list[float], q: float) -> float:
    """numpy's default ('linear') percentile, written out."""
    position = q / 100 * (len(sorted_values) - 1)
    low = math.floor(position)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low)


def _slow_bootstrap(a: list[float], b: list[float], draws: list[list[int]]) -> dict:
    """Koehn (2004) with plain loops: for each resample, the two systems' means on the same indices."""
    deltas = []
    for idx in draws:
        mean_a = sum(a[i] for i in idx) / len(idx)
        mean_b = sum(b[i] for i in idx) / len(idx)
        deltas.append(mean_b - mean_a)
    at_most_zero = sum(1 for d in deltas if d <= 0)
    at_least_zero = sum(1 for d in deltas if d >= 0)
    ordered = sorted(deltas)
    return {
        "delta": sum(b) / len(b) - sum(a) / len(a),
        "p": min(1.0, 2 * min(at_most_zero, at_least_zero) / len(deltas)),
        "ci_low": _percentile(ordered, 2.5),
        "ci_high": _percentile(ordered, 97.5),
    }


def _random_draws(n: int, resamples: int, seed: int) -> list[list[int]]:
    rng = random.Random(seed)
    return [[rng.randrange(n) for _ in range(n)] for _ in range(resamples)]


@pytest.mark.parametrize("seed", [0, 7])
def test_binary_scores_match_slow_loop_exactly_on_the_same_draws(seed):
    # 0/1 scores: every sum is an exact integer in float, so delta and p must agree exactly.
    rng = random.Random(100 + seed)
    a = [float(rng.random() < 0.6) for _ in range(57)]
    b = [float(rng.random() < 0.7) for _ in range(57)]
    draws = np.random.default_rng(seed).integers(0, 57, size=(300, 57)).tolist()  # the documented draw
    fast = paired_bootstrap(a, b, resamples=300, seed=seed)
    slow = _slow_bootstrap(a, b, draws)
    assert (fast["delta"], fast["p"]) == (slow["delta"], slow["p"])
    # numpy interpolates percentiles with its own rounding; the last bit may differ.
    assert fast["ci_low"] == pytest.approx(slow["ci_low"], abs=1e-12)
    assert fast["ci_high"] == pytest.approx(slow["ci_high"], abs=1e-12)
    assert (fast["resamples"], fast["n"]) == (300, 57)


def test_real_valued_scores_match_slow_loop_on_the_same_draws():
    rng = random.Random(3)
    a = [rng.gauss(0.4, 0.2) for _ in range(80)]
    b = [x + rng.gauss(0.03, 0.1) for x in a]
    draws = np.random.default_rng(11).integers(0, 80, size=(400, 80)).tolist()
    fast = paired_bootstrap(a, b, resamples=400, seed=11)
    slow = _slow_bootstrap(a, b, draws)
    assert fast["p"] == slow["p"]
    for key in ("delta", "ci_low", "ci_high"):
        assert fast[key] == pytest.approx(slow[key], abs=1e-12), key


def test_agrees_with_an_independent_random_random_bootstrap():
    # Different draws (random.Random), same statistic: p and the interval agree within Monte Carlo error.
    rng = random.Random(5)
    a = [float(rng.random() < 0.70) for _ in range(300)]
    b = [x if rng.random() < 0.8 else float(rng.random() < 0.72) for x in a]
    fast = paired_bootstrap(a, b, resamples=2000, seed=1)
    slow = _slow_bootstrap(a, b, _random_draws(300, 2000, seed=2))
    assert 0.02 < slow["p"] < 0.98  # the case is informative: neither side wins every resample
    assert fast["p"] == pytest.approx(slow["p"], abs=0.06)
    width = slow["ci_high"] - slow["ci_low"]
    assert fast["ci_low"] == pytest.approx(slow["ci_low"], abs=0.1 * width)
    assert fast["ci_high"] == pytest.approx(slow["ci_high"], abs=0.1 * width)


def test_identical_systems_have_delta_zero_and_p_one():
    scores = np.random.default_rng(0).random(200)
    result = paired_bootstrap(scores, scores.copy())
    assert result["delta"] == 0.0
    assert result["p"] == 1.0
    assert result["ci_low"] == result["ci_high"] == 0.0


def test_b_better_on_every_example_gives_p_zero():
    a = np.random.default_rng(1).random(150)
    result = paired_bootstrap(a, a + 0.01, resamples=1000)
    assert result["p"] == 0.0  # reads as p < 1/1000
    assert result["delta"] == pytest.approx(0.01)
    assert result["ci_low"] > 0
    worse = paired_bootstrap(a, a - 0.01, resamples=1000)  # two-sided: A better everywhere is just as significant
    assert worse["p"] == 0.0 and worse["ci_high"] < 0


def test_symmetric_noise_is_not_significant():
    rng = np.random.default_rng(2)
    a = rng.random(400)
    noise = np.abs(rng.normal(0, 0.2, 200))
    b = a + np.concatenate([noise, -noise])  # zero-mean, symmetric around A
    result = paired_bootstrap(a, b, resamples=1000, seed=4)
    assert result["delta"] == pytest.approx(0.0, abs=1e-12)
    assert result["p"] > 0.5
    assert result["ci_low"] < 0 < result["ci_high"]


@pytest.mark.parametrize("seed", range(5))
def test_interval_contains_the_observed_delta(seed):
    rng = np.random.default_rng(seed)
    a = (rng.random(250) < 0.6).astype(float)
    b = (rng.random(250) < 0.6 + 0.05 * seed).astype(float)
    result = paired_bootstrap(a, b, seed=seed)
    assert result["ci_low"] <= result["delta"] <= result["ci_high"]
    assert result["ci_low"] < result["ci_high"]


def test_chunked_draws_equal_one_draw(monkeypatch):
    rng = np.random.default_rng(9)
    a, b = rng.random(50), rng.random(50)
    whole = paired_bootstrap(a, b, resamples=333, seed=5)
    monkeypatch.setattr(bootstrap, "_CHUNK_CELLS", 50 * 7)  # 7 resamples per chunk, a ragged last chunk
    assert paired_bootstrap(a, b, resamples=333, seed=5) == whole


def test_seed_fixes_the_result_and_changes_it():
    rng = np.random.default_rng(4)
    a, b = rng.random(100), rng.random(100)
    assert paired_bootstrap(a, b, seed=3) == paired_bootstrap(a, b, seed=3)
    assert paired_bootstrap(a, b, seed=3)["ci_low"] != paired_bootstrap(a, b, seed=4)["ci_low"]


@pytest.mark.parametrize(("a", "b", "resamples", "message"), [
    ([1.0, 0.0], [1.0], 10, "equal length"),
    ([], [], 10, "empty"),
    ([1.0], [0.0], 0, "resamples"),
    ([1.0, float("nan")], [0.0, 1.0], 10, "finite"),
])
def test_bad_input_is_refused(a, b, resamples, message):
    with pytest.raises(ValueError, match=message):
        paired_bootstrap(a, b, resamples=resamples)


def test_mean_std_is_the_sample_std():
    values = [0.81, 0.79, 0.86, 0.80]
    mean, std = mean_std(values)
    assert mean == pytest.approx(statistics.fmean(values))
    assert std == pytest.approx(statistics.stdev(values))
    assert mean_std([1.0, 2.0, 3.0]) == (2.0, 1.0)


def test_mean_std_of_one_value_has_nan_std():
    mean, std = mean_std([0.5])
    assert mean == 0.5 and math.isnan(std)
    with pytest.raises(ValueError):
        mean_std([])


# ------------------------------------------------------------------------------------- seeds resampled too
def _slow_seed_bootstrap(a_by_seed: list[list[float]], b_by_seed: list[list[float]], resamples: int,
                         seed: int) -> dict:
    """The two-level bootstrap with plain loops, taking its draws in the documented order."""
    rng = np.random.default_rng(seed)
    k = len(a_by_seed)
    deltas = []
    for _ in range(resamples):
        total, cells = 0.0, 0
        for s in rng.integers(0, k, size=k).tolist():
            n = len(a_by_seed[s])
            for i in rng.integers(0, n, size=n).tolist():
                total += b_by_seed[s][i] - a_by_seed[s][i]
                cells += 1
        deltas.append(total / cells)
    at_most_zero = sum(1 for d in deltas if d <= 0)
    at_least_zero = sum(1 for d in deltas if d >= 0)
    ordered = sorted(deltas)
    return {"p": min(1.0, 2 * min(at_most_zero, at_least_zero) / resamples),
            "ci_low": _percentile(ordered, 2.5), "ci_high": _percentile(ordered, 97.5)}


def test_seed_bootstrap_matches_slow_loop_on_the_same_draws():
    rng = random.Random(8)
    sizes = (31, 31, 24)  # unequal seeds too: each draws its own size
    a = [[float(rng.random() < 0.6) for _ in range(n)] for n in sizes]
    b = [[float(rng.random() < 0.65) for _ in range(n)] for n in sizes]
    fast = bootstrap.seed_bootstrap(a, b, resamples=300, seed=5)
    slow = _slow_seed_bootstrap(a, b, 300, 5)
    assert fast["p"] == slow["p"]
    assert fast["ci_low"] == pytest.approx(slow["ci_low"], abs=1e-12)
    assert fast["ci_high"] == pytest.approx(slow["ci_high"], abs=1e-12)
    pooled_a, pooled_b = sum(a, []), sum(b, [])
    assert fast["delta"] == pytest.approx(sum(pooled_b) / len(pooled_b) - sum(pooled_a) / len(pooled_a), abs=1e-15)
    assert (fast["resamples"], fast["seeds"]) == (300, 3)


def test_a_difference_one_seed_carries_is_not_significant_across_seeds():
    # Seed 0: B wins by 30 points; seeds 1 and 2: B loses by 3. Pooled, the examples call B better (p < 0.01);
    # with the seeds resampled, a third of the draws hold no seed 0 at all and B loses there.
    rng = np.random.default_rng(3)
    a = [(rng.random(400) < 0.5).astype(float) for _ in range(3)]
    b = [np.where(rng.random(400) < 0.30, 1.0, a[0]), np.where(rng.random(400) < 0.03, 0.0, a[1]),
         np.where(rng.random(400) < 0.03, 0.0, a[2])]
    pooled = paired_bootstrap(np.concatenate(a), np.concatenate(b), resamples=1000, seed=0)
    seeds = bootstrap.seed_bootstrap(a, b, resamples=1000, seed=0)
    assert pooled["p"] < 0.01 and pooled["delta"] > 0
    assert seeds["delta"] == pytest.approx(pooled["delta"], abs=1e-12)
    assert seeds["p"] > 0.2 and seeds["ci_low"] < 0 < seeds["ci_high"]


def test_seed_bootstrap_known_cases_and_bad_input():
    a = [np.random.default_rng(s).random(60) for s in range(3)]
    same = bootstrap.seed_bootstrap(a, [x.copy() for x in a])
    assert (same["delta"], same["p"], same["ci_low"], same["ci_high"]) == (0.0, 1.0, 0.0, 0.0)
    better = bootstrap.seed_bootstrap(a, [x + 0.01 for x in a])
    assert better["p"] == 0.0 and better["ci_low"] > 0  # better in every example of every seed
    with pytest.raises(ValueError, match="at least 2 seeds"):
        bootstrap.seed_bootstrap(a[:1], a[:1])
    with pytest.raises(ValueError, match="3 seeds but b has 2"):
        bootstrap.seed_bootstrap(a, a[:2])
    with pytest.raises(ValueError, match="equal length"):
        bootstrap.seed_bootstrap(a, [a[0], a[1], a[2][:-1]])
    with pytest.raises(ValueError, match="finite"):
        bootstrap.seed_bootstrap(a, [a[0], a[1], np.full(60, np.nan)])
