"""DAVIS J and F against hand-computed cases and brute-force definitions."""

from __future__ import annotations

import math

import numpy as np
import pytest

from insid3lab.eval.video.scores import (
    boundary_f,
    boundary_map,
    boundary_precision_recall,
    disk,
    evaluate_sequence,
    region_similarity,
    statistics,
    summarise,
)

H, W = 96, 128  # diagonal 160: tolerance ceil(0.008 * 160) = ceil(1.28) = 2 pixels


def square(top: int, left: int, side: int, shape=(H, W)) -> np.ndarray:
    m = np.zeros(shape, dtype=bool)
    m[top : top + side, left : left + side] = True
    return m


def test_boundary_of_a_square_is_the_outline_of_the_box_one_larger():
    # rows a..b, cols c..d filled: the boundary is the perimeter of rows a-1..b, cols c-1..d (4 * side pixels)
    b = boundary_map(square(10, 20, 5))
    expected = np.zeros((H, W), dtype=bool)
    expected[9:15, 19:25] = True
    expected[10:14, 20:24] = False
    assert np.array_equal(b, expected)
    assert b.sum() == 4 * 5


def test_boundary_at_the_image_border():
    m = np.zeros((6, 6), dtype=bool)
    m[3:, 3:] = True  # touches the bottom and right edges
    b = boundary_map(m)
    expected = np.zeros((6, 6), dtype=bool)
    expected[2, 2:6] = True  # above the block (last column: differs from the pixel below)
    expected[2:6, 2] = True  # left of the block (last row: differs from the pixel to the right)
    assert np.array_equal(b, expected)  # the bottom-right pixel is never a boundary pixel


def test_perfect_mask():
    gt = square(30, 40, 20)
    assert region_similarity(gt, gt) == 1.0
    assert boundary_f(gt, gt) == 1.0


def test_empty_prediction_and_empty_ground_truth():
    gt, empty = square(30, 40, 20), np.zeros((H, W), dtype=bool)
    assert region_similarity(gt, empty) == 0.0
    assert boundary_precision_recall(gt, empty) == (1.0, 0.0)
    assert boundary_f(gt, empty) == 0.0
    assert boundary_precision_recall(empty, gt) == (0.0, 1.0)
    assert boundary_f(empty, gt) == 0.0
    assert region_similarity(empty, empty) == 1.0  # both empty: J = F = 1
    assert boundary_f(empty, empty) == 1.0


def test_j_is_the_hand_computed_iou():
    gt, pred = square(30, 40, 20), square(30, 45, 20)  # shifted 5 px: overlap 20 x 15
    assert region_similarity(gt, pred) == pytest.approx(20 * 15 / (2 * 400 - 300))
    gt2 = np.zeros((4, 4), dtype=bool)
    gt2[0, :3] = True
    pred2 = np.zeros((4, 4), dtype=bool)
    pred2[0, 1:] = True
    pred2[1, 0] = True
    assert region_similarity(gt2, pred2) == 2 / 5


@pytest.mark.parametrize("k", [1, 2])
def test_shift_within_the_tolerance_gives_f_1(k):
    gt = square(30, 40, 20)
    assert boundary_f(gt, square(30, 40 + k, 20)) == 1.0
    assert boundary_f(gt, square(30 + k, 40, 20)) == 1.0


@pytest.mark.parametrize("side,k", [(20, 5), (20, 3), (30, 8)])
def test_shift_beyond_the_tolerance_gives_the_hand_computed_f(side, k):
    """Square of side s shifted right by k, tolerance r = 2 (with r < k < s - r).

    Both boundaries are outlines of (s+1) x (s+1) boxes, 4s pixels each. Of the shifted outline:
    the top and bottom rows miss k - r pixels each (those more than r to the right of the other
    outline's corner); the left column (s - 1 pixels between the corners) is near the other
    outline's top and bottom rows only within r rows of them, so it misses s - 1 - 2r; the right
    column misses all its s - 1. Matched: 4s - 2(k - r) - (s - 1 - 2r) - (s - 1) = 2s - 2k + 4r + 2.
    The case is symmetric, so precision = recall = F.
    """
    r = 2
    expected = (2 * side - 2 * k + 4 * r + 2) / (4 * side)
    p, rec = boundary_precision_recall(square(30, 40, side), square(30, 40 + k, side))
    assert p == pytest.approx(expected) and rec == pytest.approx(expected)
    assert boundary_f(square(30, 40, side), square(30, 40 + k, side)) == pytest.approx(expected)
    if (side, k) == (20, 5):
        assert expected == 0.5


def test_tolerance_in_pixels_and_from_the_diagonal():
    gt, pred = square(30, 40, 20), square(30, 43, 20)  # shifted 3 px
    assert boundary_f(gt, pred, bound_th=3) == 1.0
    assert boundary_f(gt, pred, bound_th=2) < 1.0
    assert boundary_f(gt, pred) == boundary_f(gt, pred, bound_th=2)  # 0.008 * 160 -> 2 px
    big = (300, 400)  # diagonal 500: ceil(4.0) = 4 px
    assert boundary_f(square(100, 100, 50, big), square(100, 104, 50, big)) == 1.0
    assert boundary_f(square(100, 100, 50, big), square(100, 105, 50, big)) < 1.0


def test_f_equals_a_brute_force_distance_definition_on_random_masks():
    """A boundary pixel is matched when a boundary pixel of the other mask lies within Euclidean distance r."""
    from scipy import ndimage

    rng = np.random.default_rng(0)
    for _ in range(4):
        gt = ndimage.gaussian_filter(rng.standard_normal((40, 50)), 3) > 0.1
        pred = ndimage.gaussian_filter(rng.standard_normal((40, 50)), 3) > 0.1
        r = math.ceil(0.008 * math.hypot(40, 50))  # 1
        bg, bp = boundary_map(gt), boundary_map(pred)
        pg, pp = np.argwhere(bg), np.argwhere(bp)
        dist = np.sqrt(((pp[:, None, :] - pg[None, :, :]) ** 2).sum(-1))
        precision, recall = (dist.min(1) <= r).mean(), (dist.min(0) <= r).mean()
        f = 2 * precision * recall / (precision + recall)
        assert boundary_precision_recall(gt, pred) == pytest.approx((precision, recall))
        assert boundary_f(gt, pred) == pytest.approx(f)
        big = 3.0
        dist_ok_p, dist_ok_r = (dist.min(1) <= big).mean(), (dist.min(0) <= big).mean()
        assert boundary_precision_recall(gt, pred, bound_th=big) == pytest.approx((dist_ok_p, dist_ok_r))


def test_disk_equals_scikit_image():
    morphology = pytest.importorskip("skimage.morphology")
    for r in (1, 2, 3, 4, 7):
        assert np.array_equal(disk(float(r)), morphology.disk(r).astype(bool))


def test_statistics_mean_recall_decay_by_hand():
    v = np.arange(8) / 10  # 0.0 .. 0.7
    mean, recall, decay = statistics(v)
    assert mean == pytest.approx(0.35)
    assert recall == pytest.approx(2 / 8)  # 0.6 and 0.7 exceed 0.5
    # bins cut at round(linspace(1, 8, 5)) - 1 = [0, 2, 4, 5, 7]: first frames 0..2, last frames 5..7
    assert decay == pytest.approx(np.mean([0.0, 0.1, 0.2]) - np.mean([0.5, 0.6, 0.7]))
    assert statistics([1.0, 1.0, 1.0]) == (1.0, 1.0, 0.0)


def test_evaluate_sequence_skips_first_and_last_frame_and_treats_void_as_background():
    T = 5
    gt = np.zeros((T, H, W), dtype=np.uint8)
    for t in range(T):
        gt[t][square(20, 20 + 2 * t, 16)] = 1
        gt[t][square(60, 70, 10)] = 2
    gt[2, 0:5, 0:5] = 255  # void
    pred = gt.copy()
    pred[pred == 255] = 0
    pred[0] = 0  # the first and last frames are not scored
    pred[-1] = 0
    pred[3][square(60, 70, 10)] = 0  # object 2 lost in frame 3
    out = evaluate_sequence(gt, pred)
    assert out["frames"] == [1, 2, 3]
    assert out["J"] == [[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]]
    assert out["F"] == [[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]]
    assert out["J_mean"] == pytest.approx([1.0, 2 / 3])
    assert out["J_recall"] == pytest.approx([1.0, 2 / 3])
    every = evaluate_sequence(gt, pred, skip_first_last=False)
    assert every["frames"] == list(range(T)) and every["J"][0][0] == 0.0


def test_evaluate_sequence_bad_input():
    gt = np.zeros((4, 8, 8), dtype=np.uint8)
    gt[:, 2:5, 2:5] = 1
    with pytest.raises(ValueError, match="object id 3"):
        evaluate_sequence(gt, gt * 3)
    with pytest.raises(ValueError, match="same"):
        evaluate_sequence(gt, gt[:, :4])
    with pytest.raises(ValueError, match="no frame to score"):
        evaluate_sequence(gt[:2], gt[:2])
    with pytest.raises(ValueError, match="no object"):
        evaluate_sequence(gt * 0, gt)


def test_summarise_weighs_every_object_the_same():
    a = {
        "sequence": "a",
        "J_mean": [1.0, 0.5],
        "J_recall": [1.0, 0.0],
        "J_decay": [0.0, 0.2],
        "F_mean": [0.8, 0.4],
        "F_recall": [1.0, 0.0],
        "F_decay": [0.0, 0.1],
    }
    b = {
        "sequence": "b",
        "J_mean": [0.3],
        "J_recall": [0.0],
        "J_decay": [0.3],
        "F_mean": [0.2],
        "F_recall": [0.0],
        "F_decay": [0.0],
    }
    s = summarise([a, b])
    assert s["J-Mean"] == pytest.approx(0.6) and s["F-Mean"] == pytest.approx(1.4 / 3)
    assert s["J&F-Mean"] == pytest.approx((0.6 + 1.4 / 3) / 2)
    assert s["J-Recall"] == pytest.approx(1 / 3) and s["J-Decay"] == pytest.approx(0.5 / 3)
    assert s["objects"] == 3 and s["sequences"] == 2
    assert s["per_object"]["a_2"] == {"J-Mean": 0.5, "F-Mean": 0.4}
    assert s["per_sequence"]["a"]["J&F-Mean"] == pytest.approx((0.75 + 0.6) / 2)
