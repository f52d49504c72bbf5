"""Few-shot segmentation and keypoint-correspondence metrics.

Segmentation follows the protocol of the few-shot segmentation literature (HSNet and its
successors, also used by INSID3): for every episode the background (index 0) and
foreground (index 1) intersection and union pixel counts are added to per-class sums;
at the end

* IoU of class c  = fg intersection sum / max(fg union sum, 1),
* mIoU            = mean of IoU over the benchmark's class set (a class no episode
                    visited counts as 0, as in the protocol),
* FB-IoU          = mean over {background, foreground} of
                    (intersection summed over classes) / (union summed over classes).

Pixels marked ignored (255) are excluded from both prediction and ground truth. Sums are
int64 so that they add up identically in any order, across processes and resumptions.

Keypoints: PCK@alpha of one pair = fraction of its keypoints whose prediction lies
within ``alpha * threshold`` (Euclidean, ``<=``) of the ground truth, where threshold is
max(w, h) of the target object's box; the benchmark's PCK is the mean over pairs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "PCK_ALPHAS",
    "KeypointMeter",
    "SegmentationMeter",
    "intersection_union",
    "match_size",
    "pck_hits",
]

PCK_ALPHAS = (0.05, 0.10, 0.15, 0.20)


def _as_bool_tensor(x, name: str) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(x))
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: expected a torch tensor or numpy array; got {type(x).__name__}")
    if x.ndim != 2:
        raise ValueError(f"{name}: expected shape (H, W); got {tuple(x.shape)}")
    return x.detach().cpu().bool() if x.dtype == torch.bool else (x.detach().cpu() > 0)


def match_size(mask, size: tuple[int, int]) -> torch.Tensor:
    """Nearest-neighbour resize of an (H, W) label array to ``size`` = (H', W'); dtype kept (uint8 / bool).

    The benchmarks' protocol scores the prediction at its own size: the ground truth
    (and its ignore region) is brought to the prediction's size with nearest-neighbour.
    """
    t = torch.from_numpy(np.ascontiguousarray(mask)) if isinstance(mask, np.ndarray) else mask
    if tuple(t.shape) == tuple(size):
        return t
    out = F.interpolate(t[None, None].float(), size=tuple(size), mode="nearest")[0, 0]
    return out.to(t.dtype)


def intersection_union(pred, gt, ignore=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Background/foreground intersection and union pixel counts of one prediction.

    Args:
        pred: (H, W) prediction; foreground where true / > 0.
        gt: (H, W) ground truth; foreground where true / > 0 (same size as pred).
        ignore: optional (H, W) bool, pixels excluded from both.

    Returns:
        (intersection, union): two int64 tensors of shape (2,), index 0 background,
        index 1 foreground.
    """
    p = _as_bool_tensor(pred, "pred")
    g = _as_bool_tensor(gt, "gt")
    if p.shape != g.shape:
        raise ValueError(f"pred has shape {tuple(p.shape)} but gt has {tuple(g.shape)}; resize gt first (match_size)")
    valid = torch.ones_like(p)
    if ignore is not None:
        ig = _as_bool_tensor(ignore, "ignore")
        if ig.shape != p.shape:
            raise ValueError(f"ignore has shape {tuple(ig.shape)} but pred has {tuple(p.shape)}")
        valid = ~ig
    fg_i = (p & g & valid).sum()
    fg_u = ((p | g) & valid).sum()
    bg_i = (~p & ~g & valid).sum()
    bg_u = ((~p | ~g) & valid).sum()
    return torch.stack([bg_i, fg_i]).long(), torch.stack([bg_u, fg_u]).long()


@dataclass
class SegmentationMeter:
    """Per-class intersection and union sums over episodes.

    intersection, union: (2, C) int64 numpy arrays; row 0 background, row 1 foreground;
    column c is class c of ``class_names``.
    """

    class_names: list[str]
    intersection: np.ndarray = field(default=None)
    union: np.ndarray = field(default=None)
    episodes: np.ndarray = field(default=None)

    def __post_init__(self):
        c = len(self.class_names)
        if c == 0:
            raise ValueError("class_names: a segmentation meter needs at least one class")
        if self.intersection is None:
            self.intersection = np.zeros((2, c), dtype=np.int64)
        if self.union is None:
            self.union = np.zeros((2, c), dtype=np.int64)
        if self.episodes is None:
            self.episodes = np.zeros(c, dtype=np.int64)

    def add(self, class_index: int, intersection, union) -> None:
        """Add one episode's (2,) intersection and union counts to class ``class_index``."""
        if not 0 <= class_index < len(self.class_names):
            raise ValueError(f"class_index={class_index}: must lie in 0..{len(self.class_names) - 1}")
        self.intersection[:, class_index] += np.asarray(intersection, dtype=np.int64)
        self.union[:, class_index] += np.asarray(union, dtype=np.int64)
        self.episodes[class_index] += 1

    def merge(self, other: SegmentationMeter) -> None:
        if list(other.class_names) != list(self.class_names):
            raise ValueError("cannot merge meters over different class sets")
        self.intersection += other.intersection
        self.union += other.union
        self.episodes += other.episodes

    def as_tensor(self) -> torch.Tensor:
        """(5, C) int64: intersection rows, union rows, episode counts (for all-reduce)."""
        return torch.from_numpy(np.concatenate([self.intersection, self.union, self.episodes[None]], axis=0).copy())

    @classmethod
    def from_tensor(cls, class_names: list[str], t: torch.Tensor) -> SegmentationMeter:
        a = t.cpu().numpy().astype(np.int64)
        return cls(list(class_names), a[0:2].copy(), a[2:4].copy(), a[4].copy())

    def class_iou(self) -> np.ndarray:
        """(C,) float64 foreground IoU per class, in [0, 1]."""
        return self.intersection[1] / np.maximum(self.union[1], 1)

    def miou(self) -> float:
        """Mean foreground IoU over the whole class set, in percent."""
        return float(self.class_iou().mean() * 100.0)

    def miou_visited(self) -> float:
        """Mean foreground IoU over the classes at least one episode visited, in percent (nan if none)."""
        seen = self.episodes > 0
        return float(self.class_iou()[seen].mean() * 100.0) if seen.any() else float("nan")

    def fb_iou(self) -> float:
        """Mean of background and foreground IoU over the summed counts, in percent."""
        inter = self.intersection.sum(axis=1)
        union = self.union.sum(axis=1)
        if (union == 0).any():
            return float("nan")
        return float((inter / union).mean() * 100.0)


def pck_hits(pred, gt, threshold: float, alphas=PCK_ALPHAS) -> list[int]:
    """Number of keypoints within ``alpha * threshold`` of the ground truth, for each alpha.

    Args:
        pred, gt: (N, 2) predicted and true keypoints (x, y) in target pixels.
        threshold: the reference length (max side of the target object's box), pixels.

    Returns:
        list of len(alphas) ints.
    """
    p = torch.as_tensor(
        np.asarray(pred.detach().cpu() if isinstance(pred, torch.Tensor) else pred), dtype=torch.float64
    )
    g = torch.as_tensor(np.asarray(gt), dtype=torch.float64)
    if p.shape != g.shape or p.ndim != 2 or p.shape[1] != 2:
        raise ValueError(f"pred and gt must both be (N, 2); got {tuple(p.shape)} and {tuple(g.shape)}")
    d = torch.linalg.norm(p - g, dim=1)
    return [int((d <= a * float(threshold)).sum()) for a in alphas]


@dataclass
class KeypointMeter:
    """PCK accumulated from per-pair hit counts; order-independent (exactly rounded sums)."""

    class_names: list[str]
    alphas: tuple[float, ...] = PCK_ALPHAS
    pairs: list[tuple[int, int, list[int]]] = field(default_factory=list)

    def add(self, class_index: int, n_points: int, hits: list[int]) -> None:
        if n_points <= 0:
            raise ValueError(f"n_points={n_points}: a pair needs at least one keypoint")
        self.pairs.append((int(class_index), int(n_points), [int(h) for h in hits]))

    def pck(self) -> dict[str, float]:
        """PCK per alpha (mean over pairs of the per-pair fraction), in percent."""
        return self._mean(self.pairs)

    def pck_per_point(self) -> dict[str, float]:
        """PCK per alpha over all keypoints pooled, in percent."""
        n = sum(p[1] for p in self.pairs)
        return {
            self._key(a): (100.0 * sum(p[2][k] for p in self.pairs) / n if n else float("nan"))
            for k, a in enumerate(self.alphas)
        }

    def pck_per_class(self) -> dict[str, dict[str, float]]:
        out = {}
        for ci, name in enumerate(self.class_names):
            sel = [p for p in self.pairs if p[0] == ci]
            if sel:
                out[name] = self._mean(sel)
        return out

    @staticmethod
    def _key(a: float) -> str:
        return f"pck@{a:.2f}"

    def _mean(self, pairs) -> dict[str, float]:
        if not pairs:
            return {self._key(a): float("nan") for a in self.alphas}
        return {
            self._key(a): 100.0 * math.fsum(p[2][k] / p[1] for p in pairs) / len(pairs)
            for k, a in enumerate(self.alphas)
        }
