"""Command line: ``insid3lab segment | match | track | eval | bench | samples | cache | data``.

One module per command (each adds its parser and runs it); the options they share are
written once in :mod:`insid3lab.cli.options`; what they print goes through
:mod:`insid3lab.cli.console`; output files through :mod:`insid3lab.cli.output`. Command
modules import the library and those helpers, never each other.

Every command ends with exit status 0 on success; on an error it prints one line
(``insid3lab: error: ...``) to stderr and exits with status 1 (2 for bad usage).
Warnings print as one line (``insid3lab: warning: ...``).
"""

from __future__ import annotations

import argparse
import os
import sys

from insid3lab.cli import bench, cache, data, match, samples, segment, track
from insid3lab.cli import compare as compare_cmd
from insid3lab.cli import report as report_cmd
from insid3lab.cli.console import Console, OneLineParser, error_line, plain_warnings
from insid3lab.cli.eval import add_eval_parser
from insid3lab.cli.options import CLIError, load_model_source, pixel_limit

__all__ = ["CLIError", "build_parser", "load_model_source", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The ``insid3lab`` parser with every command."""
    parser = OneLineParser(
        prog="insid3lab",
        description="Training-free one-shot in-context segmentation with a frozen DINOv3 backbone (INSID3).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    segment.add_parser(sub)
    match.add_parser(sub)
    add_eval_parser(sub)
    track.add_parser(sub)
    bench.add_parser(sub)
    samples.add_parser(sub)
    cache.add_parser(sub)
    data.add_parser(sub)
    compare_cmd.add_parser(sub)
    report_cmd.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``insid3lab`` console script; returns the exit status."""
    from insid3lab.core.imageio import ImageTooLargeError

    args = build_parser().parse_args(argv)
    console = Console()
    with plain_warnings():
        try:
            with pixel_limit(args):
                return int(args.func(args) or 0)
        except KeyboardInterrupt:
            console.note("interrupted")
            return 130
        except ImageTooLargeError as e:
            from insid3lab.cli.options import bomb_message

            console.error(bomb_message(e.path, e))
            return 1
        except (CLIError, OSError, ValueError, RuntimeError, TypeError, ImportError) as e:
            console.error(error_line(e))
            if os.environ.get("INSID3LAB_DEBUG"):
                raise
            return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
