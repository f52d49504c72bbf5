"""``--grid`` and ``--grid-file``: a grid of settings on the command line (``eval`` and ``bench``).

Each ``--grid NAME=V1,V2`` is one axis (any field of :class:`~insid3lab.method.params.Params`, values
parsed and checked by it); the settings are their product. ``--grid-file F.json`` gives an explicit
list instead. Fields the grid leaves alone come from the command's other flags.
"""

from __future__ import annotations

import argparse
import json
import math
import os

from insid3lab.cli import options

__all__ = ["add_grid_arguments", "eval_grid", "grid_from_args", "grid_lines"]


def add_grid_arguments(p: argparse.ArgumentParser, *, what: str = "run") -> None:
    """``--grid NAME=V1,V2`` (repeatable) and ``--grid-file F.json``, mutually exclusive."""
    g = p.add_argument_group("grid (ablations in one pass)")
    x = g.add_mutually_exclusive_group()
    x.add_argument("--grid", action="append", default=None, metavar="NAME=V1,V2",
                   help="one axis of a grid of settings: a method parameter (tau, merge_threshold, svd_components, "
                   "debias, refine, clustering, basis_image, image_size, ...) and its values; repeat for more axes, "
                   f"the {what} covers their product (at most 10,000 settings), the other flags give the rest. Each "
                   "image is encoded once and every setting decoded from that, so a grid costs little more than one "
                   "setting; image_size changes the encoding and costs one encoding per value")  # fmt: skip
    x.add_argument("--grid-file", default=None, metavar="F.json",
                   help='an explicit list of settings instead of axes: [{"tau": 0.5}, {"tau": 0.6, '
                   '"svd_components": 100}, ...] (parameters left out: the other flags\' values)')  # fmt: skip


def grid_from_args(args: argparse.Namespace, *, svd_components: int | None = None):
    """The :class:`~insid3lab.method.grid.SettingsGrid` of ``--grid``/``--grid-file`` on the settings of the other
    flags, or None without either (checked before any work: a ValueError names what is wrong)."""
    from insid3lab.method.grid import SettingsGrid

    if not getattr(args, "grid", None) and not getattr(args, "grid_file", None):
        return None
    base = options.method_params(args, **({} if svd_components is None else {"svd_components": svd_components}))
    if args.grid_file:
        return SettingsGrid.from_file(args.grid_file, base)
    return SettingsGrid.parse(args.grid, base)


def eval_grid(args: argparse.Namespace):
    """``insid3lab eval``'s grid (or None); a ValueError for a benchmark whose settings cannot share an encoding."""
    from insid3lab.eval.datasets import BENCHMARKS
    from insid3lab.eval.video.registry import VIDEO_BENCHMARKS

    if not args.grid and not args.grid_file:
        return None
    flag = "--grid" if args.grid else "--grid-file"
    if args.dataset in VIDEO_BENCHMARKS:
        raise ValueError(f"{flag} does not apply to --dataset {args.dataset}: tracking feeds each frame's prediction "
                         "into its memory, so the settings cannot share one encoding; run one eval per setting")  # fmt: skip
    if getattr(getattr(BENCHMARKS.get(args.dataset), "cls", None), "task", "") == "keypoints":
        raise ValueError(f"{flag} does not apply to --dataset {args.dataset}: keypoint matching reads only "
                         "image_size, svd_components and debias; run one eval per setting")  # fmt: skip
    return grid_from_args(args)


def grid_lines(grid, out: str, *, summary: dict | None = None, folds: bool = False) -> list[str]:
    """What ``insid3lab eval`` prints about a grid run in ``out`` (nothing without a ``grid``): where the settings'
    summaries are, which one ``summary.json`` holds and the best (``summary``), or, for ``--fold all``, the folds'."""
    if grid is None:
        return []
    if folds:
        return [f"grid: {len(grid)} settings per fold in {os.path.join(out, 'fold<k>', 'grid.json')}; their mean over "
                f"folds: insid3lab report {out}"]  # fmt: skip
    g = summary["grid"]
    with open(os.path.join(out, g["file"])) as fh:
        doc = json.load(fh)
    key, name, scale = {"instances": ("ap", "AP", 100.0)}.get(summary["task"], ("miou", "mIoU", 1.0))
    scored = [(c[key], c["params"]) for c in doc["configs"] if c.get(key) is not None and not math.isnan(c[key])]
    best = max(scored, key=lambda t: t[0], default=None)
    text = f"grid: {g['settings']} settings in {os.path.join(out, g['file'])}; summary.json holds {g['label']}"
    if best is not None:
        label = ",".join(f"{k}={v}" for k, v in best[1].items())
        text += f"; best {name} {scale * best[0]:.2f} at {label} (chosen on these episodes: optimistic)"
    return [text]
