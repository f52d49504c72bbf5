"""Stage 3: reference masks at feature resolution and the reference prototype."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["EmptyMaskError", "downsample_mask", "shot_prototypes", "reference_prototype"]


class EmptyMaskError(ValueError):
    """A reference mask without a single foreground pixel."""


def downsample_mask(mask: Tensor, h: int, w: int) -> Tensor:
    """A full-resolution mask on the (h, w) feature grid, never empty.

    1. bilinear (align_corners=False) on the float mask, ``> 0.5``;
    2. if that is empty: nearest, ``> 0.5``;
    3. if still empty: the single cell at the foreground centroid divided by (S // w)
       (integer stride, coordinates truncated).

    Args:
        mask: (S, S), (1, S, S) or (1, 1, S, S) bool mask.

    Returns:
        (h, w) bool.

    Raises:
        EmptyMaskError: when the mask has no foreground at all.
    """
    m = mask.reshape(1, 1, *mask.shape[-2:]).float()
    down = F.interpolate(m, size=(h, w), mode="bilinear", align_corners=False)[0, 0] > 0.5
    if bool(down.any()):
        return down
    down = F.interpolate(m, size=(h, w), mode="nearest")[0, 0] > 0.5
    if bool(down.any()):
        return down
    fg = torch.argwhere(m[0, 0] > 0)
    if fg.shape[0] == 0:
        raise EmptyMaskError("the mask has no foreground pixel (foreground is > 0)")
    center = fg.float().mean(dim=0)
    stride = m.shape[-1] // w
    cy, cx = (center / stride).int().tolist()
    down[min(cy, h - 1), min(cx, w - 1)] = True
    return down


def shot_prototypes(features_deb: Tensor, masks_low: Tensor) -> Tensor:
    """Mean debiased foreground feature of each shot.

    Args:
        features_deb: (k, C, h, w) debiased reference features.
        masks_low: (k, h, w) bool masks on the feature grid (each non-empty).

    Returns:
        (k, C) per-shot prototypes (not normalised).
    """
    return torch.stack([features_deb[s][:, masks_low[s]].mean(dim=1) for s in range(features_deb.shape[0])])


def reference_prototype(features_deb: Tensor, masks_low: Tensor) -> Tensor:
    """The reference prototype p: the L2-normalised average of the per-shot prototypes.

    Args:
        features_deb: (k, C, h, w) debiased reference features.
        masks_low: (k, h, w) bool masks on the feature grid.

    Returns:
        (C,) unit vector.
    """
    return F.normalize(shot_prototypes(features_deb, masks_low).mean(dim=0), p=2, dim=0)
