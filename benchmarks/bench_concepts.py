#!/usr/bin/env python
"""Many concepts on one target: the time of five concepts against one, measured in the same run.

One target encoding and one clustering serve every concept; only the matching, the seed, the
scores and the upsampling are per concept. The goal: five concepts cost at most 1.3x one.

Examples::

    python benchmarks/bench_concepts.py                       # random ViT-S/16, S = 512 and 1024, CPU
    python benchmarks/bench_concepts.py --sizes 1024 --repeats 5 --device cuda

For each S the script times ``segment`` (one concept), ``segment_labels`` with one concept, with
five concepts from one label map (one reference image) and with five concepts from five reference
images, on the same target, and prints the per-stage times and the ratios to one concept. The
random weights make the masks meaningless; the work done per concept is the same as with real ones.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from insid3lab import INSID3  # noqa: E402
from insid3lab.backbone import random_backbone  # noqa: E402
from insid3lab.concepts import run_concepts  # noqa: E402
from insid3lab.samples import sample_scene  # noqa: E402

#: The goal for five concepts against one, on the same target in the same run.
GOAL = 1.3


def _label_map(size: int, n: int, seed: int) -> np.ndarray:
    """n rectangular regions with values 1..n in a size x size map."""
    rng = np.random.default_rng(seed)
    lm = np.zeros((size, size), np.uint8)
    side = size // 4
    for v in range(1, n + 1):
        y, x = rng.integers(0, size - side, size=2)
        lm[y : y + side, x : x + side] = v
    return lm


def _time_all(cases: dict, repeats: int, device: torch.device) -> dict[str, tuple[float, dict]]:
    """Every case run once to warm up, then ``repeats`` rounds in turn (so that a busy machine slows
    every case alike); per case the fastest run and its stage times."""
    for fn in cases.values():
        fn()
    best: dict[str, tuple[float, dict]] = {}
    for _ in range(repeats):
        for name, fn in cases.items():
            timings: dict = {}
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t0 = time.perf_counter()
            fn(timings)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            seconds = time.perf_counter() - t0
            if name not in best or seconds < best[name][0]:
                best[name] = (seconds, timings)
    return best


def run(size: int, repeats: int, device: torch.device, concepts: int = 5) -> dict[str, float]:
    encoder = random_backbone("vits16", seed=0).to(device)
    target = sample_scene(11, (size, size))[0]
    images = [sample_scene(s, (size, size))[0] for s in range(concepts)]
    lm = _label_map(size, concepts, seed=1)

    def model():
        return INSID3(encoder, image_size=size, svd_components=384, basis_cache=False, progress=False)

    one = model()
    one.set_reference(images[0], lm == 1, label="c1")
    five_map = model()
    five_map.set_reference(images[0], lm, labels={v: f"c{v}" for v in range(1, concepts + 1)})
    five_images = model()
    for v in range(1, concepts + 1):
        five_images.set_reference(images[v - 1], lm == v, label=f"c{v}")

    cases = {
        "segment, 1 concept": lambda t=None: one.segment(target, timings=t),
        "segment_labels, 1 concept": lambda t=None: one.segment_labels(target, timings=t),
        f"segment_labels, {concepts} concepts (one label map)": lambda t=None: five_map.segment_labels(
            target, timings=t
        ),
        f"segment_labels, {concepts} concepts ({concepts} images)": (
            lambda t=None: five_images.segment_labels(target, timings=t)
        ),
    }
    out = {}
    for name, (seconds, stages) in _time_all(cases, repeats, device).items():
        out[name] = seconds
        parts = ", ".join(f"{k} {1000 * v:.0f}" for k, v in stages.items())
        print(f"  {name:<42} {1000 * seconds:8.1f} ms   ({parts})")
    # the same without the backbone: every step after the encoding of one encoded target
    enc = one.encode(target)
    after = {
        "after encoding, 1 concept": lambda t=None: run_concepts(one, enc, timings=t),
        f"after encoding, {concepts} concepts (one label map)": lambda t=None: run_concepts(five_map, enc, timings=t),
        f"after encoding, {concepts} concepts ({concepts} images)": (
            lambda t=None: run_concepts(five_images, enc, timings=t)
        ),
    }
    for name, (seconds, _) in _time_all(after, repeats, device).items():
        out[name] = seconds
        print(f"  {name:<42} {1000 * seconds:8.1f} ms")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[512, 1024], help="image sides S (multiples of 16)")
    ap.add_argument("--repeats", type=int, default=3, help="timed rounds (the fastest run of each case is reported)")
    ap.add_argument("--concepts", type=int, default=5, help="concepts of the many-concept cases")
    ap.add_argument("--device", default="cpu", help="cpu, cuda, ...")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    ok = True
    for size in args.sizes:
        print(f"S = {size}, random ViT-S/16 on {device}, fastest of {args.repeats} interleaved runs")
        res = run(size, args.repeats, device, args.concepts)
        base = res["segment_labels, 1 concept"]
        for name, seconds in res.items():
            if "concepts" in name and not name.startswith("after"):
                ratio = seconds / base
                ok &= ratio <= GOAL
                verdict = "PASS" if ratio <= GOAL else "FAIL"
                print(f"  ratio {name} / 1 concept: {ratio:.2f} (goal <= {GOAL}) {verdict}")
        print(f"  segment_labels / segment, 1 concept: {base / res['segment, 1 concept']:.2f}")
        # end to end = encoding + the rest: the encoding is shared, so the extra cost per concept is
        # the difference of the after-encoding times (less sensitive to a busy machine than the totals)
        encoding = base - res["after encoding, 1 concept"]
        for name, seconds in res.items():
            if name.startswith("after") and "concepts" in name:
                ratio = (encoding + seconds) / base
                print(
                    f"  encoding + {name[len('after encoding, ') :]} / 1 concept: {ratio:.2f}"
                    f" (the concepts add {1000 * (seconds - res['after encoding, 1 concept']):.0f} ms)"
                )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
