"""Uncertainty of the benchmark numbers: 95% bootstrap intervals over episodes.

The episodes of a run are resampled with replacement (``resamples`` times, seeded) and
the metric is recomputed from the resampled per-episode counts exactly as the meter
computes it (mIoU over the whole class set, FB-IoU from the summed counts; PCK as the
mean over pairs). The interval is the percentile interval (2.5th and 97.5th percentiles
for ``level=0.95``); the seed, the number of resamples and the level are recorded with it.
"""

from __future__ import annotations

import numpy as np

__all__ = ["bootstrap_weights", "pck_interval", "percentile_bounds", "segmentation_interval", "segmentation_resamples"]


def bootstrap_weights(n: int, resamples: int, seed: int) -> np.ndarray:
    """(resamples, n) int64: how often each of ``n`` items is drawn in each resample (multinomial, seeded)."""
    if n < 1 or resamples < 1:
        raise ValueError(f"n={n}, resamples={resamples}: both must be >= 1")
    rng = np.random.default_rng(int(seed))
    return rng.multinomial(n, np.full(n, 1.0 / n), size=int(resamples)).astype(np.int64)


def percentile_bounds(values: np.ndarray, level: float = 0.95) -> list[float]:
    """[lo, hi]: the percentile interval of the resampled ``values`` at ``level`` (nan ignored)."""
    lo, hi = np.nanpercentile(values, [50 * (1 - level), 50 * (1 + level)])
    return [float(lo), float(hi)]


_bounds = percentile_bounds


def segmentation_resamples(per_episode, num_classes: int, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """mIoU and FB-IoU (percent) of each resample: two (B,) arrays.

    Args:
        per_episode: (index, class index, (2,) intersection, (2,) union) per episode (E of them);
            an N-way episode has (index, [N class indices], (1 + N,) intersection, (1 + N,) union),
            background first, then the ways (see :mod:`insid3lab.eval.run.nway`).
        num_classes: size of the class set (a class no resample visits counts as IoU 0).
        weights: (B, E) how often each episode is drawn in each resample (:func:`bootstrap_weights`).
    """
    e = len(per_episode)
    fg_i_ec, fg_u_ec = np.zeros((e, num_classes)), np.zeros((e, num_classes))  # per episode and class
    inter, union = np.zeros((e, 2)), np.zeros((e, 2))  # background and all foreground per episode
    for k, (_, cls, i, u) in enumerate(per_episode):
        classes = [cls] if isinstance(cls, (int, np.integer)) else list(cls)
        np.add.at(fg_i_ec[k], classes, np.asarray(i[1:], dtype=np.float64))
        np.add.at(fg_u_ec[k], classes, np.asarray(u[1:], dtype=np.float64))
        inter[k] = (i[0], float(np.sum(i[1:])))
        union[k] = (u[0], float(np.sum(u[1:])))
    w = np.asarray(weights, dtype=np.float64)  # (B, E)
    fg_i = w @ fg_i_ec  # (B, C)
    fg_u = w @ fg_u_ec
    miou = (fg_i / np.maximum(fg_u, 1.0)).mean(axis=1) * 100.0
    tot_i, tot_u = w @ inter, w @ union  # (B, 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        fb = np.where((tot_u > 0).all(axis=1), (tot_i / np.maximum(tot_u, 1.0)).mean(axis=1) * 100.0, np.nan)
    return miou, fb


def segmentation_interval(
    per_episode, num_classes: int, *, resamples: int = 1000, seed: int = 0, level: float = 0.95
) -> dict:
    """Bootstrap intervals of mIoU and FB-IoU (percent) over the evaluated episodes.

    Args:
        per_episode: (index, class index, (2,) intersection, (2,) union) per evaluated episode;
            background at 0, foreground at 1.
        num_classes: size of the benchmark's class set (classes no resample visits count as IoU 0).

    Returns:
        ``{"level", "resamples", "seed", "miou": [lo, hi], "fb_iou": [lo, hi]}`` (nan bounds without episodes).
    """
    out = {"level": level, "resamples": int(resamples), "seed": int(seed), "method": "percentile, episodes resampled"}
    if not per_episode:
        return {**out, "miou": [float("nan")] * 2, "fb_iou": [float("nan")] * 2}
    w = bootstrap_weights(len(per_episode), resamples, seed)  # (B, E)
    miou, fb = segmentation_resamples(per_episode, num_classes, w)
    return {**out, "miou": _bounds(miou, level), "fb_iou": _bounds(fb, level)}


def pck_interval(pairs, alphas, *, resamples: int = 1000, seed: int = 0, level: float = 0.95) -> dict:
    """Bootstrap intervals of PCK@alpha (percent, mean over pairs) for each alpha.

    pairs: (class index, number of keypoints, hits per alpha) per evaluated pair.
    """
    out = {"level": level, "resamples": int(resamples), "seed": int(seed), "method": "percentile, pairs resampled"}
    keys = [f"pck@{a:.2f}" for a in alphas]
    if not pairs:
        return {**out, **{k: [float("nan")] * 2 for k in keys}}
    frac = np.array([[h / p[1] for h in p[2]] for p in pairs], dtype=np.float64)  # (P, A)
    w = bootstrap_weights(len(pairs), resamples, seed).astype(np.float64)
    pck = (w @ frac) / len(pairs) * 100.0  # (B, A)
    return {**out, **{k: _bounds(pck[:, j], level) for j, k in enumerate(keys)}}
