"""``insid3lab report RUN...``: a Markdown table of runs as the paper's tables lay them out.

    insid3lab report runs/coco_all runs/coco_all_noise --out runs/table.md

Runs as rows; folds and their mean as columns; the 95% interval beside each number. A RUN is a
run folder of ``insid3lab eval`` or the folder of an ``--fold all`` run. Prints the table; with
``--out FILE.md`` also writes it and the figure ``FILE.png``: a file of a run is never replaced,
another existing file only with ``--overwrite`` (as :mod:`insid3lab.cli.output` rules).
"""

from __future__ import annotations

import argparse

__all__ = ["add_parser", "cmd_report"]


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``report`` command to an argparse ``subparsers`` object."""
    p = subparsers.add_parser(
        "report",
        help="Markdown table (and figure) of evaluation runs, folds as columns",
        description="A table of insid3lab eval runs laid out as the paper's tables: runs as rows, folds and the "
        "mean as columns, 95% intervals beside the numbers.",
    )
    p.add_argument("runs", nargs="+", metavar="RUN", help="run folder or --fold all folder")
    p.add_argument(
        "--out", default=None, metavar="FILE.md", help="also write the table here and the figure as FILE.png"
    )
    p.add_argument("--overwrite", action="store_true", help="replace existing output files (each is reported)")
    p.add_argument("--bootstrap", type=int, default=1000, metavar="N",
                   help="resamples for the interval of the mean over folds (default %(default)s)")  # fmt: skip
    p.add_argument("--bootstrap-seed", type=int, default=0, metavar="S", help="seed of the resampling (default 0)")
    p.set_defaults(func=cmd_report)
    return p


def cmd_report(args: argparse.Namespace) -> int:
    """Print the table; write it and its figure with ``--out``. A folder that is not a run: ValueError (one line)."""
    from insid3lab.cli.console import Console
    from insid3lab.cli.output import check_outputs
    from insid3lab.eval.reports.report import report, report_files, write_report
    from insid3lab.eval.reports.runs import run_inputs

    if args.bootstrap < 1:
        raise ValueError(f"--bootstrap {args.bootstrap}: must be >= 1")
    kw = {"resamples": args.bootstrap, "seed": args.bootstrap_seed}
    if args.out:
        inputs = [f for run in args.runs for f in run_inputs(run)]
        replaced = check_outputs(report_files(args.out), inputs, overwrite=args.overwrite)
        md_path, png = write_report(args.runs, args.out, **kw)
        for f in replaced:
            Console().note(f"replaced {f}")
        print(md_path.read_text(), end="")
        print(f"report: {md_path} and {png}")
    else:
        md, _ = report(args.runs, **kw)
        print(md, end="")
    return 0
