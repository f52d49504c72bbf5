"""Colours and palette PNGs: the DAVIS (PASCAL VOC) palette, the colours of concepts, the void label.

A palette PNG stores a label per pixel (its palette index) and shows it in colour: the DAVIS
toolkit's annotations, the tracker's outputs and the many-concept label maps all use one.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["VOID", "concept_colours", "davis_palette", "read_label_map", "save_palette_png"]

#: The label of pixels that belong to no object and are not scored (DAVIS's 255).
VOID = 255


def concept_colours(n: int) -> np.ndarray:
    """(n, 3) RGB colours in [0, 1] for concepts 1..n (the label PNG's palette uses the same)."""
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return np.asarray([cmap(i % cmap.N)[:3] for i in range(n)], dtype=np.float64)


def davis_palette() -> np.ndarray:
    """The DAVIS (PASCAL VOC) palette, (256, 3) uint8.

    Colour ``i``: bit ``3j + c`` of ``i`` (c = 0 red, 1 green, 2 blue) becomes bit ``7 - j`` of
    channel ``c``. Index 1 is (128, 0, 0), 2 is (0, 128, 0), 3 is (128, 128, 0), 255 is (224, 224, 192).
    """
    idx = np.arange(256)
    pal = np.zeros((256, 3), dtype=np.int64)
    for j in range(8):
        for c in range(3):
            pal[:, c] |= ((idx >> (3 * j + c)) & 1) << (7 - j)
    return pal.astype(np.uint8)


def save_palette_png(label_map, path: str | os.PathLike) -> Path:
    """Write an (H, W) label map (values 0..255) as a palette PNG with the DAVIS palette; returns the path."""
    a = np.asarray(label_map)
    if a.dtype == np.bool_:
        a = a.astype(np.uint8)
    if a.ndim != 2 or not np.issubdtype(a.dtype, np.integer):
        raise ValueError(
            f"label map for {str(path)!r}: expected an (H, W) integer array; got shape {a.shape}, dtype {a.dtype}"
        )
    if a.size and (a.min() < 0 or a.max() > 255):
        raise ValueError(f"label map for {str(path)!r}: values must lie in 0..255; got {a.min()}..{a.max()}")
    p = Path(path).expanduser()
    p.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(a.astype(np.uint8))  # mode L; putpalette makes it P with the indices kept
    img.putpalette(davis_palette().ravel().tolist())
    img.save(p)
    return p


def read_label_map(path: str | os.PathLike) -> np.ndarray:
    """The (H, W) uint8 label map of a palette (or grayscale) PNG: the palette indices, not the colours."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"annotation {str(p)!r}: no such file")
    try:
        with Image.open(p) as img:
            img.load()
            mode = img.mode
            arr = np.array(img)
    except OSError as e:
        raise ValueError(f"annotation {str(p)!r} cannot be read as an image ({type(e).__name__}: {e})") from e
    if mode not in ("P", "L", "1", "I", "I;16"):
        raise ValueError(
            f"annotation {str(p)!r} is a {mode} image; expected a palette (P) or grayscale PNG of object ids"
        )
    if arr.size and (arr.min() < 0 or arr.max() > 255):
        raise ValueError(f"annotation {str(p)!r}: object ids must lie in 0..255; got {arr.min()}..{arr.max()}")
    return arr.astype(np.uint8)
