"""Files for a many-concept prediction: a palette label map, COCO-style instances and an overlay.

:func:`write_label_outputs` writes what :meth:`~insid3lab.INSID3.segment_labels` and
:meth:`~insid3lab.INSID3.segment_instances` give (also reachable as
``insid3lab.concepts.write_label_outputs``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

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

    Files (encoded by :func:`insid3lab.label_files.label_files`, which describes their content):
        ``<stem>_labels.png`` (palette PNG, pixel values = labels), ``<stem>_instances.json``
        (COCO-style RLE) and ``<stem>_overlay.png``.

    Returns:
        ``{"labels": path, "instances": path, "overlay": path}``.
    """
    from .label_files import label_files

    if not isinstance(stem, str) or not stem or os.sep in stem:
        raise ValueError(f"stem={stem!r}: must be a non-empty file name without a folder")
    files = label_files(label_map, instances, names, image=image)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ext = {"labels": "png", "instances": "json", "overlay": "png"}
    paths = {k: out / f"{stem}_{k}.{ext[k]}" for k in files}
    for k, data in files.items():
        paths[k].write_bytes(data)
    return paths
