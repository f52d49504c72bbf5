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

A folder of frames is surveyed before the weights are loaded: ``--mask`` kept in it is not a
frame; every image over the pixel limit is named in one error; images whose naming pattern or
size differs from most frames' are named in one warning (and tracked). Each frame's mask has
the frame's own size; the animation's frames take the first frame's. On random weights the
animation carries :data:`~insid3lab.cli.figures.RANDOM_WEIGHTS_NOTE` under its frames.
"""

from __future__ import annotations

import argparse
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
    options.add_image_arguments(p)
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
    if out.exists() and not out.is_dir():
        raise options.CLIError(f"--out {args.out}: is a file; give a folder")
    if (out / MASKS_DIR).exists() and not (out / MASKS_DIR).is_dir():
        raise options.CLIError(f"--out {args.out}: {out / MASKS_DIR} is a file; give another folder")
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


def _animation_size(frame: np.ndarray) -> tuple[int, int]:
    """(width, height) of the animation: the first frame's, scaled down to ANIMATION_SIDE."""
    h, w = frame.shape[:2]
    scale = ANIMATION_SIDE / max(h, w)
    return (max(1, round(w * scale)), max(1, round(h * scale))) if scale < 1 else (w, h)


def _overlay(frame: np.ndarray, labels: np.ndarray, palette: np.ndarray, size: tuple[int, int],
             note: Image.Image | None) -> Image.Image:  # fmt: skip
    """The frame with every object tinted in its palette colour, at ``size`` (width, height), ``note`` under it."""
    out = frame.astype(np.float32)
    fg = labels > 0
    out[fg] = 0.45 * out[fg] + 0.55 * palette[labels[fg]]
    img = Image.fromarray(out.clip(0, 255).astype(np.uint8))
    if img.size != size:
        img = img.resize(size, Image.BILINEAR)
    if note is not None:
        framed = Image.new("RGB", (img.width, img.height + note.height), "white")
        framed.paste(img, (0, 0))
        framed.paste(note, (0, img.height))
        img = framed
    return img.convert("P", palette=Image.ADAPTIVE)


def _frame_files(args, frames_path: Path, mask_path: Path, console: Console) -> list[Path]:
    """The frames of a folder, ``--mask`` left out; every image over the pixel limit or unreadable named in one
    error; images that look unlike the others named in one warning."""
    from insid3lab.core.imageio import ImageTooLargeError, image_size
    from insid3lab.core.video import list_frame_files, odd_frames

    files = list_frame_files(frames_path, exclude=[mask_path])
    sizes, large, unreadable = {}, [], []
    for f in files:
        try:
            sizes[f] = image_size(f, what="frame")
        except ImageTooLargeError as e:
            large.append(e)
        except ValueError:
            unreadable.append(f.name)
    if large:
        names = ", ".join(f"{Path(e.path).name} ({e.pixels:,} pixels)" for e in large)
        raise options.CLIError(
            f"--frames {args.frames}: {len(large)} frame(s) exceed the pixel limit of {large[0].limit:,} (a guard "
            f"against decompression bombs): {names}; if you trust the files, raise the limit with "
            "--max-image-pixels N (0: no limit)"
        )
    if unreadable:
        raise options.CLIError(
            f"--frames {args.frames}: {len(unreadable)} file(s) cannot be read as images: {', '.join(unreadable)}"
        )
    odd = odd_frames(sizes)
    if odd:
        console.warning(
            f"--frames {args.frames}: {len(odd)} image(s) look unlike the other frames and are tracked as frames all "
            "the same (move them out of the folder if they are not): "
            + ", ".join(f"{p.name} ({why})" for p, why in odd.items())
        )
    return files


def cmd_track(args) -> int:
    """Run ``insid3lab track`` from parsed arguments; returns the exit status (errors are raised as one line)."""
    from tqdm.auto import tqdm

    from insid3lab.cli.figures import RANDOM_WEIGHTS_NOTE, note_band
    from insid3lab.core.palette import davis_palette, save_palette_png
    from insid3lab.core.video import count_frames, iter_frames
    from insid3lab.core.weights import is_random

    console = Console(quiet=args.quiet)
    mask_path = Path(args.mask).expanduser()
    if not mask_path.is_file():
        raise FileNotFoundError(f"--mask {args.mask}: no such file")
    frames_path = Path(args.frames).expanduser()
    if not frames_path.exists():
        raise FileNotFoundError(f"--frames {args.frames}: no such file or folder")
    inputs = {mask_path.resolve()}
    if frames_path.is_dir():
        source = _frame_files(args, frames_path, mask_path, console)
        inputs |= {f.resolve() for f in source}
    else:
        source = frames_path
        inputs.add(frames_path.resolve())
    out = Path(args.out).expanduser()
    _check_outputs(args, out, inputs)
    try:
        ids = first_mask_objects(mask_path)
    except OSError as e:
        raise ValueError(f"--mask {args.mask} cannot be read as an image ({type(e).__name__}: {e})") from None
    several = len(ids) > 1

    model = options.build_pipeline(args, status=console.status, warn=console.warning)
    masks_dir = out / MASKS_DIR
    palette = davis_palette().astype(np.float32)
    if not several:
        palette[1] = (255, 40, 40)  # one object: a bright red that shows on any frame
    animation, used, written = [], set(), 0
    shown = []  # (name, frame) of the frame being tracked: the sequence is read once, in step with the masks
    size, note = None, None

    def remember_frames():
        for name, frame in iter_frames(source):
            shown.append((name, frame))
            yield frame

    bar = tqdm(total=count_frames(source), disable=args.quiet, unit="frame", desc="track", dynamic_ncols=True)
    try:
        masks = model.track(
            remember_frames(),
            str(mask_path),
            memory=args.memory,
            min_confidence=args.min_confidence,
            labels=several,
            progress=False,
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
            bar.update(1)
            if not args.no_animation:
                if not animation:  # every frame of the animation takes the first frame's size
                    size = _animation_size(frame)
                    note = note_band(size[0], RANDOM_WEIGHTS_NOTE) if is_random(model.encoder) else None
                animation.append(_overlay(frame, labels, palette, size, note))
    except ImportError as e:  # a video format whose reader is missing: the message says how to install it
        raise ValueError(str(e)) from None
    finally:
        bar.close()
    if animation:
        extra = {"comment": RANDOM_WEIGHTS_NOTE.encode()} if note is not None else {}
        write_atomic(out / ANIMATION, lambda tmp: animation[0].save(tmp, save_all=True, append_images=animation[1:],
                                                                  duration=ANIMATION_MS, loop=0, disposal=1, **extra),
                     console.note)  # fmt: skip
    what = f"{len(ids)} objects" if several else "one object"
    also = f" and {out / ANIMATION}" if animation else ""
    console.status(f"wrote {written} mask(s) ({what}) to {masks_dir}{also}")
    return 0
