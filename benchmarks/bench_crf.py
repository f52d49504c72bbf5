#!/usr/bin/env python
"""Time and peak memory of the CRF boundary refinement (``insid3lab.stages.refine.crf.crf_refine``).

Each size runs in a fresh process so that its peak resident memory is its own. The input is the
sample scene at S x S with a realistic coarse mask: the ground truth area-pooled to the S/16 patch
grid and bilinearly upsampled, as INSID3 produces it.

Examples::

    python benchmarks/bench_crf.py                       # CPU, 2 threads, S = 512 and 1024
    python benchmarks/bench_crf.py --check               # exit status 1 if S = 512 takes over 1.5 s
    python benchmarks/bench_crf.py --device cuda --sizes 512 1024 2048

Prints, per size: the whole refinement (median and fastest of the repeats, and the median as a
ratio of a baseline sort timed between the repeats, which stays comparable on a shared machine),
the lattice builds, the ten filter rounds, peak memory, IoU of the coarse and the refined mask with the scene's ground truth, and
the whole refinement as a ratio of the target (1.5 s at S = 512 on two cores).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TARGET_S = 512
TARGET_SECONDS = 1.5


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _measure(size: int, device: str, threads: int, repeats: int) -> dict:
    import torch
    import torch.nn.functional as F

    from insid3lab.stages.refine.crf import CRF_DEFAULTS, band_regions, crf_features, crf_refine, crf_unary
    from insid3lab.stages.refine.lattice import PermutohedralLattice
    from insid3lab.synthetic import sample_scene

    torch.set_num_threads(threads)
    img, gt_np = sample_scene(0, size=(size, size))
    image = (torch.from_numpy(img).permute(2, 0, 1).float() / 255).to(device)
    gt = torch.from_numpy(gt_np).to(device)
    grid = max(1, size // 16)
    pooled = F.interpolate(gt[None, None].float(), size=(grid, grid), mode="area")
    coarse = F.interpolate(pooled, size=(size, size), mode="bilinear", align_corners=False)[0, 0] > 0.5
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()

    # baseline, timed between the runs: sorting as many random int64 keys as the bilateral lattice
    # has simplex vertices (n (d+1)), a memory-bound step of the same size on the same machine
    keys = torch.randint(0, 2**40, (size * size * 6,), device=device)
    crf_refine(image, coarse)  # warm-up
    _sync(device)
    totals, baselines = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = crf_refine(image, coarse)
        _sync(device)
        totals.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        torch.sort(keys)
        _sync(device)
        baselines.append(time.perf_counter() - t0)

    scale = size / 512
    spatial, bilateral = crf_features(
        image, CRF_DEFAULTS["alpha_at_512"] * scale, CRF_DEFAULTS["beta"], CRF_DEFAULTS["gamma_at_512"] * scale
    )
    t0 = time.perf_counter()
    lat_s = PermutohedralLattice(spatial)
    _sync(device)
    t1 = time.perf_counter()
    lat_b = PermutohedralLattice(bilateral)
    _sync(device)
    t2 = time.perf_counter()
    core, outside, _ = band_regions(coarse)
    x = torch.sigmoid(crf_unary(core, outside)).reshape(-1, 1)
    _sync(device)
    t3 = time.perf_counter()
    for _ in range(CRF_DEFAULTS["iterations"]):
        lat_s.filter(x)
        lat_b.filter(x)
    _sync(device)
    t4 = time.perf_counter()

    def iou(a, b):
        return float((a & b).sum()) / max(1, float((a | b).sum()))

    res = {
        "size": size,
        "device": device,
        "threads": threads,
        "total_s": statistics.median(totals),
        "total_min_s": min(totals),
        "baseline_sort_s": statistics.median(baselines),
        "build_spatial_s": t1 - t0,
        "build_bilateral_s": t2 - t1,
        "filter_rounds_s": t4 - t3,
        "lattice_vertices": {"spatial": lat_s.m, "bilateral": lat_b.m},
        "iou_coarse": iou(coarse, gt),
        "iou_refined": iou(out, gt),
    }
    if device.startswith("cuda"):
        res["peak_gpu_bytes"] = torch.cuda.max_memory_allocated()
    res["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    res["peak_rss_increase_bytes"] = res["peak_rss_bytes"] - rss_before
    return res


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024], help="S values (square images)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per size after one warm-up")
    parser.add_argument(
        "--check", action="store_true", help=f"exit 1 if S = {TARGET_S} (fastest run) takes over {TARGET_SECONDS} s"
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child is not None:
        print(json.dumps(_measure(args.child, args.device, args.threads, args.repeats)))
        return 0

    results = []
    for size in args.sizes:
        cmd = [
            sys.executable,
            __file__,
            "--child",
            str(size),
            "--device",
            args.device,
            "--threads",
            str(args.threads),
            "--repeats",
            str(args.repeats),
        ]
        proc = subprocess.run(cmd, check=False, capture_output=True, text=True)
        if proc.returncode != 0:
            print(proc.stderr, file=sys.stderr)
            return proc.returncode
        res = json.loads(proc.stdout.strip().splitlines()[-1])
        results.append(res)
        mem = res.get("peak_gpu_bytes", res["peak_rss_increase_bytes"]) / 2**20
        mem_kind = "GPU" if "peak_gpu_bytes" in res else "RSS increase"
        print(
            f"S={size:5d} {args.device} threads={args.threads}: total {res['total_s']:.3f} s "
            f"(min {res['total_min_s']:.3f} s, {res['total_s'] / res['baseline_sort_s']:.1f}x the baseline sort "
            f"of {size * size * 6} int64 keys, {res['baseline_sort_s']:.3f} s) "
            f"(build spatial {res['build_spatial_s']:.3f} s, bilateral {res['build_bilateral_s']:.3f} s, "
            f"10 filter rounds {res['filter_rounds_s']:.3f} s), peak {mem_kind} {mem:.0f} MiB, "
            f"lattice vertices {res['lattice_vertices']}, IoU coarse {res['iou_coarse']:.4f} -> refined "
            f"{res['iou_refined']:.4f}, total / target {res['total_s'] / TARGET_SECONDS:.2f}"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    if args.check:
        at_target = [r for r in results if r["size"] == TARGET_S]
        if not at_target:
            print(f"--check needs S = {TARGET_S} among --sizes", file=sys.stderr)
            return 2
        best = at_target[0]["total_min_s"]
        ok = best <= TARGET_SECONDS
        print(f"{'PASS' if ok else 'FAIL'}: S={TARGET_S} fastest run {best:.3f} s <= {TARGET_SECONDS} s")
        return 0 if ok else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
