"""Stage 1: features from the frozen encoder, L2-normalised per cell."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["extract_features", "l2_normalize"]


def extract_features(encoder, images: Tensor, *, autocast_dtype: torch.dtype | None = None) -> Tensor:
    """Last-block patch features after the final LayerNorm, as a feature map.

    Args:
        encoder: any module with Meta's ``get_intermediate_layers(x, n, reshape=...)`` contract.
        images: (B, 3, S, S) normalised images on the encoder's device.
        autocast_dtype: run the encoder under ``torch.autocast`` with this dtype (CUDA fast mode);
            None runs it in the encoder's own dtype.

    Returns:
        (B, C, S/p, S/p) float32 features (CLS and register tokens stripped).
    """
    with torch.inference_mode():
        if autocast_dtype is not None:
            # Casts are not cached: every weight is used once per pass, so a cache would only
            # keep a low-precision copy of the whole encoder alive next to the original.
            with torch.autocast(device_type=images.device.type, dtype=autocast_dtype, cache_enabled=False):
                feats = encoder.get_intermediate_layers(images, n=1, reshape=True)[0]
        else:
            feats = encoder.get_intermediate_layers(images, n=1, reshape=True)[0]
    return feats.float()


def l2_normalize(features: Tensor, dim: int = 1) -> Tensor:
    """Unit-length feature vectors along ``dim`` (default: channels of a (B, C, h, w) map)."""
    return F.normalize(features, p=2, dim=dim)
