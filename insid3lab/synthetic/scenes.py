"""Synthetic scenes with exact masks: every generated image of insid3lab comes from here.

Every image is (H, W, 3) uint8 RGB and every mask (H, W) bool; every number is a function
of the arguments (a seed, or the random generator passed in).

* :func:`sample_scene`: a striped, spotted ellipse among distractors (``insid3lab samples``,
  the README and the tests); :func:`write_samples` writes a reference, its mask and targets.
* :func:`object_scene`: a disc of a given colour among boxes (the inputs of ``insid3lab bench``).
* :func:`lesion_scene`, :func:`defect_scene`: small objects on skin-like and woven textures;
  :data:`SCENES` names them and :func:`write_folder_dataset` writes them as a folder dataset.
* :func:`cat_pair`: scikit-image's ``chelsea`` cat with a mask of its eyes and a mirrored, cropped
  copy as the target (needs ``scikit-image``, part of the ``lab`` extra).
* :func:`grid_scene`: axis-aligned rectangles on the 16-pixel grid, one mask per colour.
* :func:`box_scene`: flat-coloured rectangles on grey noise and their label map (the benchmark
  replicas of the tests, labelled shots).
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image

from insid3lab.core.files import write_atomic

__all__ = [
    "SCENES",
    "box_scene",
    "cat_pair",
    "defect_scene",
    "draw_object",
    "grid_scene",
    "lesion_scene",
    "object_scene",
    "sample_scene",
    "textured_background",
    "write_folder_dataset",
    "sample_files",
    "write_samples",
]


# --------------------------------------------------------------------------- the sample object
def textured_background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    base = rng.uniform(60, 190, size=3).astype(np.float32)
    ramp = (0.25 * (yy / h) + 0.15 * (xx / w))[..., None] * rng.uniform(-90, 90, size=3)
    noise = rng.normal(0, 10, size=(h, w, 3))
    return base + ramp + noise


def draw_object(
    img: np.ndarray, mask: np.ndarray, cy: float, cx: float, ry: float, rx: float, angle: float, colour: np.ndarray
) -> None:
    h, w = mask.shape
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    c, s = np.cos(angle), np.sin(angle)
    u = ((xx - cx) * c + (yy - cy) * s) / rx
    v = (-(xx - cx) * s + (yy - cy) * c) / ry
    inside = u**2 + v**2 <= 1.0
    stripes = (np.sin(u * 9.0) > 0.35)[..., None]
    spots = ((np.sin(u * 14) * np.sin(v * 14)) > 0.6)[..., None]
    body = np.where(stripes, colour, colour * 0.45)
    body = np.where(spots, 30.0, body)
    img[inside] = body[inside]
    mask |= inside


def sample_scene(
    seed: int = 0, size: tuple[int, int] = (240, 320), *, scale: float = 1.0, distractors: int = 3
) -> tuple[np.ndarray, np.ndarray]:
    """A scene with one instance of the sample object and a few distractor shapes.

    Args:
        seed: everything (position, size, background) is a function of the seed.
        size: (H, W) in pixels.
        scale: object size relative to the default (about a quarter of the shorter side);
            use e.g. 0.2 for a small object.
        distractors: number of plain-coloured discs and squares.

    Returns:
        image: (H, W, 3) uint8.
        mask: (H, W) bool, the object.
    """
    rng = np.random.default_rng(seed)
    h, w = size
    img = textured_background(rng, h, w)
    for _ in range(distractors):
        cy, cx = rng.uniform(0.1, 0.9) * h, rng.uniform(0.1, 0.9) * w
        r = rng.uniform(0.06, 0.14) * min(h, w)
        col = rng.uniform(0, 255, size=3)
        yy, xx = np.mgrid[:h, :w]
        if rng.random() < 0.5:
            sel = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        else:
            sel = (abs(yy - cy) <= r) & (abs(xx - cx) <= r)
        img[sel] = col
    mask = np.zeros((h, w), dtype=bool)
    ry = rng.uniform(0.18, 0.26) * min(h, w) * scale
    rx = ry * rng.uniform(1.2, 1.6)
    cy = rng.uniform(ry + 2, h - ry - 2) if h > 2 * ry + 4 else h / 2
    cx = rng.uniform(rx + 2, w - rx - 2) if w > 2 * rx + 4 else w / 2
    draw_object(img, mask, cy, cx, ry, rx, rng.uniform(-0.6, 0.6), np.array([205.0, 60.0, 40.0]))
    return np.clip(img, 0, 255).astype(np.uint8), mask


def sample_files(folder: str | Path, *, targets: int = 3) -> dict[Path, bytes]:
    """What :func:`write_samples` writes in ``folder``: path -> PNG bytes, in the order it writes them."""
    folder = Path(folder)
    scenes = [("reference", sample_scene(0))]
    scenes += [(f"target_{i}", sample_scene(i, size=(240 + 16 * i, 320 - 24 * i), scale=1.0 - 0.15 * (i - 1)))
               for i in range(1, targets + 1)]  # fmt: skip
    out = {}
    for name, (img, mask) in scenes:
        for suffix, arr in (("", img), ("_mask", mask.astype(np.uint8) * 255)):
            buf = io.BytesIO()
            Image.fromarray(arr).save(buf, format="PNG")
            out[folder / f"{name}{suffix}.png"] = buf.getvalue()
    return out


def write_samples(folder: str | Path, *, targets: int = 3) -> list[Path]:
    """Write ``reference.png``, ``reference_mask.png`` (0/255) and ``target_1.png`` ... to ``folder``.

    Targets also get ``target_N_mask.png`` ground truth (:func:`sample_files`). Each file is written
    whole or not at all; existing ones are replaced. Returns the written paths.
    """
    files = sample_files(folder, targets=targets)
    for path, data in files.items():
        write_atomic(path, data)
    return list(files)


# --------------------------------------------------------------------------- bench scenes
def object_scene(
    rng: np.random.Generator, height: int, width: int, colour: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """One (H, W, 3) uint8 scene and its (H, W) bool object mask: a striped background, distractor boxes and
    one disc of ``colour``; every number is drawn from ``rng`` (the scenes of ``insid3lab bench``)."""
    yy, xx = np.mgrid[:height, :width]
    img = np.empty((height, width, 3), np.float32)
    img[:] = rng.uniform(0, 255, 3)
    img += 25 * np.sin(xx[..., None] / rng.uniform(8, 40) + rng.uniform(0, 6, 3))
    side = min(height, width)
    for _ in range(int(rng.integers(2, 6))):
        cy, cx = rng.integers(0, height), rng.integers(0, width)
        ry, rx = rng.integers(side // 12, side // 4, size=2)
        box = (np.abs(yy - cy) < ry) & (np.abs(xx - cx) < rx)
        img[box] = rng.uniform(0, 255, 3)
    cy, cx = rng.integers(side // 4, height - side // 4), rng.integers(side // 4, width - side // 4)
    r = rng.integers(side // 8, side // 4)
    obj = (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
    img[obj] = colour + 30 * np.sin(yy[obj] / 6.0)[:, None]
    img += rng.normal(0, 8, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8), obj


# --------------------------------------------------------------------------- small objects, the cat
# The two eyes of scikit-image's chelsea (300 x 451): (centre x, centre y, radius x, radius y).
_CHELSEA_EYES = ((172.0, 115.0, 38.0, 30.0), (318.0, 137.0, 28.0, 27.0))


def _ellipses(hw: tuple[int, int], ellipses) -> np.ndarray:
    H, W = hw
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float64)
    m = np.zeros((H, W), dtype=bool)
    for cx, cy, rx, ry in ellipses:
        m |= ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1.0
    return m


def cat_pair(*, crop: tuple[int, int, int, int] = (20, 280, 30, 431)) -> dict:
    """A reference and a target showing the same concept (a cat's eyes), from scikit-image's sample data.

    The target is the reference mirrored left-right and cropped to rows ``crop[0]:crop[1]`` and
    columns ``crop[2]:crop[3]``; its ground truth is the mirrored, cropped eye mask.

    Returns:
        dict with ``reference_image`` (300, 451, 3), ``reference_mask``, ``target_image``,
        ``target_mask`` (bool) and ``name``.
    """
    try:
        from skimage import data
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("cat_pair() needs scikit-image (pip install 'insid3lab[lab]')") from e
    img = data.chelsea()
    mask = _ellipses(img.shape[:2], _CHELSEA_EYES)
    y0, y1, x0, x1 = crop
    tgt = np.ascontiguousarray(img[:, ::-1][y0:y1, x0:x1])
    tmask = np.ascontiguousarray(mask[:, ::-1][y0:y1, x0:x1])
    return {
        "reference_image": img,
        "reference_mask": mask,
        "target_image": tgt,
        "target_mask": tmask,
        "name": "chelsea eyes",
    }


def _smooth_noise(rng: np.random.Generator, shape, sigma: float) -> np.ndarray:
    """Gaussian-filtered white noise scaled to zero mean and unit standard deviation."""
    from scipy import ndimage

    n = ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode="wrap")
    return (n - n.mean()) / max(n.std(), 1e-12)


def _irregular_blob(rng, size: int, center, radius: float, roughness: float = 0.25) -> np.ndarray:
    """A star-shaped blob: radius modulated by a few random harmonics of the angle."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    dy, dx = yy - center[0], xx - center[1]
    ang = np.arctan2(dy, dx)
    r = np.ones_like(ang)
    for k in range(2, 6):
        r += roughness / k * rng.uniform(0.3, 1.0) * np.cos(k * ang + rng.uniform(0, 2 * np.pi))
    return np.hypot(dy, dx) <= radius * r


def lesion_scene(seed: int = 0, size: int = 256, radius: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A small dark lesion-like blob on skin-like texture.

    Args:
        seed: everything (texture, position, shape) is a function of the seed.
        size: image side.
        radius: blob radius in pixels (default ``0.07 * size``: a small object).

    Returns:
        (image (size, size, 3) uint8, mask (size, size) bool).
    """
    rng = np.random.default_rng(seed)
    radius = 0.07 * size if radius is None else float(radius)
    base = np.array([224.0, 178.0, 150.0]) + rng.uniform(-12, 12, 3)
    low = _smooth_noise(rng, (size, size), size / 10)
    grain = _smooth_noise(rng, (size, size), 1.0)
    img = base[None, None] * (1 + 0.05 * low[..., None]) + 6 * grain[..., None]
    margin = radius * 1.6
    center = rng.uniform(margin, size - margin, 2)
    mask = _irregular_blob(rng, size, center, radius)
    from scipy import ndimage

    soft = ndimage.gaussian_filter(mask.astype(np.float64), 1.2)
    inner = _smooth_noise(rng, (size, size), 2.0)
    lesion = np.array([118.0, 72.0, 50.0]) * (1 + 0.12 * inner[..., None])
    img = img * (1 - soft[..., None]) + lesion * soft[..., None]
    for _ in range(rng.integers(2, 5)):  # a few hairs
        p0 = rng.uniform(0, size, 2)
        d = rng.uniform(-1, 1, 2)
        d /= np.linalg.norm(d) + 1e-12
        t = np.linspace(0, rng.uniform(0.3, 0.8) * size, int(size))
        pts = (p0[None] + t[:, None] * d[None]).round().astype(int)
        ok = (pts >= 0).all(1) & (pts < size).all(1)
        img[pts[ok, 0], pts[ok, 1]] *= 0.6
    return np.clip(img, 0, 255).astype(np.uint8), mask


def defect_scene(seed: int = 0, size: int = 256, length: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A short dark scratch on a woven, metallic-grey texture.

    Args:
        seed: everything is a function of the seed.
        size: image side.
        length: scratch length in pixels (default ``0.16 * size``).

    Returns:
        (image (size, size, 3) uint8, mask (size, size) bool).
    """
    rng = np.random.default_rng(seed)
    length = 0.16 * size if length is None else float(length)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    period = rng.uniform(9, 13)
    weave = np.sin(2 * np.pi * xx / period) * np.sin(2 * np.pi * yy / period)
    tex = 150 + 18 * weave + 8 * _smooth_noise(rng, (size, size), 1.0) + 10 * _smooth_noise(rng, (size, size), size / 8)
    margin = length
    c = rng.uniform(margin, size - margin, 2)
    theta = rng.uniform(0, np.pi)
    d = np.array([np.sin(theta), np.cos(theta)])
    rel = np.stack([yy - c[0], xx - c[1]], -1)
    along = rel @ d
    across = rel @ np.array([-d[1], d[0]])
    width = max(1.5, size / 48)
    mask = (np.abs(along) <= length / 2) & (np.abs(across) <= width * (1 - (2 * along / length) ** 2 * 0.5))
    from scipy import ndimage

    soft = ndimage.gaussian_filter(mask.astype(np.float64), 0.8)
    tex = tex * (1 - 0.7 * soft)
    img = np.stack([tex * 0.97, tex, tex * 1.04], -1)
    return np.clip(img, 0, 255).astype(np.uint8), mask


#: Scene generators by name.
SCENES = {"lesion": lesion_scene, "defect": defect_scene}


def write_folder_dataset(
    root: str | os.PathLike,
    count: int = 6,
    *,
    kind: str = "lesion",
    size: int = 128,
    seed: int = 0,
    class_name: str | None = None,
) -> Path:
    """Write ``count`` generated scenes as ``images/NNN.png`` and ``masks/NNN.png`` (0/255) under ``root``.

    This is the layout of :class:`insid3lab.eval.datasets.FolderDataset`: one class, or with
    ``class_name`` one class folder (``images/<class_name>/``, ``masks/<class_name>/``); call it once
    per class for a multi-class dataset.

    Returns:
        The root folder.
    """
    if kind not in SCENES:
        raise ValueError(f"kind={kind!r}: allowed {', '.join(SCENES)}")
    if count < 2:
        raise ValueError(f"count={count}: a one-shot episode needs at least 2 images")
    root = Path(root)
    sub = () if class_name is None else (str(class_name),)
    img_dir, mask_dir = root.joinpath("images", *sub), root.joinpath("masks", *sub)
    img_dir.mkdir(parents=True, exist_ok=True)
    mask_dir.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        img, mask = SCENES[kind](seed + i, size)
        Image.fromarray(img).save(img_dir / f"{i:03d}.png")
        Image.fromarray(mask.astype(np.uint8) * 255).save(mask_dir / f"{i:03d}.png")
    return root


# --------------------------------------------------------------------------- grid scenes
def grid_scene(objects, size=256, background=(90, 110, 140)):
    """An image with axis-aligned rectangles on the 16-px grid.

    Args:
        objects: list of (row0, col0, row1, col1, (r, g, b)) in pixels (multiples of 16).

    Returns:
        (size, size, 3) uint8 image and a dict colour -> (size, size) bool mask.
    """
    img = np.zeros((size, size, 3), np.uint8)
    img[:] = background
    masks = {}
    for r0, c0, r1, c1, col in objects:
        img[r0:r1, c0:c1] = col
        m = masks.setdefault(tuple(col), np.zeros((size, size), bool))
        m[r0:r1, c0:c1] = True
    return img, masks


def box_scene(size: tuple[int, int], boxes, *, seed: int = 0, grey: float = 128.0, noise: float = 12.0):
    """Flat-coloured rectangles on grey noise, and which rectangle each pixel shows.

    Args:
        size: (H, W) in pixels.
        boxes: ``[((x0, y0, x1, y1), (r, g, b)), ...]`` in pixels, ``x1`` and ``y1`` exclusive;
            a later box covers an earlier one.
        seed: the background noise is a function of it.
        grey, noise: mean and standard deviation of the background's Gaussian noise (0-255).

    Returns:
        image: (H, W, 3) uint8.
        labels: (H, W) uint8, ``k`` where box ``k`` (counted from 1) is visible, 0 on the background.
    """
    rng = np.random.default_rng(seed)
    h, w = size
    img = np.clip(rng.normal(grey, noise, size=(h, w, 3)), 0, 255).astype(np.uint8)
    labels = np.zeros((h, w), np.uint8)
    for k, ((x0, y0, x1, y1), colour) in enumerate(boxes, start=1):
        img[y0:y1, x0:x1] = colour
        labels[y0:y1, x0:x1] = k
    return img, labels
