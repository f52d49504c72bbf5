"""``insid3lab samples``: a reference, its mask and targets (with ground-truth masks) to try the commands on."""

from __future__ import annotations

import argparse
from pathlib import Path

from insid3lab.cli.options import CLIError

__all__ = ["add_parser", "cmd_samples"]


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "samples", help="write sample images (reference, mask, targets) to a folder",
        description="Writes reference.png, reference_mask.png, target_N.png and their ground truth target_N_mask.png "
        "(0/255). segment writes target_N.png.pred.png next to them, never over them. Existing files of these names "
        "and other content are kept unless --overwrite.",
    )  # fmt: skip
    p.add_argument("out", metavar="DIR")
    p.add_argument("--overwrite", action="store_true", help="replace existing files of these names (each is reported)")
    p.set_defaults(func=cmd_samples)
    return p


def cmd_samples(args) -> int:
    """Write the samples; a file of the same name and other content is kept unless ``--overwrite`` (the same
    content is no loss, so running the command twice writes nothing new and succeeds)."""
    from insid3lab.cli.console import Console
    from insid3lab.cli.output import check_outputs
    from insid3lab.core.files import write_atomic
    from insid3lab.synthetic.scenes import sample_files

    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise CLIError(f"{args.out}: is a file; give a folder")
    files = sample_files(args.out)
    differ = [p for p, data in files.items() if not (p.is_file() and p.read_bytes() == data)]
    replaced = check_outputs(differ, [], overwrite=args.overwrite, where="DIR")
    for p in differ:
        write_atomic(p, files[p])
    for p in files:
        print(p)
    for p in replaced:
        Console().note(f"replaced {p}")
    return 0
