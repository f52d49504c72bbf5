"""One 1-way segmentation episode: its shots given to the model, its prediction scored against the target's mask."""

from __future__ import annotations

import torch

from insid3lab.eval.metrics.segmentation import intersection_union, match_size
from insid3lab.eval.run.episodes import Episode

__all__ = ["mask_counts", "segment_episode", "set_shots"]


def set_shots(model, dataset, ep: Episode, *, label: str | None = None) -> tuple[list, object]:
    """Load the episode's references and target and give the references to ``model``: (references, target)."""
    refs = [dataset.load(r, ep.class_index) for r in ep.references]
    tgt = dataset.load(ep.target, ep.class_index)
    model.clear_reference()
    for r in refs:
        if label is None:
            model.set_reference(r.image, r.foreground)
        else:
            model.set_reference(r.image, r.foreground, label=label)
    return refs, tgt


def mask_counts(pred, tgt, ignore_value: int | None, *, truths: dict | None = None) -> dict:
    """A predicted (H, W) mask scored against the target's mask: ``intersection``, ``union`` (background,
    foreground) and ``iou``. ``truths``: a dict keeping the resized ground truth per prediction size (for many
    predictions of one target)."""
    pred = torch.as_tensor(pred).detach().cpu()
    if pred.ndim != 2:
        raise ValueError(f"model.segment returned shape {tuple(pred.shape)}; expected (H, W)")
    # the ground truth (and its ignore region) is brought to the prediction's size with nearest-neighbour
    # F.interpolate, as the authors' inference_segmentation.evaluate does; the prediction is S x S under
    # protocol "paper" and at the target's own size under "native"
    truths = {} if truths is None else truths
    if tuple(pred.shape) not in truths:
        gt = match_size(tgt.mask, tuple(pred.shape))
        ignore = None if ignore_value is None else gt == ignore_value
        truths[tuple(pred.shape)] = (gt == 1, ignore if ignore is not None and bool(ignore.any()) else None)
    inter, union = intersection_union(pred, *truths[tuple(pred.shape)])
    i, u = inter.tolist(), union.tolist()
    return {"intersection": i, "union": u, "iou": i[1] / max(u[1], 1)}


def segment_episode(model, dataset, ep: Episode, ignore_value: int | None) -> dict:
    """Predict and score one 1-way episode with ``model.segment``; returns its record's fields."""
    refs, tgt = set_shots(model, dataset, ep)
    pred = model.segment(tgt.image)
    return {
        "target": tgt.image_path,
        "references": [r.image_path for r in refs],
        **mask_counts(pred, tgt, ignore_value),
    }
