"""Generated video sequences with exact per-frame label maps, to run and score tracking without data.

:func:`moving_object_sequence` draws one or two textured objects (the striped, spotted ellipse of
:mod:`insid3lab.synthetic`) moving and turning over a cluttered background while a textured post
sweeps across the frame and partly hides them; :func:`write_moving_sequences` writes such
sequences in the DAVIS 2017 layout, :func:`write_youtube_vos_sequence` one in the YouTube-VOS
layout.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from insid3lab.core.palette import save_palette_png
from insid3lab.synthetic.scenes import draw_object, textured_background

__all__ = ["moving_object_sequence", "write_davis_sequence", "write_moving_sequences", "write_youtube_vos_sequence"]

_COLOURS = (np.array([205.0, 60.0, 40.0]), np.array([50.0, 95.0, 210.0]))


def moving_object_sequence(
    frames: int = 8, size: tuple[int, int] = (96, 128), seed: int = 0, objects: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """A sequence of one or two textured objects moving, turning and partly occluded.

    Object 1 crosses from the left third to the right third while turning by about 70 degrees
    and growing by 15 %; object 2 (``objects=2``) moves the other way lower down, behind object
    1. A vertical post enters from the right edge after the first frame and sweeps to the left,
    covering part of the objects in the middle frames. The first frame shows every object
    unoccluded. The background and its clutter (plain discs and squares) stay still.

    Args:
        frames: T >= 2.
        size: (H, W), each at least 32.
        seed: the background, clutter, colours and small changes of the paths depend on it.
        objects: 1 or 2.

    Returns:
        frames: (T, H, W, 3) uint8 RGB.
        label_maps: (T, H, W) uint8, 0 background, 1..objects the objects (hidden parts are 0).
    """
    if int(frames) < 2:
        raise ValueError(f"frames={frames}: a sequence needs at least 2 frames")
    if objects not in (1, 2):
        raise ValueError(f"objects={objects}: choose 1 or 2")
    h, w = (int(s) for s in size)
    if h < 32 or w < 32:
        raise ValueError(f"size={size}: each side must be at least 32 pixels")
    rng = np.random.default_rng(seed)
    background = textured_background(rng, h, w)
    yy, xx = np.mgrid[:h, :w]
    for _ in range(5):  # clutter
        cy, cx = rng.uniform(0.05, 0.95) * h, rng.uniform(0.05, 0.95) * w
        r = rng.uniform(0.04, 0.09) * min(h, w)
        sel = (
            (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
            if rng.random() < 0.5
            else (abs(yy - cy) <= r) & (abs(xx - cx) <= r)
        )
        background[sel] = rng.uniform(0, 255, size=3)
    jitter = rng.uniform(-0.03, 0.03, size=6)
    side = min(h, w)
    post_w = max(3, round(0.1 * w))
    post_tex = np.where((yy // 4) % 2 == 0, 150.0, 110.0)[..., None] * np.array([1.0, 0.95, 0.85])

    out_frames = np.empty((frames, h, w, 3), dtype=np.uint8)
    out_labels = np.zeros((frames, h, w), dtype=np.uint8)
    for t in range(frames):
        u = t / (frames - 1)
        img = background.copy()
        labels = out_labels[t]
        paths = [
            (
                h * (0.42 + jitter[0] + 0.08 * np.sin(2 * np.pi * u)),
                w * (0.28 + jitter[1] + 0.44 * u),
                0.17 * side * (1 + 0.15 * u),
                0.2 + jitter[2] + 1.2 * u,
            ),
            (h * (0.74 + jitter[3]), w * (0.74 + jitter[4] - 0.4 * u), 0.11 * side, -0.3 + jitter[5] - 0.9 * u),
        ][:objects]
        for k in reversed(range(objects)):  # object 2 is drawn first: object 1 passes in front of it
            cy, cx, ry, angle = paths[k]
            m = np.zeros((h, w), dtype=bool)
            draw_object(img, m, cy, cx, ry, 1.5 * ry, angle, _COLOURS[k])
            labels[m] = k + 1
        if t > 0:  # the post: off-frame at t = 0, then sweeping from the right edge to the left
            x0 = round(w * (1.0 - 1.1 * u))
            cols = slice(max(x0, 0), max(min(x0 + post_w, w), 0))
            img[:, cols] = post_tex[:, cols]
            labels[:, cols] = 0
        out_frames[t] = np.clip(img, 0, 255).astype(np.uint8)
    return out_frames, out_labels


def write_moving_sequences(
    root: str | os.PathLike,
    count: int = 2,
    *,
    frames: int = 8,
    size: tuple[int, int] = (96, 128),
    objects: int = 1,
    split: str = "val",
) -> list[str]:
    """Write ``count`` sequences ``moving-0``, ``moving-1``, ... (seeds 0, 1, ...) in the DAVIS 2017 layout.

    Returns:
        The sequence names, as listed in ``root/ImageSets/2017/<split>.txt``.
    """

    names = []
    for i in range(int(count)):
        name = f"moving-{i}"
        f, labels = moving_object_sequence(frames, size, seed=i, objects=objects)
        write_davis_sequence(root, name, f, labels, split=split)
        names.append(name)
    return names


def _check_sequence(frames, label_maps) -> tuple[np.ndarray, np.ndarray]:
    frames, label_maps = np.asarray(frames), np.asarray(label_maps)
    if frames.ndim != 4 or frames.shape[3] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames: expected (T, H, W, 3) uint8; got shape {frames.shape}, dtype {frames.dtype}")
    if label_maps.shape != frames.shape[:3]:
        raise ValueError(f"label_maps: expected shape {frames.shape[:3]} to match the frames; got {label_maps.shape}")
    return frames, label_maps


def _save_frame(frame: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(frame).save(path, quality=95, subsampling=0)


def write_youtube_vos_sequence(root, name: str, frames, label_maps, *, split: str = "train", every: int = 5) -> Path:
    """Write one sequence in the YouTube-VOS layout, as its download holds it.

    Every frame t goes to ``<split>_all_frames/JPEGImages/<name>/<t>.jpg`` (five digits); every
    ``every``-th one also to ``<split>/JPEGImages/<name>/`` with its label map as a palette PNG in
    ``<split>/Annotations/<name>/`` (the train split annotates each frame it holds). An object
    appears where its label map first shows it.

    Args:
        frames: (T, H, W, 3) uint8 (JPEG, quality 95, no chroma subsampling).
        label_maps: (T, H, W) integer ids (0 background).
        split: the split folder's name.
        every: the step between the frames of the split folder (YouTube-VOS: 5, 30 fps to 6 fps).

    Returns:
        ``root``.
    """
    frames, label_maps = _check_sequence(frames, label_maps)
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise ValueError(f"every={every!r}: must be an integer >= 1")
    r = Path(root).expanduser()
    for t, (frame, labels) in enumerate(zip(frames, label_maps)):
        _save_frame(frame, r / f"{split}_all_frames" / "JPEGImages" / name / f"{t:05d}.jpg")
        if t % every == 0:
            _save_frame(frame, r / split / "JPEGImages" / name / f"{t:05d}.jpg")
            save_palette_png(labels, r / split / "Annotations" / name / f"{t:05d}.png")
    return r


def write_davis_sequence(
    root, name: str, frames, label_maps, *, split: str = "val", year: str = "2017", resolution: str = "480p"
) -> Path:
    """Write one sequence in the DAVIS layout and add it to ``ImageSets/<year>/<split>.txt``.

    Args:
        frames: (T, H, W, 3) uint8, written as ``00000.jpg`` ... (JPEG, quality 95, no chroma subsampling).
        label_maps: (T, H, W) integer ids, written as palette PNGs ``00000.png`` ...

    Returns:
        ``root``.
    """
    frames, label_maps = _check_sequence(frames, label_maps)
    r = Path(root).expanduser()
    img_dir, ann_dir = r / "JPEGImages" / resolution / name, r / "Annotations" / resolution / name
    for t, (frame, labels) in enumerate(zip(frames, label_maps)):
        _save_frame(frame, img_dir / f"{t:05d}.jpg")
        save_palette_png(labels, ann_dir / f"{t:05d}.png")
    listing = r / "ImageSets" / str(year) / f"{split}.txt"
    listing.parent.mkdir(parents=True, exist_ok=True)
    names = [s.strip() for s in listing.read_text().splitlines() if s.strip()] if listing.exists() else []
    if name not in names:
        listing.write_text("".join(f"{s}\n" for s in [*names, name]))
    return r
