#!/usr/bin/env python
"""An ablation grid against one setting: the time per episode of every setting from one encoding, in the same run.

An episode is what ``insid3lab eval`` does per episode: the reference given to the model, the
target predicted, every prediction scored. The grid encodes the reference and the target once and
decodes every setting from that (one tree cut per τ, one debiasing per component count, one
threshold per merge value). The goals: the 48-setting grid (4 τ × 3 merge thresholds × 4 component
counts) at most 1.5x one setting, each extra setting at most 5% of one target's encoding.

Examples::

    python benchmarks/bench_grid.py                        # random ViT-S/16, S = 512, CPU, the 48-setting grid
    python benchmarks/bench_grid.py --sizes 512 1024 --episodes 4 --repeats 3 --device cuda
    python benchmarks/bench_grid.py --grid tau=0.5,0.6 --grid refine=bilinear,crf

The measurement is :func:`insid3lab.bench.grid.measure_grid` (also ``insid3lab bench --grid ...``). The
random weights make the masks meaningless; the work per setting is the same as with real ones.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from insid3lab import INSID3, SettingsGrid
from insid3lab.backbone import random_backbone
from insid3lab.bench.grid import GOAL, GOAL_PER_SETTING, grid_episodes, measure_grid

AXES = ["tau=0.4,0.5,0.6,0.7", "merge_threshold=0.1,0.2,0.3", "svd_components=0,100,250,500"]


def run(size: int, axes: list[str], episodes: int, repeats: int, device: torch.device, arch: str) -> dict:
    encoder = random_backbone(arch, seed=0).to(device)

    def model():
        return INSID3(encoder, image_size=size, basis_cache=False, progress=False)

    grid = SettingsGrid.parse(axes, model().params)
    return measure_grid(model, grid_episodes(episodes, size), grid, repeats=repeats)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[512], help="image sides S (multiples of 16)")
    ap.add_argument("--grid", action="append", default=None, metavar="NAME=V1,V2",
                    help=f"an axis (repeat for more; default: {' '.join(AXES)})")  # fmt: skip
    ap.add_argument("--episodes", type=int, default=3, help="episodes (different images each)")
    ap.add_argument("--repeats", type=int, default=2, help="timed rounds (the fastest run of each case is reported)")
    ap.add_argument("--arch", default="vits16", help="random backbone architecture (default vits16)")
    ap.add_argument("--device", default="cpu", help="cpu, cuda, ...")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    ok = True
    for size in args.sizes:
        res = run(size, args.grid or AXES, args.episodes, args.repeats, device, args.arch)
        per = res["per_episode_s"]
        print(f"S = {size}, random {args.arch} on {device}, {res['settings']} settings, {res['episodes']} episodes, "
              f"fastest of {args.repeats} interleaved runs")  # fmt: skip
        for name, seconds in per.items():
            print(f"  {name:<10} {1000 * seconds:8.1f} ms per episode")
        verdict = "PASS" if res["ratio"] <= GOAL else "FAIL"
        print(f"  ratio grid / one setting: {res['ratio']:.3f} (goal <= {GOAL}) {verdict}")
        share = res["per_extra_setting_of_encoding"]
        verdict = "PASS" if share <= GOAL_PER_SETTING else "FAIL"
        print(f"  each extra setting: {1000 * res['per_extra_setting_s']:.1f} ms = {share:.3f} of one target's "
              f"encoding (goal <= {GOAL_PER_SETTING}) {verdict}")  # fmt: skip
        dec = res["after_encoding_s"]
        print(f"  after the encoding: grid {1000 * dec['grid']:.1f} ms, one setting {1000 * dec['one']:.1f} ms; "
              f"ratio from the decodes {res['ratio_from_decode']:.3f}, each extra setting "
              f"{res['per_extra_setting_from_decode_of_encoding']:.4f} of the encoding")  # fmt: skip
        ok &= res["ratio"] <= GOAL and share <= GOAL_PER_SETTING
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
