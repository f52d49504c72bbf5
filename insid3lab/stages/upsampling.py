"""Stage 7: from the feature grid back to pixels."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

__all__ = ["upsample_mask"]


def upsample_mask(mask: Tensor, height: int, width: int) -> Tensor:
    """Bilinear (align_corners=False) resize of a bool mask, ``> 0.5``: (h, w) -> (height, width) bool."""
    return (
        F.interpolate(mask[None, None].float(), size=(height, width), mode="bilinear", align_corners=False)[0, 0] > 0.5
    )
