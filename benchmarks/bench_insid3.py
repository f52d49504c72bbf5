#!/usr/bin/env python
"""Benchmark INSID3 (``insid3lab bench``) and check the result against the speed targets.

Examples::

    # CPU: ViT-S/16 at 1024 px, 8 targets against one reference
    python benchmarks/bench_insid3.py --model random:vits16 --device cpu --targets 8 --check cpu --out cpu.json
    # GPU: ViT-L/16 at 1024 px, float32 and the bfloat16 fast mode
    python benchmarks/bench_insid3.py --model random:vitl16 --device cuda --autocast float32 --check gpu
    python benchmarks/bench_insid3.py --model random:vitl16 --device cuda --autocast bfloat16 --check gpu

Every option of ``insid3lab bench`` is accepted; ``--check`` adds one PASS/FAIL line per
target and makes the exit status 1 when one fails.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from insid3lab.bench import format_summary  # noqa: E402
from insid3lab.cli.bench import add_bench_arguments, benchmark_from_args  # noqa: E402

GB = 1e9


def _cold_warm(res):
    cold = res.get("cold_start") or {}
    warm = cold.get("pipeline_warm_cache") or {}
    return warm.get("total_minus_weights_s")


def _cold_warm_after_imports(res):
    cold = res.get("cold_start") or {}
    warm = cold.get("pipeline_warm_cache") or {}
    return warm.get("after_imports_minus_weights_s")


def _ratio(key):
    return lambda res: (res.get("ratios") or {}).get(key)


def _identical(res):
    b = res.get("baseline")
    return None if not b else float(b["identical"] == res["config"]["targets"])


def _decode_share(res):
    return (res.get("decode_vs_encoding") or {}).get("decode")


def _decode_s(res):
    return (res.get("decode") or {}).get("mean_s")


def _fast(key):
    return lambda res: (res.get("fast_mode") or {}).get(key)


#: The targets per kind of machine: (name, how to read the value from the result, limit, "<=" or ">=").
TARGETS = {
    "cpu": [
        ("per-target time / baseline", _ratio("per_target"), 0.5, "<="),
        ("decode time / baseline decode", _ratio("decode"), 1.0, "<="),
        ("decode / the target's encoding", _decode_share, 0.10, "<="),
        ("masks identical to the baseline (1 = all)", _identical, 1.0, ">="),
    ],
    "gpu-float32": [
        ("per-target time, float32 (s)", lambda r: r["per_target"]["mean_s"], 0.150, "<="),
        ("decode, float32 (s)", _decode_s, 0.005, "<="),
        ("cold start, warm basis cache, minus weights (s)", _cold_warm, 1.5, "<="),
        ("  the same after imports (s)", _cold_warm_after_imports, 1.5, "<="),
        ("masks identical to the baseline (1 = all)", _identical, 1.0, ">="),
    ],
    "gpu-fast": [
        ("per-target time, fast mode (s)", lambda r: r["per_target"]["mean_s"], 0.060, "<="),
        (
            "peak memory, one target (GB)",
            lambda r: (r["memory"].get("pipeline_one_target_bytes") or float("nan")) / GB,
            2.45,
            "<=",
        ),
        ("mean IoU with float32 masks", _fast("mean_iou_vs_float32"), 0.98, ">="),
        ("cold start, warm basis cache, minus weights (s)", _cold_warm, 1.5, "<="),
    ],
}


def check(res: dict, kind: str) -> list[tuple[str, float | None, float, str, bool]]:
    """(name, value, limit, op, passed) for every target of ``kind`` (``cpu`` or ``gpu``)."""
    if kind == "gpu":
        kind = "gpu-float32" if res["config"]["mode"] == "exact" else "gpu-fast"
    if kind not in TARGETS:
        raise ValueError(f"--check {kind!r}: allowed 'cpu', 'gpu'")
    out = []
    for name, get, limit, op in TARGETS[kind]:
        try:
            value = get(res)
        except (KeyError, TypeError):
            value = None
        ok = value is not None and value == value and (value <= limit if op == "<=" else value >= limit)
        out.append((name, value, limit, op, bool(ok)))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_bench_arguments(parser)
    parser.add_argument(
        "--check", choices=["cpu", "gpu"], default=None, help="compare with the targets of this machine kind"
    )
    args = parser.parse_args(argv)
    res = benchmark_from_args(args)
    print(format_summary(res))
    status = 0
    if args.check:
        results = check(res, args.check)
        res["checks"] = [
            {"target": n, "value": v, "limit": lim, "op": op, "passed": ok} for n, v, lim, op, ok in results
        ]
        for name, value, limit, op, ok in results:
            shown = "-" if value is None else f"{value:.4g}"
            print(f"  {'PASS' if ok else 'FAIL'}  {name}: {shown} (target {op} {limit})")
        status = 0 if all(r[-1] for r in results) else 1
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(res, indent=2))
        print(f"  written: {args.out}")
    return status


if __name__ == "__main__":
    sys.exit(main())
