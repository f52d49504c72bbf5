"""Semantic correspondence: reference keypoints -> target keypoints by soft-argmax on feature similarity."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "rescale_points",
    "keypoint_descriptors",
    "similarity_maps",
    "gaussian_window",
    "soft_argmax",
    "match_keypoints",
]


def rescale_points(points: Tensor, src_hw: tuple[int, int], dst_hw: tuple[int, int]) -> Tensor:
    """Scale (N, 2) (x, y) points from an image of size src (H, W) to one of size dst (H, W)."""
    out = points.clone().float()
    out[..., 0] *= dst_hw[1] / src_hw[1]
    out[..., 1] *= dst_hw[0] / src_hw[0]
    return out


def keypoint_descriptors(features: Tensor, points_grid: Tensor) -> Tensor:
    """Features at keypoints given in grid coordinates (rounded, clamped to the grid).

    Args:
        features: (C, h, w).
        points_grid: (N, 2) float (x, y) in cell units.

    Returns:
        (N, C) descriptors.
    """
    _, h, w = features.shape
    xy = points_grid.round().long()
    x = xy[..., 0].clamp(0, w - 1)
    y = xy[..., 1].clamp(0, h - 1)
    return features[:, y, x].transpose(0, 1)


def similarity_maps(descriptors: Tensor, target_features: Tensor) -> Tensor:
    """(N, C) descriptors against (C, h, w) target features -> (N, h, w) dot products."""
    C, h, w = target_features.shape
    return (descriptors @ target_features.reshape(C, -1)).reshape(-1, h, w)


def _grid(h: int, w: int, device) -> Tensor:
    """(h, w, 2) cell coordinates (x, y)."""
    ys = torch.linspace(0, h - 1, h, device=device)
    xs = torch.linspace(0, w - 1, w, device=device)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack((gx, gy), dim=-1)


def gaussian_window(maps: Tensor, sigma: float = 7.0) -> Tensor:
    """Multiply each (h, w) map by a Gaussian (σ in cells) centred on its argmax: (N, h, w) -> (N, h, w)."""
    N, h, w = maps.shape
    idx = maps.reshape(N, -1).argmax(dim=-1)
    cy = (idx // w).float().view(N, 1, 1)
    cx = (idx % w).float().view(N, 1, 1)
    g = _grid(h, w, maps.device)
    window = torch.exp(-((g[..., 0] - cx) ** 2 + (g[..., 1] - cy) ** 2) / (2 * sigma**2))
    return window * maps


def soft_argmax(maps: Tensor, temperature: float = 0.04) -> Tensor:
    """Expected (x, y) cell coordinate under softmax(maps / temperature): (N, h, w) -> (N, 2)."""
    N, h, w = maps.shape
    flat = maps.reshape(N, -1)
    flat = flat - flat.max(dim=-1, keepdim=True).values
    e = torch.exp(flat / temperature)
    p = e / e.sum(dim=-1, keepdim=True)
    return p @ _grid(h, w, maps.device).reshape(-1, 2)


def match_keypoints(
    reference_features: Tensor,
    target_features: Tensor,
    points: Tensor,
    reference_hw: tuple[int, int],
    target_hw: tuple[int, int],
    *,
    sigma: float = 7.0,
    temperature: float = 0.04,
) -> tuple[Tensor, Tensor]:
    """Match reference keypoints into the target image.

    Args:
        reference_features: (C, h, w) normalised (optionally debiased) reference features.
        target_features: (C, h, w) same kind of target features.
        points: (N, 2) (x, y) keypoints in original reference pixels.
        reference_hw: original reference (H, W).
        target_hw: original target (H, W).

    Returns:
        matches: (N, 2) (x, y) in original target pixels.
        maps: (N, h, w) raw similarity maps.
    """
    _, h, w = reference_features.shape
    grid_pts = rescale_points(points, reference_hw, (h, w))
    desc = keypoint_descriptors(reference_features, grid_pts)
    maps = similarity_maps(desc, target_features)
    cells = soft_argmax(gaussian_window(maps, sigma), temperature)
    return rescale_points(cells, (h, w), target_hw), maps
