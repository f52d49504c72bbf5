"""``insid3lab eval``: evaluate INSID3 on a few-shot benchmark from the command line.

Single process::

    insid3lab eval --dataset coco --fold 0 --data-root data --model facebook/dinov3-vitl16-pretrain-lvd1689m \\
        --shots 1 --out runs/coco0

Every fold and both shot counts, scored as the authors' evaluation scores (``--protocol paper``,
the default; see :mod:`insid3lab.eval.run.protocol`)::

    insid3lab eval --dataset coco --fold all --shots 1,5 --data-root data --model ... --out runs/coco

writes ``runs/coco/shots1/fold0/`` .. ``shots5/fold3/`` (each resumable) and prints the per-fold
numbers and their mean, the number the papers report.

N-way K-shot episodes (N classes per episode, multi-class mIoU; :mod:`insid3lab.eval.run.nway`) and
instance evaluation (COCO mask AP of the instance output; :mod:`insid3lab.eval.run.instances`)::

    insid3lab eval --dataset coco --fold 0 --ways 2 --shots 1 ... --out runs/coco0-2way
    insid3lab eval --dataset coco-json --annotations A.json --images DIR --task instances ... --out runs/ap

Ablations, every setting of a grid in one pass (``--grid tau=0.5,0.6 --grid merge_threshold=0.1,0.2``, each
image encoded once; ``OUT/grid.json``): :mod:`insid3lab.cli.grid_options`, :mod:`insid3lab.eval.run.grid`.

Many GPUs (episodes sharded by rank, one summary)::

    torchrun --nproc_per_node 4 -m insid3lab eval --dataset coco --fold 0 ...

The process group is initialised only when ``WORLD_SIZE`` > 1 (NCCL on CUDA, gloo on CPU).
"""

from __future__ import annotations

import argparse
import math
import os
import sys

from insid3lab.cli import grid_options, options
from insid3lab.cli.console import Console, emit
from insid3lab.eval.datasets import BENCHMARKS, DatasetNotFoundError
from insid3lab.eval.run.protocol import DEFAULT_PROTOCOL, PROTOCOLS
from insid3lab.eval.video.registry import VIDEO_BENCHMARKS

__all__ = ["add_eval_parser", "build_eval_parser", "build_model", "run_eval_from_args"]

_IGNORE_DEFAULT = 255  # the benchmarks' ignore label (insid3lab.eval.datasets.IGNORE)


def _dataset_name(text: str) -> str:
    return text.lower().replace("-", "_")


def _fold(text: str):
    if text == "all":
        return "all"
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: a fold number or 'all'") from None


def _shots(text: str) -> list[int]:
    try:
        values = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        values = []
    if not values or any(v < 1 for v in values) or len(set(values)) != len(values):
        raise argparse.ArgumentTypeError(f"{text!r}: shot counts >= 1, comma-separated and distinct (e.g. 1 or 1,5)")
    return values


def _annotations(name: str) -> bool:
    """Whether benchmark ``name`` reads a COCO-format annotations file (``--annotations``, ``--images``)."""
    return name in BENCHMARKS and BENCHMARKS[name].annotations


def _names(keep) -> str:
    """The registered image benchmarks for which ``keep(entry)`` holds, comma-separated."""
    return ", ".join(name for name, entry in BENCHMARKS.items() if keep(entry))


def _fold_ranges() -> str:
    return ", ".join(f"{name} {entry.fold_range}" for name, entry in BENCHMARKS.items() if entry.folds)


def _dataset_help() -> str:
    entries = [*BENCHMARKS.values(), *VIDEO_BENCHMARKS.values()]
    return "benchmark name, one of: " + "; ".join(f"{e.name} ({e.help})" if e.help else e.name for e in entries)


def _split(text: str):
    if text.lower() == "none":
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: a fraction in (0, 1) or 'none'") from None


def _add_arguments(p: argparse.ArgumentParser) -> None:
    nway = _names(lambda e: getattr(e.cls, "loads_any_class", False))
    keypoints = _names(lambda e: getattr(e.cls, "task", "") == "keypoints")
    coco_format = _names(lambda e: e.annotations)
    g = p.add_argument_group("benchmark")
    g.add_argument(
        "--dataset",
        required=True,
        type=_dataset_name,
        choices=[*BENCHMARKS, *VIDEO_BENCHMARKS],
        metavar="NAME",
        help=_dataset_help(),
    )
    g.add_argument(
        "--fold",
        type=_fold,
        default=None,
        help=f"fold ({_fold_ranges()}; default 0) or 'all': every fold into OUT/fold<k>/ and their mean; unset for "
        "the others",
    )
    g.add_argument(
        "--data-root",
        default=None,
        help="folder holding the benchmark's folder (COCO2014/, LVIS/, DAVIS/...) or that folder itself "
        f"(required except for {coco_format})",
    )
    g.add_argument("--shots", type=_shots, default=[1], help="reference images per episode; '1,5' runs both into "
                   "OUT/shots<k>/ (default 1)")  # fmt: skip
    g.add_argument(
        "--episodes", type=int, default=None, help="number of episodes (default: the benchmark's standard count)"
    )
    g.add_argument(
        "--episodes-file",
        default=None,
        help="rerun exactly the episodes of this JSON file (e.g. RUN_DIR/episodes.json)",
    )
    g.add_argument("--seed", type=int, default=0, help="episode i is drawn from (seed, i) alone (default 0)")
    g.add_argument("--ways", type=int, default=1, metavar="N",
                   help="classes per episode (N-way K-shot): the target's class and N-1 others with --shots references "
                   f"each, scored as multi-class mIoU ({nway}; default 1)")  # fmt: skip
    g.add_argument("--task", choices=("semantic", "instances"), default="semantic",
                   help=f"semantic: masks (keypoints for {keypoints}); instances: COCO "
                   f"mask AP / AP50 / AP75 of the instance output ({coco_format}; default "
                   "%(default)s)")  # fmt: skip

    s = p.add_argument_group("scoring")
    s.add_argument("--protocol", choices=PROTOCOLS, default=DEFAULT_PROTOCOL,
                   help="paper: the prediction at S x S and the ground truth resized to it (nearest), as the authors' "
                   "evaluation; native: at the image's own size (default %(default)s)")  # fmt: skip
    ig = s.add_mutually_exclusive_group()
    ig.add_argument("--ignore-value", type=int, default=_IGNORE_DEFAULT, metavar="N",
                    help="mask value counted in neither intersection nor union (default %(default)s)")  # fmt: skip
    ig.add_argument("--no-ignore", action="store_true", help="ignore no mask value")
    s.add_argument(
        "--bootstrap",
        type=int,
        default=1000,
        metavar="N",
        help="resamples of the 95%% bootstrap interval over episodes (0: none; default %(default)s)",
    )
    s.add_argument("--bootstrap-seed", type=int, default=0, metavar="S", help="seed of the resampling (default 0)")

    c = p.add_argument_group(f"{coco_format} (COCO-format annotations)")
    c.add_argument("--annotations", default=None, metavar="FILE.json", help="the COCO-format annotations file")
    c.add_argument("--images", default=None, metavar="DIR", help="the folder of its images")
    c.add_argument("--reference-split", type=_split, default=0.5, metavar="F|none",
                   help="fraction of the images that serve as references (a seeded hash of the image; the rest are "
                   "targets); none: any image may be either (default %(default)s)")  # fmt: skip
    c.add_argument("--categories", default=None, metavar="A,B", help="only these categories (names or ids)")

    v = p.add_argument_group(f"video ({', '.join(VIDEO_BENCHMARKS)})")
    v.add_argument("--memory", type=int, default=None, help="past predicted frames kept as extra shots "
                   "(default: insid3lab.Tracker.MEMORY)")  # fmt: skip
    v.add_argument(
        "--min-confidence",
        type=float,
        default=None,
        help="a frame joins the memory when its confidence is at least this (default: insid3lab.Tracker.MIN_CONFIDENCE)",
    )

    options.add_image_arguments(p)
    options.add_model_arguments(p, default=None)
    options.add_hyperparameter_arguments(
        p, own_defaults={"svd_components": f"; {options.CORRESPONDENCE_SVD_COMPONENTS} for spair, as in the paper"}
    )

    grid_options.add_grid_arguments(p)
    r = p.add_argument_group("run")
    r.add_argument("--out", required=True, help="run folder: results.jsonl, summary.json, per_class.png")
    r.add_argument("--resume", action="store_true", help="continue the run in --out, skipping finished episodes")
    r.add_argument("--skip-bad", action="store_true", help="count and list unusable samples instead of stopping")
    r.add_argument(
        "--threads",
        type=int,
        default=None,
        metavar="N",
        help="torch threads per process (default: the cores divided among local processes)",
    )
    r.add_argument("--no-progress", action="store_true", help="no progress bar")


def add_eval_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``eval`` subcommand to an argparse ``subparsers`` object; sets ``func=run_eval_from_args``."""
    p = subparsers.add_parser(
        "eval",
        help="evaluate on a few-shot segmentation / correspondence / video benchmark",
        description="Evaluate INSID3 on a few-shot benchmark: mIoU / FB-IoU (PCK for keypoints, J&F for video) "
        "with 95% bootstrap intervals; resumable; shard across GPUs with torchrun --nproc_per_node N -m insid3lab eval",
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
    """The INSID3 pipeline described by the command-line arguments, on ``device`` (r 20 for keypoints)."""
    svd = options.CORRESPONDENCE_SVD_COMPONENTS if task == "keypoints" else None
    return options.build_pipeline(args, device=device, svd_components=svd)


def _check(args: argparse.Namespace) -> None:
    """Argument combinations argparse cannot check; a ValueError names the flag."""
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise ValueError(f"--out {args.out}: is a file; give a folder")
    if args.episodes_file and args.episodes is not None:
        raise ValueError("--episodes and --episodes-file exclude each other: the file fixes the episodes")
    if _annotations(args.dataset):
        if not args.annotations or not (args.images or args.data_root):
            raise ValueError(f"--dataset {args.dataset} needs --annotations FILE.json and --images DIR")
        if args.fold == "all":
            raise ValueError(f"--fold all: {args.dataset} has no folds")
    else:
        if args.data_root is None:
            raise ValueError(f"--dataset {args.dataset} needs --data-root")
        for flag in ("annotations", "images", "categories"):
            if getattr(args, flag) is not None:
                raise ValueError(f"--{flag} belongs to --dataset {_names(lambda e: e.annotations)}, not {args.dataset}")
    if args.dataset not in VIDEO_BENCHMARKS and (args.memory is not None or args.min_confidence is not None):
        raise ValueError(f"--memory and --min-confidence belong to the video benchmarks: {', '.join(VIDEO_BENCHMARKS)}")
    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads {args.threads}: must be >= 1")
    if args.bootstrap < 0:
        raise ValueError(f"--bootstrap {args.bootstrap}: must be >= 0 (0: no interval)")
    if args.ways < 1:
        raise ValueError(f"--ways {args.ways}: must be >= 1")
    if args.task == "instances" and args.ways != 1:
        raise ValueError(f"--task instances scores one class per episode; --ways {args.ways} is not allowed with it")
    if args.task == "instances" and not _annotations(args.dataset):
        raise ValueError(f"--task instances needs instance annotations; --dataset {args.dataset} has none "
                         f"(use --dataset {_names(lambda e: e.annotations)})")  # fmt: skip
    if args.dataset in VIDEO_BENCHMARKS and (args.ways != 1 or args.task != "semantic"):
        raise ValueError(f"--ways and --task do not apply to the video benchmark {args.dataset}")
    if args.episodes_file and len(args.shots) > 1:
        raise ValueError("--episodes-file fixes the shots: give one --shots value")
    args.grid_spec = grid_options.eval_grid(args)


def _dataset_kwargs(args: argparse.Namespace) -> dict:
    if not _annotations(args.dataset):
        return {}
    cats = None if args.categories is None else [c.strip() for c in args.categories.split(",") if c.strip()]
    cats = None if cats is None else [int(c) if c.isdigit() else c for c in cats]
    return {"annotations": args.annotations, "categories": cats, "reference_split": args.reference_split,
            "skip_bad": args.skip_bad}  # fmt: skip


def _data_root(args: argparse.Namespace) -> str:
    return args.images if _annotations(args.dataset) and args.images else args.data_root


#: The exit status of a run that finished without a score for some fold or shot count (no evaluated episode).
INCOMPLETE = 3
_NO_EPISODE = "no evaluated episode"


def run_eval_from_args(args: argparse.Namespace) -> int:
    """Run ``insid3lab eval`` from parsed arguments; prints the headline numbers.

    Returns the exit status: 0; 1 when the run folder is in use by another process (or on any
    other error); 2 when the benchmark's files are missing (the expected layout is printed to
    stderr); 3 (:data:`INCOMPLETE`) when a run, a fold of ``--fold all`` or a shot count of
    ``--shots 1,5`` has no evaluated episode (every one bad under ``--skip-bad``): it has no score,
    is left out of the mean over folds, and the lines printed say which.
    """
    import torch.distributed as dist

    from insid3lab.eval.run.files import RunExistsError, RunFolderBusyError

    _check(args)
    device, started = _init_distributed(args.device)
    try:
        try:
            if args.dataset in VIDEO_BENCHMARKS:
                lines, empty = _run_video(args, device), []
            else:
                lines, empty = _run_benchmark(args, device)
        except DatasetNotFoundError as e:  # keep the layout's line breaks
            emit(f"insid3lab: error: {e}")
            return 2
        except RunFolderBusyError as e:
            Console().error(str(e))
            return 1
        except RunExistsError as e:
            raise ValueError(f"{e.folder} already holds an evaluation run; pass --resume to continue it, "
                             "or choose another --out") from None  # fmt: skip
        except KeyboardInterrupt:
            Console().note(f"interrupted; finished episodes are kept in {args.out}: continue with --resume")
            raise
        rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
        if rank == 0:
            print("\n".join(lines))
            if empty:
                print(f"insid3lab: error: incomplete run: {', '.join(empty)} {'has' if len(empty) == 1 else 'have'} "
                      f"{_NO_EPISODE} (exit status {INCOMPLETE})", file=sys.stderr)  # fmt: skip
    finally:
        if started and dist.is_initialized():
            dist.destroy_process_group()
    return INCOMPLETE if empty else 0


def _run_kwargs(args: argparse.Namespace, device: str, shots: int) -> dict:
    return {"episodes": args.episodes_file or args.episodes, "seed": args.seed, "shots": shots, "resume": args.resume,
            "skip_bad": args.skip_bad, "progress": not args.no_progress, "protocol": args.protocol,
            "ignore_value": None if args.no_ignore else args.ignore_value, "num_threads": args.threads,
            "bootstrap": args.bootstrap, "bootstrap_seed": args.bootstrap_seed, "ways": args.ways, "task": args.task,
            "grid": getattr(args, "grid_spec", None),
            "settings": {"model_source": str(args.model), "device": str(device), "data_root": str(_data_root(args)),
                         "command": " ".join(sys.argv)}}  # fmt: skip


def _run_benchmark(args: argparse.Namespace, device: str) -> tuple[list[str], list[str]]:
    """The lines to print, and the runs (folds, shot counts) without an evaluated episode."""
    from insid3lab.eval.datasets import build_dataset
    from insid3lab.eval.run.folds import run_all_folds
    from insid3lab.eval.run.runner import run_evaluation

    entry = BENCHMARKS[args.dataset]
    if args.fold == "all" and entry.folds is None:
        with_folds = [n for n, c in BENCHMARKS.items() if c.folds is not None]
        raise ValueError(f"--fold all: {args.dataset} has no folds; benchmarks with folds: {', '.join(with_folds)}")
    if args.fold not in (None, "all") and entry.folds is not None and args.fold not in entry.folds:
        raise ValueError(f"--fold {args.fold}: {args.dataset} has folds {entry.folds[0]}..{entry.folds[-1]} (or 'all')")
    if args.fold not in (None, "all", 0) and entry.folds is None:
        raise ValueError(f"--fold {args.fold}: {args.dataset} has no folds; leave --fold unset")
    kwargs = _dataset_kwargs(args)
    many = len(args.shots) > 1
    model, lines, empty = None, [], []
    for shots in args.shots:
        out = os.path.join(args.out, f"shots{shots}") if many else args.out
        prefix = f"{shots}-shot: " if many else ""
        if args.fold == "all":
            # the model is built once the first fold's dataset is known to be readable
            if model is None:
                build_dataset(args.dataset, args.data_root, fold=entry.folds[0], shots=shots, **kwargs)
                model = build_model(args, device, entry.cls.task)
            result = run_all_folds(
                model,
                args.dataset,
                args.data_root,
                out,
                shots=shots,
                dataset_kwargs=kwargs,
                **{k: v for k, v in _run_kwargs(args, device, shots).items() if k != "shots"},
            )
            lines += [prefix + line for line in _fold_lines(result, args.protocol)]
            empty += [f"{prefix.rstrip(': ')} {fold}".strip() for fold in result["without_episodes"]]
            lines.append(f"folds: {os.path.join(out, 'folds.json')}")
            lines += grid_options.grid_lines(getattr(args, "grid_spec", None), out, folds=True)
            continue
        dataset = build_dataset(args.dataset, _data_root(args), fold=args.fold, shots=shots, **kwargs)
        if model is None:
            model = build_model(args, device, dataset.task)
        summary = run_evaluation(model, dataset, out, **_run_kwargs(args, device, shots))
        lines.append(prefix + _headline(summary))
        if not summary["episodes"]["evaluated"]:
            empty.append(prefix.rstrip(": ") or str(out))
        lines.append(f"summary: {os.path.join(out, 'summary.json')}")
        lines += grid_options.grid_lines(getattr(args, "grid_spec", None), out, summary=summary)
    return lines, empty


def _run_video(args: argparse.Namespace, device: str) -> list[str]:
    from insid3lab import Tracker
    from insid3lab.eval.video.evaluate import evaluate_video
    from insid3lab.eval.video.registry import build_video_dataset

    if args.fold not in (None, 0):
        raise ValueError(f"--fold {args.fold}: {args.dataset} has no folds; leave --fold unset")
    dataset = build_video_dataset(args.dataset, args.data_root)
    dataset.check_scorable()  # before the model is loaded
    model = build_model(args, device, "video")
    summary = evaluate_video(
        model, dataset, args.out,
        memory=Tracker.MEMORY if args.memory is None else args.memory,
        min_confidence=Tracker.MIN_CONFIDENCE if args.min_confidence is None else args.min_confidence,
        resume=args.resume, progress=not args.no_progress, skip_bad=args.skip_bad,
        settings={"model_source": str(args.model), "device": str(device), "command": " ".join(sys.argv)},
    )  # fmt: skip
    head = "  ".join(f"{k} {100 * summary[k]:.2f}" for k in ("J&F-Mean", "J-Mean", "F-Mean"))
    skipped = f", skipped {len(summary['skipped'])}" if summary.get("skipped") else ""
    return [f"{head}  (sequences {summary['sequences']}, objects {summary['objects']}{skipped})",
            f"summary: {os.path.join(args.out, 'summary.json')}"]  # fmt: skip


def _fmt(v: float | None) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.2f}"


def _interval(summary: dict, key: str) -> str:
    lo_hi = summary.get("interval", {}).get(key)
    return "" if not lo_hi else f" [{_fmt(lo_hi[0])}, {_fmt(lo_hi[1])}]"


def _headline(summary: dict) -> str:
    ep = summary["episodes"]
    tail = f"episodes {ep['evaluated']}/{ep['total']}" + (f", bad {ep['bad']}" if ep["bad"] else "")
    tail += f", protocol {summary['protocol']}"
    if summary.get("ways", 1) > 1:
        tail += f", {summary['ways']}-way"
    if not ep["evaluated"]:
        return f"{_NO_EPISODE}  ({tail})"
    if summary["task"] == "instances":
        aps = "  ".join(f"{name} {_fmt(None if summary[key] is None else 100 * summary[key])}"
                        for name, key in (("AP", "ap"), ("AP50", "ap50"), ("AP75", "ap75")))  # fmt: skip
        return f"{aps}  (mask AP in percent; {tail}, task instances)"
    if summary["task"] == "segmentation":
        return (f"mIoU {_fmt(summary['miou'])}{_interval(summary, 'miou')}  "
                f"FB-IoU {_fmt(summary['fb_iou'])}{_interval(summary, 'fb_iou')}  ({tail})")  # fmt: skip
    return "  ".join(f"PCK@{k[4:]} {_fmt(v)}{_interval(summary, k)}" for k, v in summary["pck"].items()) + f"  ({tail})"


def _fold_lines(result: dict, protocol: str) -> list[str]:
    """One line per fold and one for the mean, e.g. ``fold0  mIoU 40.10  FB-IoU 70.20  (1000 episodes)``."""
    names = {"miou": "mIoU", "fb_iou": "FB-IoU", "pck@0.10": "PCK@0.10"}
    lines = []
    for fold, v in result["per_fold"].items():
        if not v["episodes"]:
            lines.append(f"{fold}  {_NO_EPISODE}")
            continue
        nums = "  ".join(f"{names[k]} {_fmt(x)}" for k, x in v.items() if k != "episodes")
        lines.append(f"{fold}  {nums}  ({v['episodes']} episodes)")
    nums = "  ".join(f"{names[k]} {_fmt(x)}" for k, x in result["mean"].items())
    n, empty = len(result["per_fold"]), result.get("without_episodes", [])
    if empty:
        left = f"{', '.join(empty)} {'has' if len(empty) == 1 else 'have'} {_NO_EPISODE}"
        lines.append(f"mean over {n - len(empty)} of {n} folds ({left})  {nums}  (protocol {protocol})")
    else:
        lines.append(f"mean over {n} folds  {nums}  (protocol {protocol})")
    return lines


def main(argv: list[str] | None = None) -> int:
    """``python -m insid3lab.cli.eval eval ...``"""
    args = build_eval_parser().parse_args(argv)
    with options.pixel_limit(args):
        return args.func(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
