"""Files for a many-concept prediction: a palette label map, COCO-style instances and an overlay.

:func:`write_label_outputs` writes what :meth:`~insid3lab.INSID3.segment_labels` and
:meth:`~insid3lab.INSID3.segment_instances` give (also reachable as
``insid3lab.concepts.write_label_outputs``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from torch import Tensor

__all__ = ["write_label_outputs"]


def write_label_outputs(
    label_map, instances: Sequence[dict], names: Sequence[str], out_dir, stem: str, *, image=None
) -> dict[str, Path]:
    """Write a many-concept prediction: colour label map, instances JSON and an overlay with a legend.

    Args:
        label_map: (H, W) integer label map (0 background, i = ``names[i - 1]``).
        instances: from :meth:`~insid3lab.INSID3.segment_instances` (``label``, ``mask``, ``score``, ``box``).
        names: the concepts (``model.labels``).
        out_dir: folder (created when missing); stem: file name stem.
        image: the target image (path, PIL, array) to draw the overlay on; without it the overlay
            shows the label map's colours alone.

    Files:
        ``<stem>_labels.png``: a palette PNG whose pixel values are the labels (colours from
        :func:`insid3lab.viz.labels.concept_colours`); ``<stem>_instances.json``: COCO-style
        results, one entry per instance with ``segmentation`` as RLE (pycocotools ``mask.encode``),
        ``bbox`` [x, y, width, height], ``box`` [x0, y0, x1, y1], ``score``, ``category_id`` (the
        label) and ``category`` (its name), plus ``categories`` and ``image_size``;
        ``<stem>_overlay.png``: the overlay with a legend.

    Returns:
        ``{"labels": path, "instances": path, "overlay": path}``.
    """
    from PIL import Image
    from pycocotools import mask as mask_utils

    from .viz.common import to_png
    from .viz.labels import concept_colours, label_overlay

    lm = label_map.detach().cpu().numpy() if isinstance(label_map, Tensor) else np.asarray(label_map)
    if lm.ndim != 2 or not np.issubdtype(lm.dtype, np.integer):
        raise ValueError(f"label_map: expected an (H, W) integer array; got {lm.dtype} of shape {lm.shape}")
    if lm.size and (lm.min() < 0 or lm.max() > len(names)):
        raise ValueError(f"label_map holds values in [{lm.min()}, {lm.max()}] but names has {len(names)} concepts")
    if len(names) > 255:
        raise ValueError(f"names: a palette PNG holds at most 255 concepts; got {len(names)}")
    if not isinstance(stem, str) or not stem or os.sep in stem:
        raise ValueError(f"stem={stem!r}: must be a non-empty file name without a folder")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {k: out / f"{stem}_{k}.{ext}" for k, ext in (("labels", "png"), ("instances", "json"), ("overlay", "png"))}

    png = Image.fromarray(lm.astype(np.uint8), mode="P")
    colours = (np.asarray(concept_colours(len(names)), dtype=np.float64) * 255).round().astype(np.uint8)
    palette = np.zeros((256, 3), np.uint8)
    palette[1 : len(names) + 1] = colours
    png.putpalette(palette.reshape(-1).tolist())
    png.save(paths["labels"])

    H, W = lm.shape
    records = []
    for i, inst in enumerate(instances):
        m = inst["mask"].detach().cpu().numpy() if isinstance(inst["mask"], Tensor) else np.asarray(inst["mask"])
        rle = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
        x0, y0, x1, y1 = (int(v) for v in inst["box"])
        records.append(
            {
                "id": i + 1,
                "category_id": int(inst.get("label_id", list(names).index(inst["label"]) + 1)),
                "category": inst["label"],
                "score": float(inst["score"]),
                "bbox": [x0, y0, x1 - x0, y1 - y0],
                "box": [x0, y0, x1, y1],
                "area": int(m.sum()),
                "segmentation": {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")},
            }
        )
    doc = {
        "image_size": [H, W],
        "categories": [{"id": i + 1, "name": n} for i, n in enumerate(names)],
        "instances": records,
    }
    paths["instances"].write_text(json.dumps(doc, indent=1))
    paths["overlay"].write_bytes(to_png(label_overlay(lm, names, image=image), dpi=100))
    return paths
