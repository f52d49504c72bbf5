#!/usr/bin/env python
"""Per-frame time of ``INSID3.track`` with a memory against one ``segment(target)``, measured in the same run.

Example::

    python benchmarks/bench_track.py --model random:vits16 --image-size 512 --frames 8 --memory 4

The measurement is :func:`insid3lab.bench.tracking.measure_tracking` (also ``insid3lab bench
--frames N``): the baseline is ``set_reference(first frame, first mask)`` then ``segment(frame)``
for every later frame, the tracked time of a frame the time :meth:`INSID3.track` takes to yield
it, the two back to back per frame; the ratio is the median over frames and ``--rounds`` rounds
of (track time / segment time). Goal: ratio <= 1.15.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from insid3lab import INSID3
from insid3lab.bench.tracking import GOAL, MEMORY, measure_tracking, sequence_inputs
from insid3lab.cli import load_model_source


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="random:vits16")
    p.add_argument("--device", default="cpu")
    p.add_argument("--image-size", type=int, default=512)
    p.add_argument("--svd-components", type=int, default=384, help="default: C of ViT-S")
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--size", type=int, nargs=2, default=(240, 320), metavar=("H", "W"), help="frame size")
    p.add_argument("--memory", type=int, default=MEMORY)
    p.add_argument("--min-confidence", type=float, default=-1.0, help="default: every frame is remembered")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--out", default=None, help="write the numbers as JSON")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    frames, first_mask = sequence_inputs(args.frames, seed=0, size=tuple(args.size))
    model = INSID3(
        load_model_source(args.model, device=args.device),
        image_size=args.image_size,
        svd_components=args.svd_components,
        progress=False,
    )
    model.positional.svd()
    res = measure_tracking(
        model, frames, first_mask, memory=args.memory, min_confidence=args.min_confidence, rounds=args.rounds
    )
    res = {"model": args.model, "device": str(model.device), "image_size": args.image_size, **res}
    print(json.dumps(res, indent=2))
    ratio = res["ratio"]
    print(
        f"track (memory {args.memory}, {res['shots_last_frame']} shots) / segment per frame: {ratio:.3f}  "
        f"{'PASS' if ratio <= GOAL else 'FAIL'} (goal <= {GOAL})"
    )
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=2) + "\n")
    return 0 if ratio <= GOAL else 1


if __name__ == "__main__":
    sys.exit(main())
