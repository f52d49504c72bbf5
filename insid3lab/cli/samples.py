"""``insid3lab samples``: a reference, its mask and targets (with ground-truth masks) to try the commands on."""

from __future__ import annotations

import argparse

__all__ = ["add_parser", "cmd_samples"]


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "samples", help="write sample images (reference, mask, targets) to a folder",
        description="Writes reference.png, reference_mask.png, target_N.png and their ground truth target_N_mask.png "
        "(0/255). segment writes target_N.png.pred.png next to them, never over them.",
    )  # fmt: skip
    p.add_argument("out", metavar="DIR")
    p.set_defaults(func=cmd_samples)
    return p


def cmd_samples(args) -> int:
    from insid3lab.synthetic.scenes import write_samples

    for p in write_samples(args.out):
        print(p)
    return 0
