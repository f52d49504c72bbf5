"""Sample scenes to look at without any data on disk.

* :func:`cat_pair`: scikit-image's ``chelsea`` cat with a mask of its eyes, and a mirrored,
  cropped copy of it as the target with the mirrored mask as ground truth (needs
  ``scikit-image``, part of the ``lab`` extra).
* :func:`lesion_scene` and :func:`defect_scene`: generated small objects — a lesion-like blob on
  skin-like texture, a defect on a woven texture — with their exact masks, for any seed.
* :func:`write_folder_dataset`: such scenes written as an ``images/`` + ``masks/`` folder.

Every image is (H, W, 3) uint8 RGB and every mask (H, W) bool.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from scipy import ndimage

__all__ = ["cat_pair", "lesion_scene", "defect_scene", "write_folder_dataset", "SCENES"]

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
    return {"reference_image": img, "reference_mask": mask, "target_image": tgt, "target_mask": tmask,
            "name": "chelsea eyes"}


def _smooth_noise(rng: np.random.Generator, shape, sigma: float) -> np.ndarray:
    """Gaussian-filtered white noise scaled to zero mean and unit standard deviation."""
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
    soft = ndimage.gaussian_filter(mask.astype(np.float64), 0.8)
    tex = tex * (1 - 0.7 * soft)
    img = np.stack([tex * 0.97, tex, tex * 1.04], -1)
    return np.clip(img, 0, 255).astype(np.uint8), mask


#: Scene generators by name.
SCENES = {"lesion": lesion_scene, "defect": defect_scene}


def write_folder_dataset(root: str | os.PathLike, count: int = 6, *, kind: str = "lesion", size: int = 128,
                         seed: int = 0, class_name: str | None = None) -> Path:
    """Write ``count`` generated scenes as ``images/NNN.png`` and ``masks/NNN.png`` (0/255) under ``root``.

    This is the layout of :class:`insid3lab.eval.datasets.FolderDataset`: one class, or with
    ``class_name`` one class folder (``images/<class_name>/``, ``masks/<class_name>/``); call it once
    per class for a multi-class dataset.

    Returns:
        The root folder.
    """
    from PIL import Image

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
