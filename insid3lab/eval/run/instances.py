"""Instance evaluation (``task="instances"``): one-shot instance segmentation scored with COCO mask AP.

For a benchmark with instance annotations (``instances(image_id)``, e.g.
:class:`~insid3lab.eval.datasets.cocojson.CocoJsonDataset`). One episode: the K references of its class
are set with ``set_reference(image, mask, label=class_name)``, the target's instances are
predicted with ``segment_instances(target)``; the ground truth is the target's instances of the
episode's class (its crowd regions as ``iscrowd``). Every episode is one image of the COCOeval
(:func:`~insid3lab.eval.metrics.instance_ap.instance_ap`), keyed by episode index, so AP / AP50 / AP75 and
per-class AP are taken over all episodes' targets.

Sizes: the instances are scored at the prediction's size, the ground truth brought to it with
nearest-neighbour as for semantic masks: S x S under protocol ``"paper"`` (the model's
``resize_to_orig_size`` is off for the run), the target's own size under ``"native"``.

A record holds what AP is recomputed from on resume: ``size`` [h, w], ``gt`` (each
``{"rle", "crowd"}``) and ``pred`` (each ``{"rle", "score"}``, at most ``MAX_DETECTIONS``, the
best-scored, as COCOeval keeps), masks as compressed COCO RLE strings.
"""

from __future__ import annotations

import numpy as np

from insid3lab.eval.metrics.segmentation import match_size
from insid3lab.eval.run.episodes import Episode

__all__ = [
    "MAX_DETECTIONS",
    "check_instances",
    "instance_episode",
    "instance_predictions",
    "instance_size",
    "instance_summary",
    "instance_truth",
]

MAX_DETECTIONS = 100  # COCOeval's largest maxDets


def check_instances(dataset, ways: int) -> None:
    """A ValueError (one line) unless ``dataset`` has instance annotations and the run is 1-way."""
    if not callable(getattr(dataset, "instances", None)):
        raise ValueError(
            f"task='instances' (--task instances) needs instance annotations; {dataset.name} has none "
            "(use --dataset coco_json)"
        )
    if ways != 1:
        raise ValueError(f"task='instances' scores one class per episode; ways={ways} is not allowed with it")


def _rle(mask) -> str:
    from insid3lab.eval.metrics.instance_ap import to_rle

    return to_rle(np.asarray(mask, dtype=bool))["counts"].decode("ascii")


def instance_size(model, image: np.ndarray) -> tuple[int, int]:
    """The size the model's masks come at: S x S without ``resize_to_orig_size``, else the image's."""
    if getattr(model, "resize_to_orig_size", True) is False:
        return int(model.image_size), int(model.image_size)
    return tuple(image.shape[:2])


def instance_episode(model, dataset, ep: Episode, ignore_value: int | None) -> dict:
    """Predict and record the instances of one episode (see the module docstring); returns the record's fields."""
    refs = [dataset.load(r, ep.class_index) for r in ep.references]
    tgt = dataset.load(ep.target, ep.class_index)
    model.clear_reference()
    for r in refs:
        model.set_reference(r.image, r.foreground, label=ep.class_name)
    found = model.segment_instances(tgt.image)
    size = instance_size(model, tgt.image)
    return {
        "target": tgt.image_path,
        "references": [r.image_path for r in refs],
        "size": list(size),
        "gt": instance_truth(dataset, ep, size),
        "pred": instance_predictions(found, size),
    }


def instance_predictions(found: list[dict], size: tuple[int, int]) -> list[dict]:
    """The record's ``pred`` of ``segment_instances``' output: the best-scored :data:`MAX_DETECTIONS` as RLE."""
    preds = []
    for k, inst in enumerate(found):
        m = np.asarray(inst["mask"].detach().cpu() if hasattr(inst["mask"], "detach") else inst["mask"]).astype(bool)
        if m.shape != size:
            raise ValueError(f"model.segment_instances: instance {k} has a {m.shape} mask; expected {size}")
        preds.append((float(inst["score"]), _rle(m)))
    preds = sorted(preds, key=lambda p: -p[0])[:MAX_DETECTIONS]
    return [{"rle": r, "score": s} for s, r in preds]


def instance_truth(dataset, ep: Episode, size: tuple[int, int]) -> list[dict]:
    """The record's ``gt``: the target's instances of the episode's class at ``size``, crowd regions marked."""
    image_id = ep.target["image_id"]
    return [{"rle": _rle(match_size(i.mask, size).numpy()), "crowd": int(crowd)}
            for crowd in (False, True) for i in dataset.instances(image_id, crowd=crowd)
            if i.category_index == ep.class_index]  # fmt: skip


def instance_summary(records: list[dict], class_names: list[str]) -> dict:
    """AP / AP50 / AP75 (fractions, COCOeval) and per-class AP over the good episode records."""
    from insid3lab.eval.metrics.instance_ap import instance_ap

    h_w = {}
    gt, pred = {}, {}
    for r in records:
        key = int(r["index"])
        h_w[key] = [int(v) for v in r["size"]]
        ci = int(r["class_index"]) + 1
        gt[key] = [{"category_id": ci, "segmentation": {"size": h_w[key], "counts": g["rle"]}, "iscrowd": g["crowd"]}
                   for g in r["gt"]]  # fmt: skip
        pred[key] = [{"category_id": ci, "segmentation": {"size": h_w[key], "counts": p["rle"]}, "score": p["score"]}
                     for p in r["pred"]]  # fmt: skip
    if not gt:
        nan = float("nan")
        return {"AP": nan, "AP50": nan, "AP75": nan, "per_class_AP": dict.fromkeys(class_names, nan),
                "images": 0, "ground_truth": 0, "predictions": 0}  # fmt: skip
    # category ids from 1 (COCO's convention): class index + 1
    return instance_ap(gt, pred, categories={ci + 1: n for ci, n in enumerate(class_names)})
