"""``insid3lab data check``: list what is missing or malformed in a COCO-format annotations file and its images.

    insid3lab data check --annotations export.json --images images/

Exit status 0 when nothing is wrong, 1 when problems were found (all are printed).
"""

from __future__ import annotations

import argparse

from insid3lab.cli.options import add_image_arguments
from insid3lab.eval.datasets.cocojson_check import PROBLEM_KINDS, check_coco_json, format_report

__all__ = ["add_parser", "cmd_data_check"]


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``data`` command (subcommand ``check``) to an argparse ``subparsers`` object."""
    p = subparsers.add_parser(
        "data",
        help="inspect a dataset of your own",
        description="Inspect a dataset of your own before evaluating on it.",
    )
    sub = p.add_subparsers(dest="data_command", required=True)
    c = sub.add_parser(
        "check",
        help="validate a COCO-format annotations file against its images",
        description="List every problem of a COCO-format annotations file (CVAT, Label Studio, Roboflow, COCO) "
        "against its image folder. Kinds: " + ", ".join(PROBLEM_KINDS) + ".",
    )
    c.add_argument("--annotations", required=True, help="the COCO-format JSON file")
    c.add_argument("--images", required=True, help="the folder holding the images named in the file")
    add_image_arguments(c)
    c.set_defaults(func=cmd_data_check)
    return p


def cmd_data_check(args: argparse.Namespace) -> int:
    """Print the report of ``check_coco_json(args.annotations, args.images)``; 0 if clean, else 1."""
    problems = check_coco_json(args.annotations, args.images)
    print(format_report(problems, source=str(args.annotations)))
    return 1 if problems else 0
