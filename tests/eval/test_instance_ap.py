"""Instance AP: hand-made predictions with answers computed by hand, and equality with pycocotools' own summary."""

from __future__ import annotations

import contextlib
import io
import math

import numpy as np
import pycocotools.mask as mask_api
import pytest
from helpers.cocojson import make_export
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from insid3lab.eval.datasets.cocojson import CocoJsonDataset
from insid3lab.eval.metrics.instance_ap import instance_ap

H, W = 64, 64
#: COCO's IoU thresholds 0.50, 0.55, ..., 0.95; a detection counts at threshold t when IoU >= t
THRESHOLDS = [0.5 + 0.05 * k for k in range(10)]


def box(x0, y0, x1, y1) -> np.ndarray:
    m = np.zeros((H, W), dtype=bool)
    m[y0:y1, x0:x1] = True
    return m


def gt(cat, mask, crowd=0) -> dict:
    return {"category_id": cat, "segmentation": mask, "iscrowd": crowd}


def det(cat, mask, score) -> dict:
    return {"category_id": cat, "segmentation": mask, "score": score}


def passed(iou: float) -> int:
    """How many thresholds an IoU passes (>=); the thresholds are written out to avoid float round-off."""
    return sum(iou >= t for t in (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95))


def test_a_perfect_prediction_scores_one():
    a, b, c = box(2, 2, 20, 20), box(30, 30, 50, 44), box(5, 40, 25, 60)
    truth = {"x.png": [gt(1, a), gt(1, b), gt(2, c)], "y.png": []}
    preds = {"x.png": [det(1, a, 0.9), det(1, b, 0.8), det(2, c, 0.7)]}
    r = instance_ap(truth, preds, categories={1: "cat", 2: "dog"})
    assert r["AP"] == pytest.approx(1.0) and r["AP50"] == pytest.approx(1.0) and r["AP75"] == pytest.approx(1.0)
    assert r["per_class_AP"] == pytest.approx({"cat": 1.0, "dog": 1.0})
    assert (r["images"], r["ground_truth"], r["predictions"]) == (2, 3, 3)


@pytest.mark.parametrize(
    "side, shift, iou",
    [
        (20, 5, 0.6),  # intersection 20*15 = 300, union 20*25 = 500
        (28, 4, 0.75),  # 28*24 / (28*32) = 0.75: on a threshold, which counts (IoU >= t)
        (20, 2, 18 / 22),  # 0.818...: passes 0.50 .. 0.80
        (20, 8, 12 / 28),  # 0.43: passes none
    ],
)
def test_a_shifted_prediction_passes_the_thresholds_up_to_its_iou(side, shift, iou):
    g, p = box(4, 4, 4 + side, 4 + side), box(4 + shift, 4, 4 + side + shift, 4 + side)
    assert (g & p).sum() / (g | p).sum() == iou
    r = instance_ap({"a": [gt(1, g)]}, {"a": [det(1, p, 0.9)]}, categories=[1])
    # one ground truth, one detection: precision 1 at every recall where it matches, else 0
    assert r["AP"] == pytest.approx(passed(iou) / 10)
    assert r["AP50"] == pytest.approx(float(iou >= 0.5)) and r["AP75"] == pytest.approx(float(iou >= 0.75))
    assert passed(0.6) == 3 and passed(0.75) == 6 and passed(18 / 22) == 7 and passed(12 / 28) == 0


def test_a_false_positive_scored_above_a_true_positive_lowers_ap_by_the_known_amount():
    g1, g2, far = box(2, 2, 20, 20), box(30, 30, 50, 50), box(40, 2, 60, 20)
    truth = {"a": [gt(1, g1)], "b": [gt(1, g2)]}
    clean = instance_ap(truth, {"a": [det(1, g1, 0.9)], "b": [det(1, g2, 0.7)]}, categories=[1])
    assert clean["AP"] == pytest.approx(1.0)
    # ranked: TP (0.9), FP (0.8), TP (0.7): precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1.
    # Interpolated precision is 1 at the 51 recall points 0.00..0.50 and 2/3 at the 50 points 0.51..1.00.
    r = instance_ap(truth, {"a": [det(1, g1, 0.9), det(1, far, 0.8)], "b": [det(1, g2, 0.7)]}, categories=[1])
    expected = (51 * 1 + 50 * 2 / 3) / 101  # = 253/303
    assert r["AP"] == pytest.approx(expected, abs=1e-12) and r["AP50"] == pytest.approx(expected, abs=1e-12)
    assert clean["AP"] - r["AP"] == pytest.approx(50 / 303, abs=1e-12)
    # the false positive ranked last costs nothing: every recall is reached at precision 1
    last = instance_ap(truth, {"a": [det(1, g1, 0.9), det(1, far, 0.1)], "b": [det(1, g2, 0.7)]}, categories=[1])
    assert last["AP"] == pytest.approx(1.0)
    # one ground truth, the false positive first: precision 1/2 at recall 1
    half = instance_ap({"a": [gt(1, g1)]}, {"a": [det(1, far, 0.9), det(1, g1, 0.8)]}, categories=[1])
    assert half["AP"] == pytest.approx(0.5)


def test_a_detection_on_a_crowd_region_is_not_a_false_positive():
    inst, crowd = box(2, 2, 20, 20), box(30, 30, 60, 60)
    preds = {"a": [det(1, crowd, 0.9), det(1, inst, 0.8)]}
    assert instance_ap({"a": [gt(1, inst), gt(1, crowd, crowd=1)]}, preds, categories=[1])["AP"] == pytest.approx(1.0)
    assert instance_ap({"a": [gt(1, inst)]}, preds, categories=[1])["AP"] == pytest.approx(0.5)


def test_per_class_ap_and_classes_without_ground_truth():
    a, b = box(2, 2, 22, 22), box(30, 30, 50, 50)
    b_shift = box(35, 30, 55, 50)  # IoU 0.6 with b
    r = instance_ap(
        {"a": [gt(1, a), gt(2, b)]},
        {"a": [det(1, a, 0.9), det(2, b_shift, 0.9)]},
        categories={1: "cat", 2: "dog", 3: "bird"},
    )
    assert r["per_class_AP"]["cat"] == pytest.approx(1.0) and r["per_class_AP"]["dog"] == pytest.approx(0.3)
    assert math.isnan(r["per_class_AP"]["bird"])
    assert r["AP"] == pytest.approx(0.65) and r["AP75"] == pytest.approx(0.5)
    empty = instance_ap({"a": []}, {}, categories=[1])
    assert math.isnan(empty["AP"])


def test_masks_and_rle_give_the_same_numbers_in_any_order():
    a, b, c = box(2, 2, 22, 22), box(30, 30, 50, 50), box(4, 4, 24, 24)
    truth = {"p": [gt(1, a)], "q": [gt(1, b)]}
    preds = {"q": [det(1, b, 0.5)], "p": [det(1, c, 0.8), det(1, b, 0.3)]}
    base = instance_ap(truth, preds, categories=[1])

    def rle(m, as_text):
        r = mask_api.encode(np.asfortranarray(m.astype(np.uint8)))
        return {"size": r["size"], "counts": r["counts"].decode() if as_text else r["counts"]}

    for as_text in (False, True):
        conv = {k: [{**d, "segmentation": rle(d["segmentation"], as_text)} for d in v] for k, v in preds.items()}
        gconv = {k: [{**d, "segmentation": rle(d["segmentation"], as_text)} for d in v] for k, v in truth.items()}
        assert instance_ap(gconv, conv, categories=[1]) == base
    shuffled = {"p": preds["p"][::-1], "q": preds["q"]}
    assert instance_ap(dict(reversed(list(truth.items()))), shuffled, categories=[1]) == base


def test_equal_to_pycocotools_own_summary():
    """A mixed case scored through COCO files and COCOeval.summarize() gives the same AP, AP50, AP75."""
    rng = np.random.default_rng(0)
    truth, preds = {}, {}
    images, gt_anns, dt_anns = [], [], []
    for i in range(4):
        key = f"im{i}"
        truth[key], preds[key] = [], []
        images.append({"id": i + 1, "height": H, "width": W})
        for _ in range(3):
            cat = int(rng.integers(1, 3))
            x, y = (int(v) for v in rng.integers(0, 40, size=2))
            g = box(x, y, x + 20, y + 20)
            dx, dy = (int(v) for v in rng.integers(-6, 7, size=2))
            p = box(max(x + dx, 0), max(y + dy, 0), x + dx + 20, y + dy + 20)
            score = float(rng.random())
            truth[key].append(gt(cat, g))
            preds[key].append(det(cat, p, score))
            for anns, m, extra in ((gt_anns, g, {"iscrowd": 0}), (dt_anns, p, {"score": score})):
                r = mask_api.encode(np.asfortranarray(m.astype(np.uint8)))
                anns.append(
                    {
                        "id": len(anns) + 1,
                        "image_id": i + 1,
                        "category_id": cat,
                        "segmentation": r,
                        "area": float(mask_api.area(r)),
                        "bbox": list(mask_api.toBbox(r)),
                        **extra,
                    }
                )
    ours = instance_ap(truth, preds, categories=[1, 2])
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = {"images": images, "annotations": gt_anns, "categories": [{"id": 1}, {"id": 2}]}
        coco_gt.createIndex()
        ev = COCOeval(coco_gt, coco_gt.loadRes(dt_anns), iouType="segm")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    assert 0.0 < ev.stats[0] < 1.0
    assert [ours["AP"], ours["AP50"], ours["AP75"]] == pytest.approx(list(ev.stats[:3]), abs=1e-12)


def test_prints_are_captured(capsys):
    instance_ap({"a": [gt(1, box(0, 0, 8, 8))]}, {"a": [det(1, box(0, 0, 8, 8), 1.0)]}, categories=[1])
    assert capsys.readouterr().out == ""


def test_bad_input_is_named():
    g = box(0, 0, 8, 8)
    with pytest.raises(ValueError, match=r"image 'b' has no entry in ground_truth"):
        instance_ap({"a": [gt(1, g)]}, {"b": [det(1, g, 1.0)]}, categories=[1])
    with pytest.raises(ValueError, match=r"predictions\['a'\]\[0\]: category_id 5 is not among categories \[1\]"):
        instance_ap({"a": [gt(1, g)]}, {"a": [det(5, g, 1.0)]}, categories=[1])
    with pytest.raises(ValueError, match=r"mask is 10x10 but image 'a' has 64x64 masks"):
        instance_ap({"a": [gt(1, g)]}, {"a": [det(1, np.ones((10, 10), bool), 1.0)]}, categories=[1])
    with pytest.raises(ValueError, match="needs a numeric 'score'"):
        instance_ap({"a": [gt(1, g)]}, {"a": [{"category_id": 1, "segmentation": g}]}, categories=[1])


def test_ground_truth_from_a_coco_json_dataset(tmp_path):
    """The dataset's instances are the ground truth; predicting them exactly gives AP 1, dropping one halves recall."""
    images_dir, path, _ = make_export(tmp_path)
    ds = CocoJsonDataset(images_dir, annotations=path, reference_split=None)
    cats = {ds.category_ids[k]: n for k, n in enumerate(ds.class_names)}
    truth, preds = {}, {}
    for iid in ds.image_ids:
        objs = [gt(ds.category_ids[i.category_index], i.mask) for i in ds.instances(iid)]
        objs += [gt(ds.category_ids[i.category_index], i.mask, crowd=1) for i in ds.instances(iid, crowd=True)]
        truth[iid] = objs
        preds[iid] = [det(o["category_id"], o["segmentation"], 0.5) for o in objs if not o["iscrowd"]]
    r = instance_ap(truth, preds, categories=cats)
    assert r["AP"] == pytest.approx(1.0) and r["ground_truth"] == 11 + 10
    preds[103] = [d for d in preds[103] if d["category_id"] != 7]  # img_03 loses its blob: 9 of 10 blobs found
    r = instance_ap(truth, preds, categories=cats)
    # blob: precision 1 up to recall 0.9 (91 of 101 recall points), none beyond
    assert r["per_class_AP"] == pytest.approx({"square": 1.0, "blob": 91 / 101})
