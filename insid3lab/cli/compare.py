"""``insid3lab compare RUN_A RUN_B``: paired comparison of two evaluation runs on identical episodes.

    insid3lab compare runs/black runs/noise --out runs/black_vs_noise

prints the mIoU (PCK@0.10) of both, the difference B - A with its paired-bootstrap 95% interval
and the classes that changed most; with ``--out`` writes ``compare.json`` and ``compare.png``
(per-class differences): a file of either run is never replaced, another existing file only with
``--overwrite``. Runs of different datasets, folds, shots, ways, protocols or episodes are refused
with one line saying which.
"""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["add_parser", "cmd_compare"]


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``compare`` command to an argparse ``subparsers`` object."""
    p = subparsers.add_parser(
        "compare",
        help="paired comparison of two evaluation runs on the same episodes",
        description="Difference B - A of two runs of insid3lab eval on identical episodes, with a paired-bootstrap "
        "95% interval (episodes resampled jointly) and per-class differences.",
    )
    p.add_argument("run_a", metavar="RUN_A", help="run folder of insid3lab eval (the baseline)")
    p.add_argument("run_b", metavar="RUN_B", help="run folder of insid3lab eval on the same episodes")
    p.add_argument("--out", default=None, metavar="DIR", help="write compare.json and compare.png here")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files (each is reported)")
    p.add_argument("--bootstrap", type=int, default=1000, metavar="N", help="resamples (default %(default)s)")
    p.add_argument("--bootstrap-seed", type=int, default=0, metavar="S", help="seed of the resampling (default 0)")
    p.add_argument("--top", type=int, default=5, metavar="K", help="classes listed with the largest changes")
    p.set_defaults(func=cmd_compare)
    return p


def cmd_compare(args: argparse.Namespace) -> int:
    """Print the comparison; write its files with ``--out``. Errors raise ValueError (one line)."""
    from insid3lab.cli.console import Console
    from insid3lab.cli.output import check_outputs, write_atomic
    from insid3lab.core.files import json_text
    from insid3lab.eval.reports.compare import compare_runs, plot_comparison
    from insid3lab.eval.reports.runs import run_inputs

    if args.bootstrap < 1:
        raise ValueError(f"--bootstrap {args.bootstrap}: must be >= 1")
    if args.out:
        out = Path(args.out)
        if out.exists() and not out.is_dir():
            raise ValueError(f"--out {out}: is a file; give a folder")
        inputs = [*run_inputs(args.run_a), *run_inputs(args.run_b)]
        check_outputs([out / "compare.json", out / "compare.png"], inputs, overwrite=args.overwrite)
    c = compare_runs(args.run_a, args.run_b, resamples=args.bootstrap, seed=args.bootstrap_seed)
    name = "mIoU" if c["metric"] == "miou" else "PCK@0.10"
    lo, hi = c["interval"]
    print(
        f"A {name} {c['a']:.2f}  B {name} {c['b']:.2f}  B - A {c['difference']:+.2f} "
        f"[{lo:+.2f}, {hi:+.2f}] (95% paired bootstrap, {c['episodes']} episodes, seed {args.bootstrap_seed})"
    )
    ranked = sorted(c["per_class"].items(), key=lambda kv: -abs(kv[1]["difference"]))[: max(0, args.top)]
    for cls, v in ranked:
        print(f"  {cls}: {v['a']:.1f} -> {v['b']:.1f} ({v['difference']:+.1f})")
    if args.out:
        note = Console().note
        write_atomic(out / "compare.json", lambda tmp: tmp.write_text(json_text(c)), note)
        fig = plot_comparison(c)
        write_atomic(out / "compare.png", lambda tmp: fig.savefig(tmp, dpi=110), note)
        print(f"comparison: {out / 'compare.json'}")
    return 0
