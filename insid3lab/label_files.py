"""The files of a many-concept prediction, each encoded by one function to bytes.

- :func:`label_png`: the label map as a palette PNG whose pixel values are the labels (colours
  from :func:`insid3lab.viz.labels.concept_colours`, background black);
- :func:`instances_json`: COCO-style results, one entry per instance with ``segmentation`` as
  RLE (pycocotools ``mask.encode``), ``bbox`` [x, y, width, height], ``box`` [x0, y0, x1, y1],
  ``score``, ``area``, ``category_id`` (the label) and ``category`` (its name), plus
  ``categories`` and ``image_size``;
- :func:`overlay_png`: the label map over the image with a legend.

:func:`label_files` gives all of them as ``{kind: bytes}``; whoever writes them
(:func:`insid3lab.concepts.write_label_outputs`, the command line's output folder) decides
where and how.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence

import numpy as np
from torch import Tensor

__all__ = ["LABEL_FILES", "check_label_map", "instances_document", "instances_json", "label_files", "label_png",
           "overlay_png"]  # fmt: skip

#: The kinds of file of a many-concept prediction, in the order they are written.
LABEL_FILES = ("labels", "instances", "overlay")


def check_label_map(label_map, names: Sequence[str]) -> np.ndarray:
    """``label_map`` as an (H, W) integer array with values in [0, len(names)].

    Raises:
        ValueError: another shape or dtype, a value outside the concepts, more than 255 concepts.
    """
    lm = label_map.detach().cpu().numpy() if isinstance(label_map, Tensor) else np.asarray(label_map)
    if lm.ndim != 2 or not np.issubdtype(lm.dtype, np.integer):
        raise ValueError(f"label_map: expected an (H, W) integer array; got {lm.dtype} of shape {lm.shape}")
    if lm.size and (lm.min() < 0 or lm.max() > len(names)):
        raise ValueError(f"label_map holds values in [{lm.min()}, {lm.max()}] but names has {len(names)} concepts")
    if len(names) > 255:
        raise ValueError(f"names: a palette PNG holds at most 255 concepts; got {len(names)}")
    return lm


def label_png(label_map, names: Sequence[str]) -> bytes:
    """PNG bytes of the label map in palette mode: pixel value i is concept ``names[i - 1]``, 0 background."""
    from PIL import Image

    from .viz.labels import concept_colours

    lm = check_label_map(label_map, names)
    png = Image.fromarray(lm.astype(np.uint8), mode="P")
    palette = np.zeros((256, 3), np.uint8)
    palette[1 : len(names) + 1] = (np.asarray(concept_colours(len(names))) * 255).round().astype(np.uint8)
    png.putpalette(palette.reshape(-1).tolist())
    buf = io.BytesIO()
    png.save(buf, format="PNG")
    return buf.getvalue()


def instances_document(instances: Sequence[dict], names: Sequence[str], image_size: tuple[int, int]) -> dict:
    """The COCO-style results of ``instances`` (from :meth:`~insid3lab.INSID3.segment_instances`) as a dict.

    Args:
        instances: dicts with ``label``, ``mask`` (H, W) bool, ``score``, ``box`` (x0, y0, x1, y1), and
            optionally ``label_id``.
        names: the concepts (``model.labels``); image_size: (H, W) of the masks.
    """
    from pycocotools import mask as mask_utils

    records = []
    for i, inst in enumerate(instances):
        m = inst["mask"].detach().cpu().numpy() if isinstance(inst["mask"], Tensor) else np.asarray(inst["mask"])
        rle = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
        x0, y0, x1, y1 = (int(v) for v in inst["box"])
        records.append({
            "id": i + 1,
            "category_id": int(inst.get("label_id", list(names).index(inst["label"]) + 1)),
            "category": inst["label"],
            "score": float(inst["score"]),
            "bbox": [x0, y0, x1 - x0, y1 - y0],
            "box": [x0, y0, x1, y1],
            "area": int(m.sum()),
            "segmentation": {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")},
        })  # fmt: skip
    return {
        "image_size": [int(image_size[0]), int(image_size[1])],
        "categories": [{"id": i + 1, "name": n} for i, n in enumerate(names)],
        "instances": records,
    }


def instances_json(instances: Sequence[dict], names: Sequence[str], image_size: tuple[int, int]) -> bytes:
    """UTF-8 JSON bytes of :func:`instances_document`."""
    return json.dumps(instances_document(instances, names, image_size), indent=1).encode("utf-8")


def overlay_png(label_map, names: Sequence[str], *, image=None, title: str = "label map", dpi: int = 100) -> bytes:
    """PNG bytes of :func:`insid3lab.viz.labels.label_overlay`: the label map over ``image`` with a legend."""
    from .viz.common import to_png
    from .viz.labels import label_overlay

    return to_png(label_overlay(check_label_map(label_map, names), names, image=image, title=title), dpi=dpi)


def label_files(label_map, instances: Sequence[dict], names: Sequence[str], *, image=None,
                kinds: Sequence[str] = LABEL_FILES, title: str = "label map") -> dict[str, bytes]:  # fmt: skip
    """The encoded files of one prediction: ``{kind: bytes}`` for each kind in ``kinds`` (of :data:`LABEL_FILES`).

    Args:
        label_map: (H, W) integer label map (0 background, i = ``names[i - 1]``).
        instances: from :meth:`~insid3lab.INSID3.segment_instances`.
        names: the concepts (``model.labels``).
        image: the target (path, PIL, array) under the overlay; without it the overlay shows the colours alone.
        title: the overlay's title.
    """
    bad = [k for k in kinds if k not in LABEL_FILES]
    if bad:
        raise ValueError(f"kinds: {bad[0]!r} is not one of {', '.join(LABEL_FILES)}")
    lm = check_label_map(label_map, names)
    encode = {
        "labels": lambda: label_png(lm, names),
        "instances": lambda: instances_json(instances, names, lm.shape),
        "overlay": lambda: overlay_png(lm, names, image=image, title=title),
    }
    return {k: encode[k]() for k in LABEL_FILES if k in kinds}
