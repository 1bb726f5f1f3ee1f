"""DelDirection and Del-zscore: algebraic properties and agreement with a direct numpy formula."""

from __future__ import annotations

import numpy as np
import pytest

from defemb.analysis.reference import del_direction_naive
from defemb.baselines import apply_baseline, default_components, del_direction, del_zscore, principal_directions, zscore
from defemb.config import BaselineConfig
from defemb.errors import DefembError


@pytest.fixture
def table():
    rng = np.random.default_rng(0)
    scales = np.linspace(3.0, 0.1, 24)  # distinct variances, so principal directions are well defined
    return rng.normal(size=(500, 24)) * scales + rng.normal(size=24)


@pytest.mark.parametrize("D", [1, 3, 7])
def test_result_is_orthogonal_to_removed_directions(table, D):
    _, U = principal_directions(table, D)
    out = del_direction(table, D)
    assert np.abs(out @ U).max() < 1e-9


@pytest.mark.parametrize("D", [0, 1, 4])
def test_matches_direct_svd_formula(table, D):
    np.testing.assert_allclose(del_direction(table, D), del_direction_naive(table, D), atol=1e-9)


def test_zero_components_is_centring_only(table):
    out = del_direction(table, 0)
    np.testing.assert_allclose(out, table - table.mean(axis=0), atol=1e-12)
    np.testing.assert_allclose(out.mean(axis=0), 0.0, atol=1e-12)


def test_raw_projection_follows_mu_et_al_algorithm_1(table):
    mean, U = principal_directions(table, 2)
    expected = (table - mean) - (table @ U) @ U.T
    np.testing.assert_allclose(del_direction(table, 2, projection="raw"), expected, atol=1e-9)
    # ... which leaves the constant offset -(uᵀμ) along each removed direction
    np.testing.assert_allclose(del_direction(table, 2, projection="raw") @ U, -np.tile(mean @ U, (500, 1)), atol=1e-9)


def test_zscore_standardises_each_dimension(table):
    out = del_zscore(table, 2)
    np.testing.assert_allclose(out.mean(axis=0), 0.0, atol=1e-9)
    std = out.std(axis=0)
    # the removed directions leave near-zero variance along them, not along axes: all columns stay ~1
    np.testing.assert_allclose(std, 1.0, atol=1e-6)


def test_zscore_floors_constant_columns():
    E = np.ones((10, 3))
    E[:, 0] = np.arange(10)
    out = zscore(E)
    assert np.isfinite(out).all() and np.allclose(out[:, 1:], 0.0)


def test_dtype_is_kept_and_default_components():
    E = np.random.default_rng(1).normal(size=(100, 384)).astype(np.float32)
    assert del_direction(E).dtype == np.float32
    assert default_components(384) == 4 and default_components(50) == 1 and default_components(2304) == 23


@pytest.mark.parametrize("D", [24, 100_000, -1])
def test_components_outside_the_table_width_are_refused(table, D):
    with pytest.raises(DefembError, match="below the table width 24"):
        del_direction(table, D)


def test_baseline_refuses_components_before_loading_weights(tiny_model_dir, tmp_path, monkeypatch):
    def no_load(*args, **kwargs):
        raise AssertionError("weights loaded before --components was checked")

    monkeypatch.setattr("defemb.baselines.load_model", no_load)
    config = BaselineConfig("deldirection", str(tiny_model_dir("bert")), components=100_000)
    with pytest.raises(DefembError, match="--components 100000 must be between 0 and 31"):
        apply_baseline(config, tmp_path / "out")
    assert not (tmp_path / "out").exists()
