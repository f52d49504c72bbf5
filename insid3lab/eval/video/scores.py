"""Video object segmentation scores as the DAVIS 2017 toolkit computes them.

* :func:`region_similarity` — J, the Jaccard index of one object's mask in one frame
  (toolkit: ``davis2017.metrics.db_eval_iou``).
* :func:`boundary_f` — F, the boundary F-measure with a tolerance of ``bound_th`` of the image
  diagonal (toolkit: ``davis2017.metrics.f_measure`` with ``_seg2bmap`` boundaries).
* :func:`statistics` — mean, recall and decay of one object's per-frame values
  (toolkit: ``davis2017.utils.db_statistics``).
* :func:`evaluate_objects` — per object J and F on the frames each object is scored on, with
  their statistics; void pixels (255) count as background.
* :func:`evaluate_sequence` — the same for a DAVIS semi-supervised sequence
  (toolkit: ``DAVISEvaluation.evaluate`` and ``_evaluate_semisupervised``): every object on
  every frame but the first and the last.
* :func:`summarise` — J&F-mean, J-mean/recall/decay, F-mean/recall/decay over all objects
  (toolkit: ``evaluation_method.py``), plus per object and per sequence tables.

Masks are (H, W) arrays; label maps are (H, W) integer arrays with 0 for background and
object ids 1..n; a sequence of label maps is (T, H, W). Scores are fractions in [0, 1].
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from scipy import ndimage

from insid3lab.core.palette import VOID

__all__ = [
    "BOUND_TH",
    "VOID",
    "boundary_f",
    "boundary_map",
    "boundary_precision_recall",
    "disk",
    "evaluate_objects",
    "evaluate_sequence",
    "region_similarity",
    "statistics",
    "summarise",
]

#: Boundary tolerance as a fraction of the image diagonal (the toolkit's ``bound_th``).
BOUND_TH = 0.008
#: The label of void pixels in DAVIS annotations.


def _pair(gt, pred) -> tuple[np.ndarray, np.ndarray]:
    gt, pred = np.asarray(gt).astype(bool), np.asarray(pred).astype(bool)
    if gt.ndim != 2 or gt.shape != pred.shape:
        raise ValueError(
            f"masks must be two (H, W) arrays of one size; got ground truth {gt.shape}, prediction {pred.shape}"
        )
    return gt, pred


def region_similarity(gt, pred) -> float:
    """J: |gt ∩ pred| / |gt ∪ pred| of two (H, W) masks; 1 when both are empty (as ``db_eval_iou``)."""
    gt, pred = _pair(gt, pred)
    union = int(np.count_nonzero(gt | pred))
    if union == 0:
        return 1.0
    return int(np.count_nonzero(gt & pred)) / union


def boundary_map(mask) -> np.ndarray:
    """One-pixel-wide boundary of an (H, W) mask, as the toolkit's ``_seg2bmap`` draws it.

    A pixel is on the boundary when it differs from its right, lower or lower-right neighbour
    (the boundary sits half a pixel towards the origin). In the last row only the right
    neighbour counts, in the last column only the lower one, and the bottom-right pixel is never
    a boundary pixel.

    Returns:
        (H, W) bool.
    """
    m = np.asarray(mask).astype(bool)
    if m.ndim != 2:
        raise ValueError(f"mask must be (H, W); got shape {m.shape}")
    right, down, diag = np.zeros_like(m), np.zeros_like(m), np.zeros_like(m)
    right[:, :-1] = m[:, 1:]
    down[:-1, :] = m[1:, :]
    diag[:-1, :-1] = m[1:, 1:]
    b = (m != right) | (m != down) | (m != diag)
    b[-1, :] = m[-1, :] != right[-1, :]
    b[:, -1] = m[:, -1] != down[:, -1]
    b[-1, -1] = False
    return b


def disk(radius: float) -> np.ndarray:
    """Disk structuring element: offsets (dy, dx) in [-r, r]² with dy² + dx² <= r² (scikit-image's ``disk``)."""
    r = int(radius)
    d = np.arange(-r, r + 1)
    return d[:, None] ** 2 + d[None, :] ** 2 <= radius**2


def _tolerance(shape: tuple[int, int], bound_th: float) -> float:
    # bound_th >= 1 is a radius in pixels, otherwise a fraction of the diagonal, rounded up
    return float(bound_th) if bound_th >= 1 else math.ceil(bound_th * math.hypot(*shape))


def boundary_precision_recall(gt, pred, bound_th: float = BOUND_TH) -> tuple[float, float]:
    """Boundary precision and recall of ``pred`` against ``gt`` (as ``f_measure`` computes them).

    Boundaries come from :func:`boundary_map`. A predicted boundary pixel is correct when a ground
    truth boundary pixel lies within the disk of radius ``ceil(bound_th * diagonal)`` pixels around
    it (``bound_th >= 1`` is a radius in pixels), and vice versa for recall. Edge cases: no
    predicted boundary gives precision 1, recall 0 (if the ground truth has one); no ground truth
    boundary gives precision 0, recall 1 (if the prediction has one); neither gives 1, 1.
    """
    gt, pred = _pair(gt, pred)
    se = disk(_tolerance(gt.shape, bound_th))
    gt_b, pred_b = boundary_map(gt), boundary_map(pred)
    n_gt, n_pred = int(np.count_nonzero(gt_b)), int(np.count_nonzero(pred_b))
    if n_pred == 0 and n_gt == 0:
        return 1.0, 1.0
    if n_pred == 0:
        return 1.0, 0.0
    if n_gt == 0:
        return 0.0, 1.0
    # pixels outside the image never match (the toolkit's cv2.dilate pads with the neutral value)
    gt_near = ndimage.binary_dilation(gt_b, structure=se, border_value=0)
    pred_near = ndimage.binary_dilation(pred_b, structure=se, border_value=0)
    precision = int(np.count_nonzero(pred_b & gt_near)) / n_pred
    recall = int(np.count_nonzero(gt_b & pred_near)) / n_gt
    return precision, recall


def boundary_f(gt, pred, bound_th: float = BOUND_TH) -> float:
    """F: harmonic mean of :func:`boundary_precision_recall` (0 when both are 0), as ``f_measure``."""
    p, r = boundary_precision_recall(gt, pred, bound_th)
    return 0.0 if p + r == 0 else 2 * p * r / (p + r)


def statistics(values) -> tuple[float, float, float]:
    """Mean, recall and decay of one object's per-frame scores (T,), as ``db_statistics``.

    * mean: the mean, NaN ignored;
    * recall: the fraction of frames scoring above 0.5;
    * decay: the mean of the first quarter of the frames minus that of the last quarter, the
      quarters cut at ``round(linspace(1, T, 5)) - 1`` with each bin including its end index
      (neighbouring bins share a frame). The toolkit keeps these indices as uint8, which wraps
      for sequences of more than 256 frames; here they are plain integers.
    """
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1 or v.size == 0:
        raise ValueError(f"values must be a non-empty (T,) array; got shape {v.shape}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        mean = float(np.nanmean(v))
        recall = float(np.mean(v > 0.5))
        ids = (np.round(np.linspace(1, len(v), 5) + 1e-10) - 1).astype(int)
        bins = [v[ids[i] : ids[i + 1] + 1] for i in range(4)]
        decay = float(np.nanmean(bins[0]) - np.nanmean(bins[3]))
    return mean, recall, decay


def _label_maps(x, what: str) -> np.ndarray:
    a = np.asarray(x)
    if a.dtype == np.bool_:
        a = a.astype(np.uint8)
    if a.ndim != 3 or not (np.issubdtype(a.dtype, np.integer)):
        raise ValueError(f"{what}: expected (T, H, W) integer label maps; got shape {a.shape}, dtype {a.dtype}")
    return a


def evaluate_objects(gt, pred, scored: dict[int, list[int]], *, bound_th: float = BOUND_TH) -> dict:
    """J and F of each object on its own frames.

    Args:
        gt: (T, H, W) ground-truth label maps (0 background, object ids, 255 void, which counts
            as background as in the toolkit's ``DAVIS.get_all_masks``).
        pred: (T, H, W) predicted label maps (bool is read as object 1).
        scored: object id → the indices (into T) of the frames it is scored on, none empty.
        bound_th: boundary tolerance, see :func:`boundary_precision_recall`.

    Returns:
        dict with ``ids`` (the object ids, ascending), ``J`` and ``F`` (lists, one per object, of
        its per-frame scores in the order of its frames) and per object ``J_mean``, ``J_recall``,
        ``J_decay``, ``F_mean``, ``F_recall``, ``F_decay``.
    """
    gt, pred = _label_maps(gt, "ground truth"), _label_maps(pred, "prediction")
    if gt.shape != pred.shape:
        raise ValueError(f"prediction {pred.shape} and ground truth {gt.shape} must have the same (T, H, W)")
    gt = np.where(gt == VOID, 0, gt)
    ids = sorted(int(k) for k in scored)
    for k in ids:
        frames = list(scored[k])
        if not frames or min(frames) < 0 or max(frames) >= len(gt):
            raise ValueError(
                f"object {k}: its scored frames {frames} must be a non-empty list of indices below {len(gt)}"
            )
    J = [[region_similarity(gt[t] == k, pred[t] == k) for t in scored[k]] for k in ids]
    F = [[boundary_f(gt[t] == k, pred[t] == k, bound_th) for t in scored[k]] for k in ids]
    out: dict = {"ids": ids, "J": J, "F": F}
    for name, per in (("J", J), ("F", F)):
        stats = [statistics(v) for v in per]
        out[f"{name}_mean"] = [s[0] for s in stats]
        out[f"{name}_recall"] = [s[1] for s in stats]
        out[f"{name}_decay"] = [s[2] for s in stats]
    return out


def evaluate_sequence(
    gt, pred, *, n_objects: int | None = None, bound_th: float = BOUND_TH, skip_first_last: bool = True
) -> dict:
    """J and F of every object in every scored frame of one semi-supervised sequence.

    Args:
        gt: (T, H, W) ground-truth label maps (0 background, 1..n objects, 255 void, which counts
            as background as in the toolkit's ``DAVIS.get_all_masks``).
        pred: (T, H, W) predicted label maps (bool is read as object 1).
        n_objects: objects to score (default: the largest id of the first ground-truth frame, as
            the toolkit does). A predicted id above it is an error, as in the toolkit.
        bound_th: boundary tolerance, see :func:`boundary_precision_recall`.
        skip_first_last: score frames 1..T-2 only, as the toolkit does for the semi-supervised
            task (the first frame is given; the last is left out). Needs T >= 3.

    Returns:
        dict with ``frames`` (indices of the scored frames), ``J`` and ``F`` (lists, one per object,
        of per-frame scores) and per object ``J_mean``, ``J_recall``, ``J_decay``, ``F_mean``,
        ``F_recall``, ``F_decay`` (:func:`evaluate_objects` with every object on ``frames``).
    """
    gt, pred = _label_maps(gt, "ground truth"), _label_maps(pred, "prediction")
    if gt.shape != pred.shape:
        raise ValueError(f"prediction {pred.shape} and ground truth {gt.shape} must have the same (T, H, W)")
    first = np.where(gt[0] == VOID, 0, gt[0])
    n = int(first.max()) if n_objects is None else int(n_objects)
    if n < 1:
        raise ValueError("the first ground-truth frame holds no object; nothing to score")
    top = int(pred.max(initial=0))
    if top > n:
        raise ValueError(f"the prediction holds object id {top} but the sequence has {n} object(s)")
    T = gt.shape[0]
    if skip_first_last and T < 3:
        raise ValueError(f"a sequence of {T} frame(s) has no frame to score without its first and last frame")
    frames = list(range(1, T - 1)) if skip_first_last else list(range(T))
    scores = evaluate_objects(gt, pred, {k: frames for k in range(1, n + 1)}, bound_th=bound_th)
    return {"frames": frames, **{k: v for k, v in scores.items() if k != "ids"}}


def summarise(records) -> dict:
    """The DAVIS report over sequences: every object of every sequence weighs the same.

    Args:
        records: iterable of dicts with ``sequence`` (name), the per-object lists of
            :func:`evaluate_objects` (``J_mean`` ... ``F_decay``) and optionally their object
            ``ids`` (default 1, 2, ...), in the order to report.

    Returns:
        dict with ``J&F-Mean``, ``J-Mean``, ``J-Recall``, ``J-Decay``, ``F-Mean``, ``F-Recall``,
        ``F-Decay`` (means over all objects; ``J&F-Mean`` is the mean of ``J-Mean`` and ``F-Mean``),
        ``objects`` and ``sequences`` (counts), ``per_object`` (``"<seq>_<id>"`` → J-Mean, F-Mean,
        as the toolkit's per-sequence table names them) and ``per_sequence`` (name → mean over its
        objects of J-Mean, F-Mean and J&F-Mean).
    """
    cols = {k: [] for k in ("J_mean", "J_recall", "J_decay", "F_mean", "F_recall", "F_decay")}
    per_object, per_sequence = {}, {}
    for rec in records:
        seq = rec["sequence"]
        for k, col in cols.items():
            col.extend(float(v) for v in rec[k])
        ids = rec.get("ids") or range(1, len(rec["J_mean"]) + 1)
        for i, j, f in zip(ids, rec["J_mean"], rec["F_mean"]):
            per_object[f"{seq}_{i}"] = {"J-Mean": float(j), "F-Mean": float(f)}
        jm, fm = float(np.mean(rec["J_mean"])), float(np.mean(rec["F_mean"]))
        per_sequence[seq] = {"J-Mean": jm, "F-Mean": fm, "J&F-Mean": (jm + fm) / 2}
    if not per_object:
        raise ValueError("no sequence records to summarise")
    m = {k: float(np.mean(v)) for k, v in cols.items()}
    return {
        "J&F-Mean": (m["J_mean"] + m["F_mean"]) / 2,
        "J-Mean": m["J_mean"],
        "J-Recall": m["J_recall"],
        "J-Decay": m["J_decay"],
        "F-Mean": m["F_mean"],
        "F-Recall": m["F_recall"],
        "F-Decay": m["F_decay"],
        "objects": len(per_object),
        "sequences": len(per_sequence),
        "per_object": per_object,
        "per_sequence": per_sequence,
    }
