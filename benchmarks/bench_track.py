#!/usr/bin/env python
"""Per-frame time of ``INSID3.track`` with a memory against one ``segment(target)``, measured in the same run.

Example::

    python benchmarks/bench_track.py --model random:vits16 --image-size 512 --frames 8 --memory 4

The baseline is ``set_reference(first frame, first mask)`` then ``segment(frame)`` for every
later frame; the tracked time of a frame is the time :meth:`INSID3.track` takes to yield it
(its one encoding, its debiasing and the decode against 1 + memory shots). Frames 1..T-1 are
timed in both (the first frame is the reference in both), the two paths back to back per frame
so that both see the same load of the machine. The ratio is the median over frames and
``--rounds`` rounds of (track time / segment time) of a frame. Goal: ratio <= 1.15.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from insid3lab import INSID3
from insid3lab.cli import load_model_source
from insid3lab.scenes_video import moving_object_sequence

GOAL = 1.15


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def paired_times(model: INSID3, frames, first_mask, memory: int, min_confidence: float) -> tuple[list, list, int]:
    """Seconds of ``segment`` and of ``track`` for every later frame, the two timed back to back per frame.

    Interleaving frame by frame exposes both paths to the same load of the machine. The track
    generator yields frame t once it has encoded and decoded it (against 1 + memory shots).
    """
    from insid3lab.tracking import track

    def synced(fn):
        def run():
            out = fn()
            _sync(model.device)
            return out

        return run

    model.clear_reference()
    model.set_reference(frames[0], first_mask)  # the baseline's reference: the first frame
    holder: list = []
    gen = track(model, frames, first_mask, memory=memory, min_confidence=min_confidence, progress=False, tracker=holder)
    next(gen)  # the first frame: its encoding is the reference, as set_reference in the baseline
    seg, trk = [], []
    for t, frame in enumerate(frames[1:]):
        pair = [("segment", synced(lambda f=frame: model.segment(f))), ("track", synced(lambda: next(gen)))]
        for name, fn in pair if t % 2 == 0 else pair[::-1]:  # alternate which one goes first
            _sync(model.device)
            _, dt = _timed(fn)
            (seg if name == "segment" else trk).append(dt)
    return seg, trk, holder[0].records[-1].shots[1]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="random:vits16")
    p.add_argument("--device", default="cpu")
    p.add_argument("--image-size", type=int, default=512)
    p.add_argument("--svd-components", type=int, default=384, help="default: C of ViT-S")
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--size", type=int, nargs=2, default=(240, 320), metavar=("H", "W"), help="frame size")
    p.add_argument("--memory", type=int, default=4)
    p.add_argument("--min-confidence", type=float, default=-1.0, help="default: every frame is remembered")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--out", default=None, help="write the numbers as JSON")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    frames, maps = moving_object_sequence(args.frames, tuple(args.size), seed=0)
    first_mask = maps[0] == 1
    model = INSID3(
        load_model_source(args.model, device=args.device),
        image_size=args.image_size,
        svd_components=args.svd_components,
        progress=False,
    )
    model.positional_svd()
    paired_times(model, frames[:3], first_mask, args.memory, args.min_confidence)  # warm-up of both paths
    seg, trk, shots = [], [], 0
    for _ in range(args.rounds):
        a, b, shots = paired_times(model, frames, first_mask, args.memory, args.min_confidence)
        seg += a
        trk += b
    s, t = statistics.median(seg), statistics.median(trk)
    ratio = statistics.median(b / a for a, b in zip(seg, trk))  # per frame pair, then the median
    res = {
        "model": args.model,
        "device": str(model.device),
        "image_size": args.image_size,
        "frames": args.frames,
        "memory": args.memory,
        "shots_last_frame": shots,
        "pairs": len(seg),
        "segment_s_per_frame": round(s, 4),
        "track_s_per_frame": round(t, 4),
        "ratio": round(ratio, 3),
        "goal": GOAL,
    }
    print(json.dumps(res, indent=2))
    print(
        f"track (memory {args.memory}, {shots} shots) / segment per frame: {ratio:.3f}  "
        f"{'PASS' if ratio <= GOAL else 'FAIL'} (goal <= {GOAL})"
    )
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=2) + "\n")
    return 0 if ratio <= GOAL else 1


if __name__ == "__main__":
    sys.exit(main())
