"""A small COCO export drawn by hand: images with red squares (polygons) and a blue disc (RLE), and its JSON."""

from __future__ import annotations

import json

import numpy as np
import pycocotools.mask as mask_api
from PIL import Image

H, W = 48, 64
RED, BLUE, GRAY = (220, 40, 40), (40, 80, 230), (128, 128, 128)
N_IMAGES = 12  # img_00 .. img_11, plus empty.png without annotations


def rect(x0, y0, x1, y1) -> np.ndarray:
    """(H, W) bool: columns x0..x1-1, rows y0..y1-1 (what pycocotools fills for the polygon with these corners)."""
    m = np.zeros((H, W), dtype=bool)
    m[y0:y1, x0:x1] = True
    return m


def square_polygon(x0, y0, x1, y1) -> list[float]:
    return [x0, y0, x1, y0, x1, y1, x0, y1]


def disc() -> np.ndarray:
    yy, xx = np.mgrid[:H, :W]
    return (xx - 44) ** 2 + (yy - 20) ** 2 <= 36


def uncompressed_rle(mask: np.ndarray) -> dict:
    """COCO's uncompressed RLE: run lengths over the column-major pixels, starting with a run of zeros."""
    flat = mask.flatten(order="F").astype(np.uint8)
    runs, cur, n = [], 0, 0
    for v in flat:
        if v != cur:
            runs.append(n)
            cur, n = v, 0
        n += 1
    runs.append(n)
    return {"size": [H, W], "counts": [int(r) for r in runs]}


def compressed_rle(mask: np.ndarray) -> dict:
    rle = mask_api.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [H, W], "counts": rle["counts"].decode("ascii")}


def square_box(i: int) -> tuple[int, int, int, int]:
    return (4 + i, 4, 16 + i, 16)


SECOND_SQUARE = (40, 28, 52, 40)  # in img_03
CROWD = (40, 30, 56, 40)  # a crowd region of "square" in img_05


def make_export(root, *, reverse: bool = False) -> tuple:
    """Images in ``root/images`` and ``root/export.json``: "square" (id 1, polygons) in img_00..09 (two in img_03,
    a crowd region in img_05), "blob" (id 7, RLE, compressed in odd images, uncompressed in even ones) in
    img_02..11, and empty.png without annotations. ``reverse`` writes every list in reverse order."""
    images_dir = root / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    images, anns = [], []

    def ann(image_id, cat, segm, crowd=0):
        anns.append(
            {
                "id": len(anns) + 1,
                "image_id": image_id,
                "category_id": cat,
                "segmentation": segm,
                "iscrowd": crowd,
                "area": 0,
                "bbox": [0, 0, 0, 0],
            }
        )

    for i in range(N_IMAGES + 1):
        name = f"img_{i:02d}.png" if i < N_IMAGES else "empty.png"
        img = np.zeros((H, W, 3), dtype=np.uint8) + np.array(GRAY, dtype=np.uint8)
        images.append({"id": 100 + i, "file_name": name, "width": W, "height": H})
        if i < N_IMAGES:
            if i < 10:
                img[rect(*square_box(i))] = RED
                ann(100 + i, 1, [square_polygon(*square_box(i))])
            if i == 3:
                img[rect(*SECOND_SQUARE)] = RED
                ann(100 + i, 1, [square_polygon(*SECOND_SQUARE)])
            if i == 5:
                img[rect(*CROWD)] = RED
                ann(100 + i, 1, uncompressed_rle(rect(*CROWD)), crowd=1)
            if i >= 2:
                img[disc()] = BLUE
                ann(100 + i, 7, compressed_rle(disc()) if i % 2 else uncompressed_rle(disc()))
        Image.fromarray(img).save(images_dir / name)
    doc = {
        "info": {"description": "hand-drawn"},
        "images": images,
        "annotations": anns,
        "categories": [{"id": 1, "name": "square"}, {"id": 7, "name": "blob"}],
    }
    if reverse:
        doc = {k: (v[::-1] if isinstance(v, list) else v) for k, v in doc.items()}
    path = root / ("export_reversed.json" if reverse else "export.json")
    path.write_text(json.dumps(doc))
    return images_dir, path, doc
