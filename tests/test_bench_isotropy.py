"""Smoke test of benchmarks/bench_isotropy.py: its quick path runs end to end on a tiny table.

Only the accuracy column is asserted (float32 vs float64 isotropy); timings are not, they depend on the machine.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_isotropy.py"


def _load_bench():
    spec = importlib.util.spec_from_file_location("bench_isotropy", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_isotropy_quick_path_small(capsys):
    bench = _load_bench()
    results = bench.main(["--quick", "--rows", "3000", "--cols", "96", "--naive-directions", "4", "--no-minilm"])
    table = capsys.readouterr().out
    assert results["accuracy"]["abs_diff"] <= bench.ACCURACY_TARGET
    assert "(target ≤ 1e-05: met)" in table
    assert table.startswith("| Input | Measurement |")
    assert "extrapolated" in table
    assert 0.0 < results["accuracy"]["float32"] <= 1.0
