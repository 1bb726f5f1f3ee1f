"""bf16 is chosen by measuring both precisions, not by a CPU flag."""

from __future__ import annotations

import math

import pytest

from defemb import precision


def test_choice_follows_the_fastest_rounds():
    assert precision.choose_bf16([1.0, 1.0, 9.0], [0.5, 0.6, 0.1])
    assert not precision.choose_bf16([1.0, 1.0, 1.0], [0.95, 0.9, 2.0])  # 10 % is not worth bf16's rounding
    assert not precision.choose_bf16([1.0, 1.1], [1.5, 1.6])  # slower
    # rounds slowed by another process (the medians say float32) do not hide a bf16 that is 2.5x faster
    assert precision.choose_bf16([1.0, 3.0, 3.0], [0.4, 3.5, 3.5])


@pytest.mark.parametrize(("fp32", "bf16", "expected"), [(2.0, 1.0, True), (1.0, 1.0, False), (1.0, 3.0, False)])
def test_use_bf16_follows_the_measurement_on_this_device(monkeypatch, fp32, bf16, expected):
    calls = []

    def fake_time_both(device, rounds=15, repeats=2):
        calls.append(device)
        return [fp32] * 3, [bf16] * 3

    precision._speedup.cache_clear()
    monkeypatch.setattr(precision, "time_both", fake_time_both)
    try:
        assert precision.use_bf16("cpu") is expected
        assert precision.use_bf16("cpu") is expected
        assert calls == ["cpu"]  # measured once per process
    finally:
        precision._speedup.cache_clear()


def test_real_measurement_is_a_positive_ratio():
    fp32, bf16 = precision.time_both("cpu", rounds=2, repeats=1)
    assert len(fp32) == len(bf16) == 2 and min(fp32 + bf16) > 0
    ratio = precision.bf16_speedup("cpu")
    assert math.isfinite(ratio) and ratio > 0


def test_the_cpu_is_named_with_its_family_and_model(tmp_path):
    """A virtual machine names only "AMD EPYC" whether it is a Zen 3 or a Zen 5; benchmark tables need which."""
    info = tmp_path / "cpuinfo"
    block = "processor\t: {n}\nvendor_id\t: AuthenticAMD\ncpu family\t: 26\nmodel\t\t: 2\nmodel name\t: AMD EPYC\n\n"
    info.write_text(block.format(n=0) + block.format(n=1).replace("26", "25"))
    assert precision.cpu_name(str(info)) == "AMD EPYC (family 26, model 2)"
    info.write_text("model name\t: Some CPU\n")
    assert precision.cpu_name(str(info)) == "Some CPU"
    assert precision.cpu_name(str(tmp_path / "missing")) not in ("", None)
