#!/usr/bin/env python
"""Many concepts on one target: the time of five concepts against one, measured in the same run.

One target encoding and one clustering serve every concept; only the matching, the seed, the
scores and the upsampling are per concept. The goal: five concepts cost at most 1.3x one.

Examples::

    python benchmarks/bench_concepts.py                       # random ViT-S/16, S = 512 and 1024, CPU
    python benchmarks/bench_concepts.py --sizes 1024 --repeats 5 --device cuda

For each S the script times, on the same target, ``segment`` (one concept), ``segment_labels``
with one concept, with N concepts from one label map (one reference image: the object's mask
and N - 1 strips of the background) and with N concepts from N reference images, and prints
the ratios to one concept. The measurement is :func:`insid3lab.bench.concepts.measure_concepts`
(also ``insid3lab bench --concepts N``). The random weights make the masks meaningless; the
work done per concept is the same as with real ones.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from insid3lab import INSID3
from insid3lab.backbone import random_backbone
from insid3lab.bench.concepts import GOAL, measure_concepts
from insid3lab.synthetic import sample_scene


def run(size: int, repeats: int, device: torch.device, concepts: int = 5) -> dict:
    encoder = random_backbone("vits16", seed=0).to(device)
    target = sample_scene(11, (size, size))[0]
    image, mask = sample_scene(0, (size, size))
    images = [image] + [sample_scene(s, (size, size))[0] for s in range(1, concepts)]

    def model():
        return INSID3(encoder, image_size=size, svd_components=384, basis_cache=False, progress=False)

    return measure_concepts(model, image, mask, [target], concepts, repeats=repeats, images=images)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[512, 1024], help="image sides S (multiples of 16)")
    ap.add_argument("--repeats", type=int, default=3, help="timed rounds (the fastest run of each case is reported)")
    ap.add_argument("--concepts", type=int, default=5, help="concepts of the many-concept cases")
    ap.add_argument("--device", default="cpu", help="cpu, cuda, ...")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    ok = True
    n = args.concepts
    for size in args.sizes:
        print(f"S = {size}, random ViT-S/16 on {device}, fastest of {args.repeats} interleaved runs")
        res = run(size, args.repeats, device, n)
        per, dec = res["per_target_s"], res["after_encoding_s"]
        for name, seconds in per.items():
            print(f"  {name:<16} {1000 * seconds:8.1f} ms")
        for name, seconds in dec.items():
            print(f"  after encoding, {name:<16} {1000 * seconds:8.1f} ms")
        for key, what in (("ratio", "one label map"), ("ratio_images", f"{n} images")):
            ok &= res[key] <= GOAL
            verdict = "PASS" if res[key] <= GOAL else "FAIL"
            print(f"  ratio {n} concepts ({what}) / 1 concept: {res[key]:.2f} (goal <= {GOAL}) {verdict}")
        print(f"  segment_labels / segment, 1 concept: {res['ratio_segment']:.2f}")
        # the encoding is shared, so the extra cost per concept is the difference of the after-encoding
        # times (less sensitive to a busy machine than the totals)
        print(
            f"  encoding + {n} concepts' decode / 1 concept: {res['ratio_from_decode']:.2f}"
            f" (the concepts add {1000 * (dec['concepts'] - dec['one_concept']):.0f} ms)"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
