"""``insid3lab match``: where reference keypoints land in target images."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from insid3lab.cli import options
from insid3lab.cli.console import Console
from insid3lab.cli.output import OutputFolder
from insid3lab.cli.targets import Batch, read_problem, reason, start_batch
from insid3lab.core.files import json_text

__all__ = ["add_parser", "cmd_match", "read_points"]

JSON, FIGURE = ".matches.json", ".matches.png"
_POINTS_FORM = 'a JSON list of [x, y] pixel pairs ([[x, y], ...] or {"points": [[x, y], ...]})'


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "match", help="keypoint correspondence from a reference to target images",
        description="Writes OUT/NAME.matches.json and OUT/NAME.matches.png per target (NAME as for segment: the "
        "target's path, extension kept, relative to the folder holding all targets). Existing files are kept unless "
        "--overwrite; inputs are never replaced. A target that fails is reported and the others are written.",
    )  # fmt: skip
    p.add_argument("--ref", required=True, metavar="IMG", help="reference image")
    p.add_argument("--points", required=True, metavar="JSON", help="reference keypoints: " + _POINTS_FORM)
    p.add_argument("targets", nargs="+", metavar="TARGET", help="target images")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files (each is reported)")
    p.add_argument("--no-overlay", action="store_true", help="write JSON only")
    p.add_argument("--fail-fast", action="store_true", help="stop at the first target that fails")
    p.add_argument("--quiet", action="store_true", help="no status lines, no progress bar")
    options.add_image_arguments(p)
    options.add_model_arguments(p)
    r_note = f"; match uses {options.CORRESPONDENCE_SVD_COMPONENTS} unless given, as the paper does"
    options.add_hyperparameter_arguments(p, own_defaults={"svd_components": r_note})
    p.set_defaults(func=cmd_match)
    return p


def read_points(path: str) -> list[list[float]]:
    """(x, y) reference keypoints from a JSON file; one-line errors name the file and the expected form."""
    p = Path(path)
    if p.is_dir():
        raise options.CLIError(f"--points {path}: is a folder; give {_POINTS_FORM}")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise options.CLIError(f"--points {path}: no such file") from None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise options.CLIError(f"--points {path}: not a JSON file; it must hold {_POINTS_FORM}") from None
    pts = data.get("points") if isinstance(data, dict) else data
    ok = isinstance(pts, list) and pts and all(isinstance(q, (list, tuple)) and len(q) == 2 for q in pts)
    if not ok or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for q in pts for v in q):
        raise options.CLIError(f"--points {path}: expected {_POINTS_FORM} with at least one point")
    return [[float(x), float(y)] for x, y in pts]


def cmd_match(args) -> int:
    console = Console(quiet=args.quiet)
    pts = read_points(args.points)
    problem = read_problem(args.ref)
    if problem:
        raise options.CLIError(f"{args.ref}: {problem}")
    _check_points(args, pts)
    started = start_batch(console, args.targets, fail_fast=args.fail_fast, folders=False)
    if started is None:
        return 1
    targets, batch = started
    suffixes = (JSON,) if args.no_overlay else (JSON, FIGURE)
    out = OutputFolder(args.out, targets, suffixes, [args.ref, args.points, *targets], overwrite=args.overwrite,
                       report=console.note)  # fmt: skip
    out.check()
    model = options.build_pipeline(args, svd_components=options.CORRESPONDENCE_SVD_COMPONENTS, status=console.status,
                                   warn=console.warning)  # fmt: skip
    console.status(f"encoding the reference {args.ref}")
    model.set_reference(args.ref)
    try:
        _run(model, pts, targets, out, args, batch)
    except Batch.Stop:
        pass
    except KeyboardInterrupt:
        console.note(f"interrupted: {batch.done} target(s) written to {out.folder}")
        raise
    return batch.finish("match file(s)", out.folder)


def _check_points(args, pts) -> None:
    """Every keypoint inside the reference as the model sees it (EXIF orientation applied): checked before any weights."""
    from insid3lab.core.preprocess import preprocess_points, to_display_array

    h, w = to_display_array(args.ref).shape[:2]
    try:
        preprocess_points(pts, (h, w), what=f"--points {args.points}", image=f"reference image {args.ref}")
    except ValueError as e:
        raise options.CLIError(str(e)) from None


def _run(model, pts, targets, out: OutputFolder, args, batch: Batch) -> None:
    from tqdm.auto import tqdm

    from insid3lab.core.weights import is_random

    random_weights = is_random(model.encoder)
    for target in tqdm(targets, desc="match", disable=args.quiet):
        problem = read_problem(target)
        if problem:
            batch.fail(target, problem)
            continue
        try:
            matches = model.match(pts, target, debiased=not args.no_debias).cpu().tolist()
            record = {"reference": str(args.ref), "target": str(target), "points": pts, "matches": matches,
                      "debiased": not args.no_debias, "settings": model.settings()}  # fmt: skip
            text = json_text(record).encode()
            out.write(target, JSON, lambda fh, text=text: fh.write(text))
            if not args.no_overlay:
                _figure(out, target, pts, matches, args, random_weights)
            batch.done += 1
        except Exception as e:  # noqa: BLE001 - reported with the target, the others go on
            out.discard(target)  # a target that failed keeps no file: its rerun needs no --overwrite
            batch.fail(target, reason(e))


def _figure(out: OutputFolder, target: str, pts, matches, args, random_weights: bool) -> None:
    from insid3lab.cli.figures import RANDOM_WEIGHTS_NOTE
    from insid3lab.core.preprocess import to_pil_rgb
    from insid3lab.viz import keypoint_matches

    title = str(target) + (f"\n{RANDOM_WEIGHTS_NOTE}" if random_weights else "")
    fig = keypoint_matches(to_pil_rgb(args.ref), pts, to_pil_rgb(target), matches, title=title)
    out.write(target, FIGURE, lambda fh: fig.savefig(fh, format="png", dpi=100))
