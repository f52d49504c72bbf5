"""Clocks and memory meters of ``insid3lab bench``: CUDA-synchronised stage timers, peak memory."""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Sequence
from contextlib import contextmanager
from typing import Any

import torch

__all__ = ["Stages", "encoder_device", "peak_rss_bytes", "ratio", "stage_means", "summary", "sync"]


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA); nothing elsewhere."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Stages:
    """Wall-clock seconds per named stage, CUDA synchronised around each.

    ``with stages("name"): ...`` adds the block's seconds to ``times["name"]``; with
    ``times=None`` it measures nothing.
    """

    def __init__(self, device: torch.device, times: dict[str, float] | None):
        self.device = device
        self.times = times

    @contextmanager
    def __call__(self, name: str):
        if self.times is None:
            yield
            return
        sync(self.device)
        t0 = time.perf_counter()
        yield
        sync(self.device)
        self.times[name] = self.times.get(name, 0.0) + time.perf_counter() - t0


def encoder_device(encoder) -> torch.device:
    """The device an encoder's weights are on (CPU when it cannot tell)."""
    dev = getattr(encoder, "device", None)
    if isinstance(dev, torch.device):
        return dev
    try:
        return next(encoder.parameters()).device
    except (AttributeError, StopIteration):
        return torch.device("cpu")


def peak_rss_bytes() -> int | None:
    """Peak resident set size of this process so far, in bytes (None where it cannot be read).

    On Linux the high-water mark of the process's own address space (``VmHWM``): unlike
    ``getrusage``'s ``ru_maxrss``, it does not inherit the peak of the parent that started it.
    Elsewhere ``resource.getrusage(RUSAGE_SELF).ru_maxrss``.
    """
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def summary(values: Sequence[float]) -> dict[str, Any]:
    """Mean, median, min, max of some seconds, and the seconds themselves."""
    v = [float(x) for x in values]
    if not v:
        return {"mean_s": None, "median_s": None, "min_s": None, "max_s": None, "times_s": []}
    return {
        "mean_s": statistics.fmean(v),
        "median_s": statistics.median(v),
        "min_s": min(v),
        "max_s": max(v),
        "times_s": v,
    }


def stage_means(runs: list[dict[str, float]], names: Sequence[str]) -> dict[str, float]:
    """Mean seconds per stage over runs (a stage a run skipped counts 0)."""
    return {name: statistics.fmean([r.get(name, 0.0) for r in runs]) if runs else 0.0 for name in names}


def ratio(a: float | None, b: float | None) -> float | None:
    """a / b, None when either is missing or b is 0."""
    return None if a is None or not b else a / b
