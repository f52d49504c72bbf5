"""The files of a many-concept prediction: each encoded by one function to bytes, and written together.

- :func:`label_png`: the label map as a palette PNG whose pixel values are the labels (colours
  from :func:`insid3lab.core.palette.concept_colours`, background black);
- :func:`instances_json`: COCO-style results, one entry per instance with ``segmentation`` as
  RLE (pycocotools ``mask.encode``), ``bbox`` [x, y, width, height], ``box`` [x0, y0, x1, y1],
  ``score``, ``area``, ``category_id`` (the label) and ``category`` (its name), plus
  ``categories`` and ``image_size``;
- :func:`overlay_png`: the label map over the image at the image's own size, a title above and a
  legend beside it (drawn with PIL, so the canvas fits the content).

:func:`label_files` gives all of them as ``{kind: bytes}``; :func:`write_label_outputs` writes
them into a folder, and the command line's output folder writes them under its own rules.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from torch import Tensor

from insid3lab.core.files import json_text, write_atomic
from insid3lab.core.imageio import read_rgb_array
from insid3lab.core.palette import concept_colours

__all__ = ["LABEL_FILES", "check_label_map", "instances_document", "instances_json", "label_files", "label_png",
           "overlay_png", "write_label_outputs"]  # fmt: skip

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
    return json_text(instances_document(instances, names, image_size), indent=1).encode("utf-8")


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one bitmap size
        return ImageFont.load_default()


def overlay_png(label_map, names: Sequence[str], *, image=None, title: str = "label map", alpha: float = 0.55) -> bytes:
    """PNG bytes of the label map over ``image`` (or over black) with a title and a legend.

    The image keeps its own size (a label map of another size is scaled to it, nearest); the
    title lines sit above it and the legend (one swatch and ``"<label> <name>"`` per concept) to
    its right, so nothing is cut whatever the title's length or the number of concepts.
    """
    from PIL import Image, ImageDraw

    lm = check_label_map(label_map, names)
    colours = np.vstack([np.zeros((1, 3)), concept_colours(len(names))]) * 255.0
    if image is None:
        base = np.zeros((*lm.shape, 3), np.float64)
    else:
        base = read_rgb_array(image, what="overlay image").astype(np.float64)
        if base.shape[:2] != lm.shape:
            resized = Image.fromarray(lm.astype(np.uint8)).resize(base.shape[1::-1], Image.NEAREST)
            lm = np.asarray(resized).astype(lm.dtype)
    fg = (lm > 0)[..., None]
    rgb = colours[lm.clip(0, len(names))]
    blended = np.where(fg, (1 - alpha) * base + alpha * rgb, base) if image is not None else rgb
    picture = Image.fromarray(blended.round().clip(0, 255).astype(np.uint8))
    h, w = lm.shape
    size = max(11, min(18, round(max(h, w) / 32)))
    font, pad, row = _font(size), size // 2, size + size // 2
    lines = str(title).splitlines() or [""]
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    text_w = lambda t: int(np.ceil(measure.textlength(t, font=font)))  # noqa: E731
    legend = [f"{i + 1} {n}" for i, n in enumerate(names)]
    legend_w = (row + max(map(text_w, legend)) + 2 * pad) if legend else 0
    title_h = pad + row * len(lines)
    width = max(w + legend_w, max(map(text_w, lines)) + 2 * pad)
    height = title_h + max(h, pad + row * len(legend))
    canvas = Image.new("RGB", (width, height), "white")
    canvas.paste(picture, (0, title_h))
    draw = ImageDraw.Draw(canvas)
    for i, line in enumerate(lines):
        draw.text((pad, pad // 2 + i * row), line, fill="black", font=font)
    for i, text in enumerate(legend):
        x, y = w + pad, title_h + pad + i * row
        draw.rectangle([x, y, x + size, y + size], fill=tuple(int(c) for c in colours[i + 1]), outline="black")
        draw.text((x + size + pad, y), text, fill="black", font=font)
    buf = io.BytesIO()
    canvas.save(buf, format="PNG")
    return buf.getvalue()


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

    Files: ``<stem>_labels.png`` (palette PNG, pixel values = labels), ``<stem>_instances.json``
    (COCO-style RLE) and ``<stem>_overlay.png`` (see :func:`label_files`).

    Returns:
        ``{"labels": path, "instances": path, "overlay": path}``.
    """
    if not isinstance(stem, str) or not stem or os.sep in stem:
        raise ValueError(f"stem={stem!r}: must be a non-empty file name without a folder")
    files = label_files(label_map, instances, names, image=image)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ext = {"labels": "png", "instances": "json", "overlay": "png"}
    paths = {k: out / f"{stem}_{k}.{ext[k]}" for k in files}
    for k, data in files.items():
        write_atomic(paths[k], data)
    return paths
