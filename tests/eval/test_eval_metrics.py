"""Segmentation and keypoint metrics against hand computations and an independent histogram path."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from insid3lab.eval.metrics.segmentation import (
    KeypointMeter,
    SegmentationMeter,
    intersection_union,
    match_size,
    pck_hits,
)

PRED = np.array([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]], dtype=bool)
GT = np.array([[0, 1, 1, 0], [0, 1, 1, 0], [0, 0, 0, 0], [0, 0, 0, 0]], dtype=bool)


def test_intersection_union_by_hand():
    inter, union = intersection_union(PRED, GT)
    # fg: both at (0,1),(1,1) -> 2; either: 6 cells.  bg: neither: 16 - 6 = 10; not both: 16 - 2 = 14
    assert inter.tolist() == [10, 2]
    assert union.tolist() == [14, 6]
    assert inter.dtype == torch.int64


def test_ignore_pixels_leave_both_prediction_and_truth():
    ignore = np.zeros((4, 4), dtype=bool)
    ignore[3] = True  # 4 background pixels
    inter, union = intersection_union(PRED, GT, ignore)
    assert inter.tolist() == [6, 2] and union.tolist() == [10, 6]
    ignore = np.zeros((4, 4), dtype=bool)
    ignore[0, 0] = True  # predicted fg, true bg: leaves fg union and bg union
    inter, union = intersection_union(torch.from_numpy(PRED), torch.from_numpy(GT), torch.from_numpy(ignore))
    assert inter.tolist() == [10, 2] and union.tolist() == [13, 5]


def _histogram_path(pred: np.ndarray, gt: np.ndarray, ignore: np.ndarray | None):
    """The literature's formulation: mark ignored pixels 255 in both, histogram the agreeing values over {0, 1}."""
    p = pred.astype(np.float64)
    g = gt.astype(np.float64)
    if ignore is not None:
        g = g + ignore * 255
        p[g == 255] = 255
    agree = p[p == g]
    hist = lambda v: np.array([(v == 0).sum(), (v == 1).sum()])  # noqa: E731
    i = hist(agree)
    return i, hist(p) + hist(g) - i


def test_matches_histogram_formulation_on_random_masks():
    rng = np.random.default_rng(0)
    for _ in range(20):
        pred = rng.random((23, 31)) < 0.4
        gt = rng.random((23, 31)) < 0.3
        ignore = (rng.random((23, 31)) < 0.1) & ~gt
        for ign in (None, ignore):
            inter, union = intersection_union(pred, gt, ign)
            ri, ru = _histogram_path(pred, gt, ign)
            assert inter.tolist() == ri.tolist() and union.tolist() == ru.tolist()


def test_meter_miou_over_the_class_set_and_fb_iou():
    m = SegmentationMeter(["a", "b", "c"])
    m.add(0, [10, 2], [14, 6])  # a: 2/6
    m.add(0, [5, 3], [7, 3])  # a: (2+3)/(6+3) = 5/9
    m.add(1, [8, 0], [9, 4])  # b: 0/4
    # c never visited: IoU 0 by the protocol
    iou = m.class_iou()
    assert iou.tolist() == pytest.approx([5 / 9, 0.0, 0.0])
    assert m.miou() == pytest.approx(100 * (5 / 9) / 3)
    assert m.miou_visited() == pytest.approx(100 * (5 / 9) / 2)
    # FB-IoU: bg (10+5+8)/(14+7+9) = 23/30, fg 5/13, mean of both
    assert m.fb_iou() == pytest.approx(100 * (23 / 30 + 5 / 13) / 2)
    assert m.episodes.tolist() == [2, 1, 0]


def test_meter_round_trips_through_a_tensor_and_merges():
    a, b = SegmentationMeter(["x", "y"]), SegmentationMeter(["x", "y"])
    a.add(0, [1, 2], [3, 4])
    b.add(1, [5, 6], [7, 8])
    b.add(0, [1, 1], [1, 1])
    t = a.as_tensor() + b.as_tensor()
    c = SegmentationMeter.from_tensor(["x", "y"], t)
    a.merge(b)
    assert np.array_equal(c.intersection, a.intersection) and np.array_equal(c.union, a.union)
    assert c.intersection.tolist() == [[2, 5], [3, 6]] and c.episodes.tolist() == [2, 1]
    with pytest.raises(ValueError, match="class_index=2"):
        a.add(2, [0, 0], [0, 0])


def test_match_size_is_nearest_neighbour():
    m = np.array([[0, 1], [255, 1]], dtype=np.uint8)
    up = match_size(m, (4, 4))
    assert up.dtype == torch.uint8
    assert up.tolist() == [[0, 0, 1, 1], [0, 0, 1, 1], [255, 255, 1, 1], [255, 255, 1, 1]]
    assert match_size(m, (2, 2)) is not None and match_size(m, (2, 2)).tolist() == m.tolist()


def test_pck_hits_by_hand():
    gt = np.zeros((5, 2))
    pred = np.array([[4.0, 0.0], [0.0, 9.0], [9.0, 12.0], [12.0, 16.0], [30.0, 0.0]])  # distances 4, 9, 15, 20, 30
    assert pck_hits(torch.from_numpy(pred), gt, threshold=100.0) == [1, 2, 3, 4]  # <= 5, 10, 15, 20


def test_keypoint_meter_per_image_per_point_per_class():
    m = KeypointMeter(["cat", "dog"])
    m.add(0, 4, [1, 2, 3, 4])
    m.add(1, 2, [0, 1, 1, 2])
    pck = m.pck()
    assert pck["pck@0.05"] == pytest.approx(100 * (1 / 4 + 0) / 2)
    assert pck["pck@0.10"] == pytest.approx(100 * (2 / 4 + 1 / 2) / 2)
    assert pck["pck@0.20"] == pytest.approx(100.0)
    assert m.pck_per_point()["pck@0.05"] == pytest.approx(100 / 6)
    assert m.pck_per_class()["dog"]["pck@0.15"] == pytest.approx(50.0)
    # order of pairs does not change the result, bit for bit
    r = KeypointMeter(["cat", "dog"], pairs=list(reversed(m.pairs)))
    assert r.pck() == m.pck()
