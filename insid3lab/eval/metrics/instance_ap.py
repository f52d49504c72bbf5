"""COCO mask AP of predicted instances against ground-truth instances, computed by pycocotools' COCOeval.

>>> instance_ap({"a.jpg": [{"category_id": 1, "segmentation": gt_mask}]},
...             {"a.jpg": [{"category_id": 1, "segmentation": pred_mask, "score": 0.9}]},
...             categories={1: "cat"})  # doctest: +SKIP
{'AP': 1.0, 'AP50': 1.0, 'AP75': 1.0, 'per_class_AP': {'cat': 1.0}, ...}

The numbers are COCOeval's (``iouType="segm"``, IoU thresholds 0.50:0.05:0.95, 101
recall points, all areas, at most 100 detections per image), as fractions in [0, 1]:
AP is the mean over thresholds, recall points and the categories that have ground truth;
a category without ground truth has AP ``nan``. A detection matches a ground-truth
instance when their IoU is >= the threshold; one matched to a crowd region (``iscrowd``)
is neither a true nor a false positive. Images are numbered in sorted order of their keys
and detections keep their given order among equal scores, so the result is deterministic.
COCOeval's prints are captured, not shown.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Mapping, Sequence

import numpy as np

__all__ = ["instance_ap", "to_rle"]


def _mask_api():
    import pycocotools.mask as mask_api

    return mask_api


def to_rle(segmentation, where: str = "segmentation") -> dict:
    """A compressed RLE (``size``, ``counts`` bytes) of an (H, W) bool/0-1 array or an RLE dict (compressed or not)."""
    mask_api = _mask_api()
    with warnings.catch_warnings():
        # pycocotools' Cython code trips numpy 2's __array__(copy=...) deprecation; harmless
        warnings.filterwarnings("ignore", category=DeprecationWarning, module="pycocotools")
        if isinstance(segmentation, dict):
            try:
                h, w = (int(v) for v in segmentation["size"])
                counts = segmentation["counts"]
            except (KeyError, TypeError, ValueError) as e:
                raise ValueError(f"{where}: an RLE needs 'size' [height, width] and 'counts' ({e})") from e
            if isinstance(counts, list):
                return mask_api.frPyObjects([{"size": [h, w], "counts": counts}], h, w)[0]
            return {"size": [h, w], "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
        arr = np.asarray(segmentation)
        if arr.ndim != 2:
            raise ValueError(f"{where}: expected an (H, W) mask or an RLE dict; got an array of shape {arr.shape}")
        return mask_api.encode(np.asfortranarray(arr > 0, dtype=np.uint8))


def _prepare(per_image: Mapping, ids: dict, categories: set, kind: str, sizes: dict) -> list[dict]:
    anns = []
    for key, objs in per_image.items():
        if key not in ids:
            raise ValueError(f"predictions: image {key!r} has no entry in ground_truth (use an empty list for none)")
        for j, o in enumerate(objs):
            where = f"{kind}[{key!r}][{j}]"
            if not isinstance(o, Mapping) or "category_id" not in o or "segmentation" not in o:
                raise ValueError(
                    f"{where}: needs 'category_id' and 'segmentation'"
                    + (" and 'score'" if kind == "predictions" else "")
                )
            if o["category_id"] not in categories:
                raise ValueError(
                    f"{where}: category_id {o['category_id']!r} is not among categories {sorted(categories)}"
                )
            rle = to_rle(o["segmentation"], where)
            size = tuple(int(v) for v in rle["size"])
            if sizes.setdefault(key, size) != size:
                raise ValueError(
                    f"{where}: mask is {size[0]}x{size[1]} but image {key!r} has {sizes[key][0]}x{sizes[key][1]} masks"
                )
            ann = {
                "image_id": ids[key],
                "category_id": o["category_id"],
                "segmentation": rle,
                "iscrowd": int(bool(o.get("iscrowd", 0))),
                "id": len(anns) + 1,
            }
            if kind == "predictions":
                try:
                    ann["score"] = float(o["score"])
                except (KeyError, TypeError, ValueError) as e:
                    raise ValueError(f"{where}: needs a numeric 'score' ({e})") from e
                ann["iscrowd"] = 0
            anns.append(ann)
    return anns


def _coco(images: list[dict], cats: list[dict], anns: list[dict]):
    """A pycocotools COCO object holding ``anns`` (area and bbox from the masks; ids from 1)."""
    from pycocotools.coco import COCO

    mask_api = _mask_api()
    for a in anns:
        a["area"] = float(mask_api.area(a["segmentation"]))
        a["bbox"] = [float(v) for v in mask_api.toBbox(a["segmentation"])]
    coco = COCO()
    coco.dataset = {"images": images, "categories": cats, "annotations": anns}
    coco.createIndex()
    return coco


def _mean_valid(p: np.ndarray) -> float:
    v = p[p > -1]
    return float(v.mean()) if v.size else float("nan")


def instance_ap(ground_truth: Mapping, predictions: Mapping, *, categories: Sequence | Mapping) -> dict:
    """COCO mask AP / AP50 / AP75 and per-class AP of ``predictions`` against ``ground_truth``.

    Args:
        ground_truth: image key -> list of ``{"category_id", "segmentation", "iscrowd" (optional)}``
            for every evaluated image (an empty list for an image without objects).
        predictions: image key -> list of ``{"category_id", "segmentation", "score"}``; keys
            must appear in ``ground_truth``; a missing key means no prediction.
        categories: the category ids scored, or a mapping id -> name (per-class AP is keyed
            by name, else by id).

        A ``segmentation`` is an (H, W) bool array or an RLE dict (``pycocotools.mask.encode``,
        or uncompressed ``counts``); all masks of one image have the same size.

    Returns:
        ``{"AP", "AP50", "AP75"}`` (fractions; nan when no category has ground truth),
        ``"per_class_AP"`` (name or id -> AP, nan without ground truth), and the counts
        ``"images"``, ``"ground_truth"``, ``"predictions"``.
    """
    from pycocotools.cocoeval import COCOeval

    names = dict(categories) if isinstance(categories, Mapping) else {c: c for c in categories}
    if not names:
        raise ValueError("categories: give at least one category id")
    keys = sorted(ground_truth, key=str)
    ids = {k: n + 1 for n, k in enumerate(keys)}
    sizes: dict = {}
    gts = _prepare(ground_truth, ids, set(names), "ground_truth", sizes)
    dts = _prepare(predictions, ids, set(names), "predictions", sizes)
    images = [{"id": ids[k], "height": sizes.get(k, (0, 0))[0], "width": sizes.get(k, (0, 0))[1]} for k in keys]
    cats = [{"id": c, "name": str(n)} for c, n in names.items()]
    cat_ids = sorted(names, key=lambda c: (str(type(c)), c))

    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module="pycocotools")
        coco_gt = _coco(images, cats, gts)
        coco_dt = _coco([dict(i) for i in images], cats, dts)
        ev = COCOeval(coco_gt, coco_dt, iouType="segm")
        ev.params.imgIds = [ids[k] for k in keys]
        ev.params.catIds = cat_ids
        ev.evaluate()
        ev.accumulate()
    # precision: [thresholds T, recall points R, categories K, area ranges A, max detections M]
    prec = ev.eval["precision"][:, :, :, 0, -1]
    thr = ev.params.iouThrs
    per_class = {names[c]: _mean_valid(prec[:, :, k]) for k, c in enumerate(cat_ids)}
    return {
        "AP": _mean_valid(prec),
        "AP50": _mean_valid(prec[np.flatnonzero(np.isclose(thr, 0.5))]),
        "AP75": _mean_valid(prec[np.flatnonzero(np.isclose(thr, 0.75))]),
        "per_class_AP": per_class,
        "images": len(keys),
        "ground_truth": sum(1 for a in gts if not a["iscrowd"]),
        "predictions": len(dts),
    }
