"""Deterministic sample scenes: an object on a textured background, and its mask.

They let every command and notebook run without downloading anything. With
random weights the masks are meaningless; with real DINOv3 weights the object
(a striped, spotted ellipse) is found among distractors.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["sample_scene", "write_samples"]


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    base = rng.uniform(60, 190, size=3).astype(np.float32)
    ramp = (0.25 * (yy / h) + 0.15 * (xx / w))[..., None] * rng.uniform(-90, 90, size=3)
    noise = rng.normal(0, 10, size=(h, w, 3))
    return base + ramp + noise


def _object(img: np.ndarray, mask: np.ndarray, cy: float, cx: float, ry: float, rx: float, angle: float,
            colour: np.ndarray) -> None:
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


def sample_scene(seed: int = 0, size: tuple[int, int] = (240, 320), *, scale: float = 1.0,
                 distractors: int = 3) -> tuple[np.ndarray, np.ndarray]:
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
    img = _background(rng, h, w)
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
    _object(img, mask, cy, cx, ry, rx, rng.uniform(-0.6, 0.6), np.array([205.0, 60.0, 40.0]))
    return np.clip(img, 0, 255).astype(np.uint8), mask


def write_samples(folder: str | Path, *, targets: int = 3) -> list[Path]:
    """Write ``reference.png``, ``reference_mask.png`` (0/255) and ``target_1.png`` ... to ``folder``.

    Targets also get ``target_N_mask.png`` ground truth. Returns the written paths.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    img, mask = sample_scene(0)
    Image.fromarray(img).save(folder / "reference.png")
    Image.fromarray(mask.astype(np.uint8) * 255).save(folder / "reference_mask.png")
    out += [folder / "reference.png", folder / "reference_mask.png"]
    for i in range(1, targets + 1):
        img, mask = sample_scene(i, size=(240 + 16 * i, 320 - 24 * i), scale=1.0 - 0.15 * (i - 1))
        Image.fromarray(img).save(folder / f"target_{i}.png")
        Image.fromarray(mask.astype(np.uint8) * 255).save(folder / f"target_{i}_mask.png")
        out += [folder / f"target_{i}.png", folder / f"target_{i}_mask.png"]
    return out
