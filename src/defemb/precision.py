"""Whether bfloat16 autocast is worth it on this machine — measured once per process, never guessed.

A CPU flag says little: on an AMD EPYC with AVX-512 BF16 and no AMX, bf16 matrix products ran 4.1× faster
than float32, while `torch.cpu._is_amx_tile_supported()` (what we used to ask) said no. So we time the
layer that dominates training — a transformer-sized linear layer, forward and backward — both ways,
interleaved so that load from other processes hits both alike, and keep bf16 only when it is clearly
faster.

The ratio is that of the *fastest* round of each, not the median: a round slowed by another process says
nothing about the precision. With a second process busy on both cores of a 2-core AMD EPYC (bf16 ≈ 3× when
idle), the medians of 15 rounds gave 1.0–1.5× (float32 chosen) and the fastest rounds 1.9–3.9×; with 5
rounds a pipeline once measured 1.06× and trained in float32 at a third of the speed.
"""

from __future__ import annotations

import functools
import platform
import time

import torch

MIN_SPEEDUP = 1.15  # below this the rounding of bf16 is not worth the time saved
_SHAPE = (1024, 384, 1536)  # tokens × hidden × feed-forward width of a small encoder (MiniLM)


def choose_bf16(fp32_seconds: list[float], bf16_seconds: list[float], min_speedup: float = MIN_SPEEDUP) -> bool:
    """bf16 when the fastest float32 round takes at least ``min_speedup`` times the fastest bf16 round."""
    return min(fp32_seconds) >= min_speedup * min(bf16_seconds)


def _time_layer(layer: torch.nn.Linear, x: torch.Tensor, bf16: bool, repeats: int) -> float:
    device = x.device
    start = time.perf_counter()
    for _ in range(repeats):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            y = layer(x)
        y.float().sum().backward()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def time_both(device: str = "cpu", rounds: int = 15, repeats: int = 2) -> tuple[list[float], list[float]]:
    """Seconds per round for float32 and for bf16 autocast, rounds interleaved (after one warm-up each)."""
    tokens, hidden, width = _SHAPE
    generator = torch.Generator().manual_seed(0)
    layer = torch.nn.Linear(hidden, width).to(device)
    x = torch.randn(tokens, hidden, generator=generator).to(device)
    fp32, bf16 = [], []
    for round_ in range(rounds + 1):
        a = _time_layer(layer, x, False, repeats)
        b = _time_layer(layer, x, True, repeats)
        if round_:  # the first round pays for kernel selection and allocation
            fp32.append(a)
            bf16.append(b)
    return fp32, bf16


def bf16_speedup(device: str | None = None) -> float:
    """Median float32 time over median bf16 time for the probe layer on ``device`` (default: the GPU when
    there is one, else the CPU); 0.0 where bf16 autocast fails. Measured once per process and device."""
    return _speedup(device or ("cuda" if torch.cuda.is_available() else "cpu"))


@functools.cache
def _speedup(device: str) -> float:
    if device.startswith("cuda") and not torch.cuda.is_bf16_supported():
        return 0.0
    try:
        fp32, bf16 = time_both(device)
    except RuntimeError:  # no bf16 kernels for this device
        return 0.0
    return min(fp32) / min(bf16)


def use_bf16(device: str | None = None) -> bool:
    """Train with bf16 autocast here?"""
    return bf16_speedup(device) >= MIN_SPEEDUP


def cpu_name(cpuinfo: str = "/proc/cpuinfo") -> str:
    """The CPU's model name with its family and model numbers, for the tables that report times (never used
    to decide anything). A virtual machine often names only the vendor ("AMD EPYC"): the numbers tell its
    generations apart (AMD family 25 is Zen 3 or 4, 26 is Zen 5)."""
    fields: dict[str, str] = {}
    try:
        with open(cpuinfo, encoding="utf-8") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                key = key.strip()
                if key in ("model name", "cpu family", "model") and key not in fields:
                    fields[key] = value.strip()
                if not line.strip() and fields:  # the first processor's block is enough
                    break
    except OSError:
        pass
    if "model name" in fields:
        numbers = [f"{key.removeprefix('cpu ')} {fields[key]}" for key in ("cpu family", "model") if key in fields]
        return fields["model name"] + (f" ({', '.join(numbers)})" if numbers else "")
    return platform.processor() or platform.machine() or "unknown CPU"
