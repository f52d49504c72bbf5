"""Frames of a sequence from a folder, a list of images, arrays or a video file.

:func:`iter_frames` yields ``(name, frame)`` pairs, every frame an (H, W, 3) uint8 RGB array:

* a folder: its image files in natural order (``2.jpg`` before ``10.jpg``; names compared as
  runs of digits and non-digits, case-insensitively); names are the file stems;
* a list (or tuple) of image paths, in the order given; names are the file stems;
* a (T, H, W, 3) array, or any iterable of (H, W, 3) / (H, W) arrays or PIL images; names are
  the frame indices written with five digits (``00000``), as DAVIS names its frames;
* a video file (``.mp4``, ``.avi``, ``.mov``, ``.mkv``, ``.webm``, ``.gif`` ...), read with
  imageio: GIF through its pillow plugin (only ``imageio`` needed), other formats through
  PyAV or imageio-ffmpeg, installed with ``pip install "insid3lab[video]"``.

Every frame keeps its own size by default (``sizes="own"``), so a mask predicted for it can
have its size too; ``sizes="first"`` resizes a frame of another size to the first frame's
(bilinear) and ``sizes="same"`` makes it an error naming the frame.

A folder may hold images that are not frames of the sequence (the first frame's mask, a
thumbnail): :func:`list_frame_files` leaves out the files it is told to, and
:func:`odd_frames` names those whose naming pattern or size differs from most frames'.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from insid3lab.core.preprocess import to_pil_rgb

__all__ = [
    "FRAME_SIZES",
    "IMAGE_SUFFIXES",
    "VIDEO_INSTALL",
    "VIDEO_SUFFIXES",
    "count_frames",
    "iter_frames",
    "list_frame_files",
    "natural_key",
    "odd_frames",
]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_SUFFIXES = (".mp4", ".m4v", ".avi", ".mov", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".flv", ".gif")
#: What :func:`iter_frames` does with a frame whose size differs from the first frame's (its ``sizes``).
FRAME_SIZES = ("own", "first", "same")
#: How to install the optional video reader.
VIDEO_INSTALL = 'pip install "insid3lab[video]"'


def natural_key(name: str) -> tuple:
    """Sort key comparing runs of digits as numbers: ``frame2`` < ``frame10``; case-insensitive."""
    parts = re.split(r"(\d+)", str(name).lower())
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in parts if p != "")


def list_frame_files(folder: str | os.PathLike, *, exclude: Iterable[str | os.PathLike] = ()) -> list[Path]:
    """The image files of ``folder`` (no sub-folders, no hidden files), in natural order.

    ``exclude``: files to leave out (compared as resolved paths), e.g. the first frame's mask kept
    beside the frames.
    """
    d = Path(folder).expanduser()
    if not d.is_dir():
        raise NotADirectoryError(f"frames {str(d)!r}: not a folder")
    left_out = {Path(f).expanduser().resolve() for f in exclude}
    images = [
        p for p in d.iterdir() if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES
    ]
    files = [p for p in images if p.resolve() not in left_out]
    if not files:
        if images:
            what = "holds no image file but the one left out" if len(images) == 1 else "holds only files left out"
        else:
            what = "holds no image file" if any(not p.name.startswith(".") for p in d.iterdir()) else "is empty"
        raise ValueError(f"frames folder {str(d)!r} {what}; allowed image types: {', '.join(IMAGE_SUFFIXES)}")
    return sorted(files, key=lambda p: natural_key(p.name))


def _pattern(name: str) -> str:
    """A file name with its runs of digits as ``#``, case folded: ``Frame_012.PNG`` -> ``frame_#.png``."""
    return re.sub(r"\d+", "#", name.lower())


def odd_frames(sizes: dict[Path, tuple[int, int]]) -> dict[Path, str]:
    """The files of a folder of frames that look unlike most of its frames, with why.

    Args:
        sizes: ``{file: (width, height)}`` of every frame, in sequence order.

    Returns:
        ``{file: reason}`` for each file whose naming pattern (:func:`_pattern`: digits as ``#``)
        or size differs from the one more than half of the frames share; empty when no pattern
        or size is shared by more than half.
    """
    out: dict[Path, str] = {}
    n = len(sizes)
    patterns = Counter(_pattern(p.name) for p in sizes)
    common, count = patterns.most_common(1)[0] if patterns else ("", 0)
    if 2 * count > n:
        for p in sizes:
            if _pattern(p.name) != common:
                out[p] = f"named unlike the others ({common})"
    shapes = Counter(sizes.values())
    size, count = shapes.most_common(1)[0] if shapes else ((0, 0), 0)
    if 2 * count > n:
        for p, wh in sizes.items():
            if wh != size and p not in out:
                out[p] = f"{wh[0]}x{wh[1]} where the others are {size[0]}x{size[1]} (width x height)"
    return {p: out[p] for p in sizes if p in out}


def _is_video(p: Path) -> bool:
    return p.suffix.lower() in VIDEO_SUFFIXES


def _video_plugin(path: Path) -> str:
    """The imageio plugin that reads ``path``; a clear ImportError naming the missing package otherwise."""
    try:
        import imageio.v3  # noqa: F401
    except ImportError as e:
        raise ImportError(
            f"reading the video {str(path)!r} needs imageio; install the video extra: {VIDEO_INSTALL}"
        ) from e
    if path.suffix.lower() == ".gif":
        return "pillow"
    try:
        import av  # noqa: F401

        return "pyav"
    except ImportError:
        pass
    try:
        import imageio_ffmpeg  # noqa: F401

        return "FFMPEG"
    except ImportError as e:
        raise ImportError(
            f"reading the video {str(path)!r} needs an ffmpeg reader (imageio-ffmpeg or av), which is not installed; "
            f"install the video extra: {VIDEO_INSTALL}"
        ) from e


def _iter_video(path: Path) -> Iterator[tuple[str, np.ndarray]]:
    if not path.is_file():
        raise FileNotFoundError(f"video {str(path)!r}: no such file")
    plugin = _video_plugin(path)
    import imageio.v3 as iio

    n = 0
    try:
        for frame in iio.imiter(path, plugin=plugin):
            yield f"{n:05d}", frame
            n += 1
    except (OSError, ValueError, RuntimeError, IndexError, TypeError) as e:
        raise ValueError(f"video {str(path)!r} cannot be read ({type(e).__name__}: {e})") from e
    if n == 0:
        raise ValueError(f"video {str(path)!r} holds no frame")


def _rgb(frame, what: str) -> np.ndarray:
    """Any supported frame as a contiguous (H, W, 3) uint8 array (a file's errors name it once, as the reader does)."""
    if isinstance(frame, np.ndarray) and frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3:
        return np.ascontiguousarray(frame)
    what = "frame" if isinstance(frame, (str, os.PathLike)) else what
    return np.asarray(to_pil_rgb(frame, exif_transpose=not isinstance(frame, np.ndarray), what=what))


def _raw(source) -> Iterator[tuple[str, object, str]]:
    """(name, undecoded frame, description for errors) in sequence order."""
    if isinstance(source, (str, os.PathLike)):
        p = Path(source).expanduser()
        if p.is_dir():
            for f in list_frame_files(p):
                yield f.stem, f, f"frame {str(f)!r}"
            return
        if not p.exists():
            raise FileNotFoundError(f"frames {str(p)!r}: no such file or folder")
        if not _is_video(p):
            raise ValueError(
                f"frames {str(p)!r}: give a folder of images, a list of image paths, arrays or a video file "
                f"({', '.join(VIDEO_SUFFIXES)})"
            )
        for name, frame in _iter_video(p):
            yield name, frame, f"frame {name} of {str(p)!r}"
        return
    if isinstance(source, np.ndarray):
        if source.ndim not in (3, 4) or (source.ndim == 4 and source.shape[3] not in (1, 3, 4)):
            raise ValueError(f"frames: an array must be (T, H, W, 3) or (T, H, W); got shape {source.shape}")
        if len(source) == 0:
            raise ValueError("frames: the array holds no frame")
    elif isinstance(source, (bytes, dict)) or not isinstance(source, Iterable):
        raise TypeError(
            f"frames: expected a folder, a video file, a list of paths or arrays; got {type(source).__name__}"
        )
    n = 0
    for i, item in enumerate(source):
        if isinstance(item, (str, os.PathLike)):
            f = Path(item).expanduser()
            yield f.stem, f, f"frame {str(f)!r}"
        else:
            yield f"{i:05d}", item, f"frame {i}"
        n += 1
    if n == 0:
        raise ValueError("frames: the sequence holds no frame")


def iter_frames(source, *, sizes: str = "own") -> Iterator[tuple[str, np.ndarray]]:
    """Yield ``(name, frame)`` for every frame of ``source``, frames (H, W, 3) uint8 RGB.

    Args:
        source: a folder of images, a video file, a list of image paths, a (T, H, W, 3) array or
            an iterable of images (see the module's documentation for names and order).
        sizes: a frame whose size differs from the first frame's keeps its size (``"own"``), is
            resized to the first frame's (``"first"``, bilinear) or is an error (``"same"``).

    Raises:
        ValueError: an empty folder, a folder without images, an unreadable frame or video, a
            frame of another size with ``sizes="same"``.
        ImportError: a video format whose reader is not installed (the message says how to install it).
    """
    if sizes not in FRAME_SIZES:
        raise ValueError(f"sizes={sizes!r}: allowed {', '.join(map(repr, FRAME_SIZES))}")
    size = None
    for name, item, what in _raw(source):
        frame = _rgb(item, what)
        hw = frame.shape[:2]
        if size is None:
            size = hw
        elif hw != size and sizes != "own":
            if sizes == "same":
                raise ValueError(
                    f"{what} is {hw[0]}x{hw[1]} but the first frame is {size[0]}x{size[1]} (H x W); "
                    "every frame of this sequence must have the first frame's size"
                )
            frame = np.asarray(Image.fromarray(frame).resize((size[1], size[0]), Image.BILINEAR))
        yield name, frame


def count_frames(source) -> int | None:
    """The number of frames of ``source`` when it is cheap to know (folders, lists, arrays, GIFs), else None."""
    if isinstance(source, (str, os.PathLike)):
        p = Path(source).expanduser()
        if p.is_dir():
            return len(list_frame_files(p))
        if p.suffix.lower() == ".gif" and p.is_file():
            try:
                with Image.open(p) as im:
                    return int(getattr(im, "n_frames", 1))
            except OSError:
                return None
        return None
    if isinstance(source, np.ndarray):
        return int(source.shape[0])
    if isinstance(source, (list, tuple)):
        return len(source)
    return None
