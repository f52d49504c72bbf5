"""N-way episodes: one target, N classes with K shots each, scored as multi-class segmentation.

How an N-way episode is drawn (way 0 is the class the target was drawn for; N - 1 others):
:mod:`insid3lab.eval.run.episodes`. One episode here:

* the prediction: ``model.clear_reference()``, then ``set_reference(image, mask, label=name)`` for
  every shot of every way (the shots of one class pool as K-shot), then
  ``segment_labels(target)``; its labels are mapped back to the ways by name
  (label i is ``model.labels[i - 1]``).
* the ground truth: a label map over the ways, 0 background and ``w + 1`` for way ``w``, from
  ``dataset.load(target, class)`` of each way's class; a class whose load fails for the target
  (it is absent from that image) has no pixel. Pixels claimed by two or more ways are ignored
  (either answer would be right), as are pixels that any way's mask marks ``ignore_value``.
  Under protocol ``"paper"`` the label map is resized to the prediction's S x S with
  nearest-neighbour, as in the 1-way case.
* the counts: per way, the foreground intersection and union of label ``w + 1``; for the
  episode, those of the background (label 0). A record holds ``ways`` (the classes),
  ``intersection`` and ``union`` = ``[background, way 0, .., way N-1]``.
* the sums: each way's foreground counts go to its class in the per-class sums (so a class's
  IoU counts the episodes where it was one of the ways, and ``per_class_episodes`` counts
  those), the background counts to the class of way 0 (once per episode). mIoU is the mean
  foreground IoU over the benchmark's classes and FB-IoU the mean of background and
  foreground IoU from the summed counts, as for 1-way; ``ways=1`` gives exactly the 1-way
  numbers. The bootstrap resamples whole episodes.
"""

from __future__ import annotations

import numpy as np
import torch

from insid3lab.eval.datasets import BadSampleError
from insid3lab.eval.metrics.segmentation import match_size
from insid3lab.eval.run.episodes import Episode

__all__ = ["add_nway", "label_map_counts", "nway_counts", "nway_episode", "nway_truth", "set_nway_shots"]


def nway_truth(dataset, ep: Episode, ignore_value: int | None):
    """The target and its ground truth over the episode's ways.

    Returns:
        ``(target Sample of way 0, labels, ignore)``: labels (H, W) uint8, 0 background and
        ``w + 1`` way ``w``; ignore (H, W) bool (overlaps and ``ignore_value`` pixels).
    """
    classes = ep.classes
    tgt = dataset.load(ep.target, classes[0][0])  # the target's own class: a failure here is a bad sample
    h, w = tgt.mask.shape
    claims = np.zeros((h, w), dtype=np.uint8)
    labels = np.zeros((h, w), dtype=np.uint8)
    ignore = np.zeros((h, w), dtype=bool)
    for way, (ci, _) in enumerate(classes):
        if way == 0:
            mask = tgt.mask
        else:
            try:
                mask = dataset.load(ep.target, ci).mask
            except (BadSampleError, KeyError):
                continue  # the class is absent from the target image
            if mask.shape != (h, w):
                raise BadSampleError(
                    tgt.mask_path,
                    f"the mask of class {classes[way][1]!r} is {mask.shape[0]}x"
                    f"{mask.shape[1]} but the target is {h}x{w}",
                )
        fg = mask == 1
        claims += fg
        labels[fg] = way + 1
        if ignore_value is not None:
            ignore |= mask == ignore_value
    ignore |= claims > 1
    return tgt, labels, ignore


def _way_of_label(model_labels: list[str], names: list[str]) -> np.ndarray:
    """(L + 1,) int64: the way + 1 of each of the model's labels (0 for background)."""
    lut = np.zeros(len(model_labels) + 1, dtype=np.int64)
    for i, name in enumerate(model_labels):
        if name not in names:
            raise ValueError(f"model label {name!r} is not one of the episode's classes {names}")
        lut[i + 1] = names.index(name) + 1
    return lut


def set_nway_shots(model, dataset, ep: Episode) -> list[list]:
    """Load the episode's shots, way after way, and give them to ``model`` named by their class: the shots per way."""
    names = [n for _, n in ep.classes]
    shots = [[dataset.load(r, ci) for r in ep.references_of(way)] for way, (ci, _) in enumerate(ep.classes)]
    model.clear_reference()
    for way, refs in enumerate(shots):
        for r in refs:
            model.set_reference(r.image, r.foreground, label=names[way])
    return shots


def label_map_counts(model_labels: list[str], ep: Episode, label_map, labels, ignore) -> dict:
    """A predicted label map (label i is ``model_labels[i - 1]``) scored against the ways' ground truth
    (:func:`nway_truth`): ``ways``, ``intersection``, ``union`` (background, then the ways) and ``iou``."""
    classes = ep.classes
    names = [n for _, n in classes]
    pred = torch.as_tensor(label_map).detach().cpu().long()
    if pred.ndim != 2:
        raise ValueError(f"model.segment_labels returned a label map of shape {tuple(pred.shape)}; expected (H, W)")
    lut = torch.from_numpy(_way_of_label(model_labels, names))
    if int(pred.min()) < 0 or int(pred.max()) >= len(lut):
        raise ValueError(f"model.segment_labels returned labels outside 0..{len(lut) - 1}")
    pred = lut[pred]
    # the ground truth and its ignore region brought to the prediction's size (nearest), as in 1-way
    gt = match_size(labels, tuple(pred.shape)).long()
    valid = ~match_size(ignore, tuple(pred.shape))
    inter, union = [], []
    for k in range(len(classes) + 1):
        p, g = pred == k, gt == k
        inter.append(int((p & g & valid).sum()))
        union.append(int(((p | g) & valid).sum()))
    return {
        "ways": [int(ci) for ci, _ in classes],
        "intersection": inter,
        "union": union,
        "iou": [i / max(u, 1) for i, u in zip(inter[1:], union[1:])],
    }


def nway_episode(model, dataset, ep: Episode, ignore_value: int | None) -> dict:
    """Predict and score one N-way episode (the rule in the module docstring); returns its record's fields."""
    shots = set_nway_shots(model, dataset, ep)
    tgt, labels, ignore = nway_truth(dataset, ep, ignore_value)
    label_map, _ = model.segment_labels(tgt.image)
    return {
        "target": tgt.image_path,
        "references": [r.image_path for refs in shots for r in refs],
        **label_map_counts(list(model.labels), ep, label_map, labels, ignore),
    }


def add_nway(meter, rec: dict) -> None:
    """Add an N-way record's counts to a :class:`~insid3lab.eval.metrics.segmentation.SegmentationMeter` (rule above)."""
    inter, union = rec["intersection"], rec["union"]
    for way, ci in enumerate(rec["ways"]):
        bg_i, bg_u = (inter[0], union[0]) if way == 0 else (0, 0)
        meter.add(int(ci), [bg_i, inter[way + 1]], [bg_u, union[way + 1]])


def nway_counts(rec: dict) -> tuple:
    """(index, [class indices], (C,) ... ) of an N-way record for the bootstrap: see
    :func:`insid3lab.eval.metrics.stats.segmentation_resamples`."""
    return int(rec["index"]), [int(c) for c in rec["ways"]], list(rec["intersection"]), list(rec["union"])
