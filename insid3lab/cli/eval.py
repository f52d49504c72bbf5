"""``insid3lab eval``: evaluate INSID3 on a few-shot benchmark from the command line.

Single process::

    insid3lab eval --dataset coco --fold 0 --data-root data --model facebook/dinov3-vitl16-pretrain-lvd1689m \\
        --shots 1 --out runs/coco0

Many GPUs (episodes sharded by rank, one summary)::

    torchrun --nproc_per_node 4 -m insid3lab eval --dataset coco --fold 0 ...

The process group is initialised only when ``WORLD_SIZE`` > 1 (NCCL on CUDA, gloo on CPU).
"""

from __future__ import annotations

import argparse
import math
import os
import sys

from ..eval.datasets import DatasetNotFoundError, dataset_names
from . import options

__all__ = ["add_eval_parser", "build_eval_parser", "build_model", "run_eval_from_args"]


def _add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("benchmark")
    g.add_argument(
        "--dataset",
        required=True,
        type=lambda s: s.lower().replace("-", "_"),
        choices=dataset_names(),
        help="benchmark name; 'folder' reads DATA_ROOT/images and DATA_ROOT/masks",
    )
    g.add_argument(
        "--fold",
        type=int,
        default=None,
        help="fold (coco 0-3, lvis 0-9, pascal_part 0-3, paco_part 0-3, isaid 0-2; default 0); unset for the others",
    )
    g.add_argument(
        "--data-root",
        required=True,
        help="folder holding the benchmark's folder (COCO2014/, LVIS/, ...) or that folder itself",
    )
    g.add_argument("--shots", type=int, default=1, help="reference images per episode (default 1)")
    g.add_argument(
        "--episodes", type=int, default=None, help="number of episodes (default: the benchmark's standard count)"
    )
    g.add_argument(
        "--episodes-file",
        default=None,
        help="rerun exactly the episodes of this JSON file (e.g. RUN_DIR/episodes.json)",
    )
    g.add_argument("--seed", type=int, default=0, help="episode i is drawn from (seed, i) alone (default 0)")

    options.add_model_arguments(p, default=None)
    options.add_hyperparameter_arguments(
        p, svd_note=f"; {options.CORRESPONDENCE_SVD_COMPONENTS} for spair, as in the paper"
    )

    r = p.add_argument_group("run")
    r.add_argument("--out", required=True, help="run folder: results.jsonl, summary.json, per_class.png")
    r.add_argument("--resume", action="store_true", help="continue the run in --out, skipping finished episodes")
    r.add_argument("--skip-bad", action="store_true", help="count and list unusable samples instead of stopping")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")


def add_eval_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``eval`` subcommand to an argparse ``subparsers`` object; sets ``func=run_eval_from_args``."""
    p = subparsers.add_parser(
        "eval",
        help="evaluate on a few-shot segmentation / correspondence benchmark",
        description="Evaluate INSID3 on a few-shot benchmark: mIoU / FB-IoU (or PCK for spair); resumable; "
        "shard across GPUs with torchrun --nproc_per_node N -m insid3lab eval ...",
    )
    _add_arguments(p)
    p.set_defaults(func=run_eval_from_args)
    return p


def build_eval_parser() -> argparse.ArgumentParser:
    """A stand-alone parser with the ``eval`` subcommand (``prog eval ...``)."""
    parser = argparse.ArgumentParser(prog="insid3lab")
    sub = parser.add_subparsers(dest="command", required=True)
    add_eval_parser(sub)
    return parser


def _init_distributed(device_arg: str):
    """Initialise torch.distributed from torchrun's environment when WORLD_SIZE > 1; returns (device, started)."""
    import torch
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return device_arg, False
    local_rank = int(os.environ.get("LOCAL_RANK", os.environ.get("RANK", "0")))
    want_cuda = str(device_arg).startswith("cuda") or (device_arg == "auto" and torch.cuda.is_available())
    if want_cuda:
        if not torch.cuda.is_available():
            raise ValueError(f"--device {device_arg}: CUDA is not available on this machine")
        torch.cuda.set_device(local_rank % torch.cuda.device_count())
        device = f"cuda:{torch.cuda.current_device()}"
        backend = "nccl"
    else:
        device = "cpu" if device_arg == "auto" else device_arg
        backend = "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return device, True


def build_model(args: argparse.Namespace, device: str, task: str):
    """The INSID3 pipeline described by the command-line arguments, on ``device``."""
    import insid3lab

    options.check_choices(args)
    backbone = options.load_model_source(args.model, device=device, dtype=args.dtype, arch=args.arch,
                                         rope_periods=args.rope_periods)  # fmt: skip
    svd = options.CORRESPONDENCE_SVD_COMPONENTS if task == "keypoints" else None
    return insid3lab.INSID3(backbone, **options.pipeline_kwargs(args, svd_components=svd), progress=False)


def run_eval_from_args(args: argparse.Namespace) -> int:
    """Run ``insid3lab eval`` from parsed arguments; prints the headline numbers.

    Returns the exit status: 0, or 2 when the benchmark's files are missing (the expected
    layout is printed to stderr).
    """
    import torch.distributed as dist

    from ..eval.datasets import build_dataset
    from ..eval.runner import run_evaluation

    if args.episodes_file and args.episodes is not None:
        raise ValueError("--episodes and --episodes-file exclude each other: the file fixes the episodes")
    device, started = _init_distributed(args.device)
    try:
        try:
            dataset = build_dataset(args.dataset, args.data_root, fold=args.fold, shots=args.shots)
        except DatasetNotFoundError as e:  # keep the layout's line breaks
            print(f"insid3lab eval: error: {e}", file=sys.stderr)
            return 2
        model = build_model(args, device, dataset.task)
        try:
            summary = run_evaluation(
                model,
                dataset,
                args.out,
                episodes=args.episodes_file or args.episodes,
                seed=args.seed,
                shots=args.shots,
                resume=args.resume,
                skip_bad=args.skip_bad,
                progress=not args.no_progress,
                settings={
                    "model_source": str(args.model),
                    "device": str(device),
                    "data_root": str(args.data_root),
                    "command": " ".join(sys.argv),
                },
            )
        except KeyboardInterrupt:
            print(
                f"insid3lab eval: interrupted; finished episodes are kept in {args.out}: continue with --resume",
                file=sys.stderr,
            )
            raise
        rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
        if rank == 0:
            print(_headline(summary))
            print(f"summary: {os.path.join(args.out, 'summary.json')}")
    finally:
        if started and dist.is_initialized():
            dist.destroy_process_group()
    return 0


def _fmt(v: float) -> str:
    return "nan" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.2f}"


def _headline(summary: dict) -> str:
    ep = summary["episodes"]
    tail = f"episodes {ep['evaluated']}/{ep['total']}" + (f", bad {ep['bad']}" if ep["bad"] else "")
    if summary["task"] == "segmentation":
        return f"mIoU {_fmt(summary['miou'])}  FB-IoU {_fmt(summary['fb_iou'])}  ({tail})"
    return "  ".join(f"PCK@{k[4:]} {_fmt(v)}" for k, v in summary["pck"].items()) + f"  ({tail})"


def main(argv: list[str] | None = None) -> int:
    """``python -m insid3lab.cli.eval eval ...``"""
    args = build_eval_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
