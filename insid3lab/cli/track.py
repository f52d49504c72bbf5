"""``insid3lab track``: propagate the first frame's mask through a folder of frames or a video.

::

    insid3lab track --frames clip/ --mask clip_first.png --out runs/clip [--memory 4]

Writes ``OUT/masks/<frame>.png`` per frame — a 0/255 PNG for one object, a DAVIS palette PNG
(0 background, 1..n objects) when the first mask is a label map with several objects — and
``OUT/overlay.gif``, the masks over the frames. Existing outputs are kept unless ``--overwrite``
(then each replaced file is reported); an input (frame or mask) is never written over; each file
is written whole or not at all (:func:`insid3lab.cli.output.write_atomic`, as ``segment`` writes).
The output names follow the frames and are known only as they are read (a video's), so the
check before the work refuses any earlier mask in ``OUT/masks`` rather than a list of names.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from insid3lab.cli import options
from insid3lab.cli.console import Console
from insid3lab.cli.output import write_atomic

__all__ = ["add_parser", "cmd_track", "first_mask_objects"]

MASKS_DIR = "masks"
ANIMATION = "overlay.gif"
#: Longer side of the overlay animation's frames, in pixels.
ANIMATION_SIDE = 320
#: Milliseconds per frame of the animation.
ANIMATION_MS = 100


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``track`` subcommand to an argparse ``subparsers`` object; sets ``func=cmd_track``."""
    from insid3lab.tasks.tracking import Tracker

    p = subparsers.add_parser(
        "track",
        help="propagate a first-frame mask through a video or a folder of frames",
        description="Writes OUT/masks/<frame>.png (0/255 for one object, DAVIS palette PNGs for several) and "
        "OUT/overlay.gif. Each frame is encoded once and segmented against the first frame and the last "
        "--memory confidently predicted frames.",
    )
    options.add_model_arguments(p)
    p.add_argument("--frames", required=True, metavar="DIR_OR_VIDEO", help="a folder of frames or a video file")
    p.add_argument(
        "--mask",
        required=True,
        metavar="FIRST.png",
        help="mask of the first frame (foreground > 0), or a palette/grayscale label map with several object ids",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument(
        "--memory", type=int, default=Tracker.MEMORY, help="past frames kept as extra shots (default %(default)s)"
    )
    p.add_argument(
        "--min-confidence",
        type=float,
        default=Tracker.MIN_CONFIDENCE,
        help="a frame joins the memory when its confidence relative to the first frame reaches this "
        "(default %(default)s)",
    )
    p.add_argument("--no-animation", action="store_true", help=f"write the masks only, no {ANIMATION}")
    p.add_argument("--overwrite", action="store_true", help="replace outputs of an earlier run in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    options.add_hyperparameter_arguments(p)
    p.set_defaults(func=cmd_track)
    return p


def first_mask_objects(path: str | Path) -> list[int]:
    """The object ids of a first-mask file: its values other than 0 and 255 when it is a lossless
    palette or grayscale label map with several of them, else ``[1]`` (one object, foreground > 0)."""
    from insid3lab.core.palette import VOID
    from insid3lab.tasks.tracking import label_map_array

    with Image.open(path) as img:
        lossless = img.format not in ("JPEG", "WEBP", "MPO")
        mode = img.mode
    if not lossless or mode not in ("P", "L", "I", "I;16"):
        return [1]
    ids = [int(i) for i in np.unique(label_map_array(path)) if i not in (0, VOID)]
    return ids if len(ids) > 1 else [1]


def _check_outputs(args, out: Path, inputs: set[Path]) -> None:
    masks_dir = (out / MASKS_DIR).resolve()
    frames = Path(args.frames).expanduser().resolve()
    if masks_dir == frames:
        raise ValueError(f"--out {args.out}: the masks would be written into the frames folder {str(frames)!r}")
    if (out / ANIMATION).resolve() in inputs:
        raise ValueError(f"--out {args.out}: {ANIMATION} would replace an input")
    if args.overwrite:
        return
    old = sorted(masks_dir.glob("*.png")) if masks_dir.is_dir() else []
    if not args.no_animation and (out / ANIMATION).exists():
        old.insert(0, out / ANIMATION)
    if old:
        raise FileExistsError(
            f"--out {args.out}: {str(old[0])!r} already exists ({len(old)} output file(s)); "
            "pass --overwrite to replace them or choose another folder"
        )


def _overlay(frame: np.ndarray, labels: np.ndarray, palette: np.ndarray) -> Image.Image:
    """The frame with every object tinted in its palette colour, scaled to ANIMATION_SIDE."""
    out = frame.astype(np.float32)
    fg = labels > 0
    out[fg] = 0.45 * out[fg] + 0.55 * palette[labels[fg]]
    img = Image.fromarray(out.clip(0, 255).astype(np.uint8))
    scale = ANIMATION_SIDE / max(img.size)
    if scale < 1:
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.BILINEAR)
    return img.convert("P", palette=Image.ADAPTIVE)


def cmd_track(args) -> int:
    """Run ``insid3lab track`` from parsed arguments; returns the exit status (errors are raised as one line)."""
    from insid3lab.core.palette import davis_palette, save_palette_png
    from insid3lab.core.video import list_frame_files

    mask_path = Path(args.mask).expanduser()
    if not mask_path.is_file():
        raise FileNotFoundError(f"--mask {args.mask}: no such file")
    frames_path = Path(args.frames).expanduser()
    if not frames_path.exists():
        raise FileNotFoundError(f"--frames {args.frames}: no such file or folder")
    inputs = {mask_path.resolve()}
    if frames_path.is_dir():
        inputs |= {f.resolve() for f in list_frame_files(frames_path)}  # an empty folder fails here
    else:
        inputs.add(frames_path.resolve())
    out = Path(args.out).expanduser()
    _check_outputs(args, out, inputs)
    try:
        ids = first_mask_objects(mask_path)
    except OSError as e:
        raise ValueError(f"--mask {args.mask} cannot be read as an image ({type(e).__name__}: {e})") from None
    several = len(ids) > 1

    console = Console(quiet=args.quiet)
    model = options.build_pipeline(args, status=console.status, warn=console.warning)
    from insid3lab.core.video import iter_frames

    masks_dir = out / MASKS_DIR
    palette = davis_palette().astype(np.float32)
    if not several:
        palette[1] = (255, 40, 40)  # one object: a bright red that shows on any frame
    animation, used, written = [], set(), 0
    shown = []  # (name, frame) of the frame being tracked: the sequence is read once, in step with the masks

    def remember_frames():
        for name, frame in iter_frames(frames_path):
            shown.append((name, frame))
            yield frame

    try:
        masks = model.track(
            remember_frames(),
            str(mask_path),
            memory=args.memory,
            min_confidence=args.min_confidence,
            labels=several,
            progress=not args.quiet,
        )
        for mask in masks:
            name, frame = shown.pop()
            stem, n = name, 1
            while stem in used:
                n += 1
                stem = f"{name}-{n}"
            used.add(stem)
            path = masks_dir / f"{stem}.png"
            if path.resolve() in inputs:
                raise ValueError(f"{str(path)!r} is an input; choose another --out")
            arr = mask.cpu().numpy()
            # the folder is made with the first mask: a bad input leaves nothing
            if several:
                write_atomic(path, lambda tmp, a=arr: save_palette_png(a, tmp), console.note)
                labels = arr
            else:
                write_atomic(path, lambda tmp, a=arr: Image.fromarray(a.astype(np.uint8) * 255).save(tmp), console.note)
                labels = arr.astype(np.uint8)
            written += 1
            if not args.no_animation:
                animation.append(_overlay(frame, labels, palette))
    except ImportError as e:  # a video format whose reader is missing: the message says how to install it
        raise ValueError(str(e)) from None
    if animation:
        write_atomic(out / ANIMATION, lambda tmp: animation[0].save(tmp, save_all=True, append_images=animation[1:],
                                                                  duration=ANIMATION_MS, loop=0, disposal=1),
                     console.note)  # fmt: skip
    if not args.quiet:
        what = f"{len(ids)} objects" if several else "one object"
        print(f"wrote {written} mask(s) ({what}) to {masks_dir}", file=sys.stderr)
    return 0
