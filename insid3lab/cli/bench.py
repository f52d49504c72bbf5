"""``insid3lab bench``: every stage timed against re-encoding the reference for every target."""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import sys
from pathlib import Path
from typing import Any

from insid3lab.cli import options
from insid3lab.cli.console import Console
from insid3lab.core.files import json_text, write_atomic

__all__ = ["add_bench_arguments", "add_parser", "benchmark_from_args", "cmd_bench", "main"]


def add_bench_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``insid3lab bench`` (shared with ``benchmarks/bench_insid3.py``)."""
    options.add_model_arguments(p, default="random:vitl16")
    options.add_hyperparameter_arguments(p)
    options.add_image_arguments(p)
    g = p.add_argument_group("benchmark")
    g.add_argument("--targets", type=int, default=None, metavar="N",
                   help="number of targets timed (default: 8 synthetic ones, or each --target once); with --target, "
                        "the given images are repeated in turn to N")  # fmt: skip
    g.add_argument("--shots", type=int, default=1, help="number of synthetic reference shots (default %(default)s)")
    g.add_argument("--batch-size", type=int, default=None,
                   help="targets per backbone pass for images/s (default 8 on CUDA, 1 else)")  # fmt: skip
    g.add_argument(
        "--warmup", type=int, default=1, help="untimed targets through both paths first (default %(default)s)"
    )
    g.add_argument("--no-baseline", action="store_true", help="skip the re-encoding baseline")
    g.add_argument("--cold-start", default="all", choices=["all", "pipeline", "none"],
                   help="cold-start processes to run (default %(default)s)")  # fmt: skip
    g.add_argument("--seed", type=int, default=0, help="seed of the synthetic inputs")
    g.add_argument(
        "--ref", action="append", default=None, metavar="IMG", help="a reference image instead of synthetic ones"
    )
    g.add_argument("--ref-mask", action="append", default=None, metavar="MASK", help="its mask, one per --ref")
    g.add_argument(
        "--target", action="append", default=None, metavar="IMG", help="a target image instead of synthetic ones"
    )
    g.add_argument("--concepts", type=int, default=None, metavar="N",
                   help="also time N concepts (the reference's mask and N-1 strips of its background, one label map) "
                        "against one concept per target (goal <= 1.3x for N = 5)")  # fmt: skip
    g.add_argument("--frames", type=int, default=None, metavar="N",
                   help="also time track (memory 4) against segment per frame on a synthetic sequence of N frames "
                        "(goal <= 1.15x)")  # fmt: skip
    g.add_argument("--out", default=None, metavar="FILE", help="write the results as JSON")
    g.add_argument("--quiet", action="store_true", help="no status lines")


def benchmark_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """:func:`insid3lab.bench.run_benchmark` with the options of :func:`add_bench_arguments`; status on stderr."""
    from insid3lab.bench import run_benchmark

    options.check_choices(args)
    params = options.method_params(args)
    taken = inspect.signature(run_benchmark).parameters
    method = {}
    for f in dataclasses.fields(params):
        value = getattr(params, f.name)
        if f.name in taken:
            method[f.name] = value
        elif value != f.default:
            raise options.CLIError("bench measures the method against the authors' procedure: "
                                   f"{options.flag_value(f, value)} does not apply")  # fmt: skip
    return run_benchmark(
        args.model, **method, targets=args.targets, shots=args.shots, device=args.device,
        autocast=args.autocast, weights_dtype=args.dtype, arch=args.arch, rope_periods=args.rope_periods,
        batch_size=args.batch_size, warmup=args.warmup, baseline=not args.no_baseline,
        cold_start=args.cold_start, seed=args.seed, concepts=args.concepts, frames=args.frames,
        ref_images=args.ref, ref_masks=args.ref_mask,
        target_images=args.target, load=options.load_model_source, log=Console(quiet=args.quiet).status,
    )  # fmt: skip


def cmd_bench(args: argparse.Namespace) -> int:
    """Run the benchmark from parsed arguments, print the summary, write ``--out``."""
    from insid3lab.bench import format_summary

    res = benchmark_from_args(args)
    print(format_summary(res))
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(out, json_text(res))
        print(f"  written: {out}")
    return 0


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``bench`` subcommand to an argparse subparsers object (``func`` = :func:`cmd_bench`)."""
    p = subparsers.add_parser(
        "bench", help="time every stage against re-encoding the reference for every target",
        description="Times the pipeline stage by stage and the authors' procedure on the same inputs; reports per-target "
        "time, decode time (also as a fraction of the target's encoding), images/s, peak memory, cold start (imports, "
        "weights, basis, references, first target) and mask agreement. --autocast bfloat16 measures the fast mode; "
        "--refine crf adds the refinement (to both paths) and reports its own time and peak memory; --concepts N "
        "times N concepts against one per target, --frames N tracking against segment per frame, in the same run.",
    )  # fmt: skip
    add_bench_arguments(p)
    p.set_defaults(func=cmd_bench)
    return p


def main(argv: list[str] | None = None) -> int:
    """``python -m insid3lab.cli.bench [options]``: the same as ``insid3lab bench``."""
    parser = argparse.ArgumentParser(prog="insid3lab-bench", description=__doc__.split("\n")[0])
    add_bench_arguments(parser)
    args = parser.parse_args(argv)
    with options.pixel_limit(args):
        return cmd_bench(args)


if __name__ == "__main__":
    sys.exit(main())
