"""Stage 1: features from the frozen encoder, L2-normalised per cell; the encoder contract."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["Encoder", "check_encoder", "extract_features", "l2_normalize"]


@runtime_checkable
class Encoder(Protocol):
    """What INSID3 needs from a backbone: Meta's DINOv3 contract.

    ``get_intermediate_layers(x, n, reshape=True, norm=True)`` returns one (B, C, S/p, S/p)
    patch-feature map per requested block (``n`` an int: the last n blocks; a list: those
    blocks), after the final LayerNorm, CLS and register tokens removed. ``patch_size`` is
    p (an int or an (p, p) pair) and ``embed_dim`` is C. A
    :class:`~insid3lab.DinoV3Backbone`, a model from Meta's DINOv3 code or any module
    honouring this contract will do.
    """

    patch_size: int
    embed_dim: int

    def get_intermediate_layers(self, x: Tensor, n=1, *, reshape: bool = False, **kwargs): ...


def check_encoder(encoder) -> Encoder:
    """``encoder`` itself when it honours :class:`Encoder`, else a TypeError naming what is missing."""
    if not isinstance(encoder, Encoder):
        missing = [a for a in ("get_intermediate_layers", "patch_size", "embed_dim") if not hasattr(encoder, a)]
        raise TypeError(
            f"encoder has no {', '.join(repr(m) for m in missing)}: INSID3 needs an encoder with Meta's "
            "get_intermediate_layers(x, n, reshape=True) contract and patch_size/embed_dim attributes "
            "(e.g. insid3lab.load_backbone(...))"
        )
    return encoder


def extract_features(
    encoder, images: Tensor, *, autocast_dtype: torch.dtype | None = None, layer: int = -1, norm: bool = True
) -> Tensor:
    """Patch features of one block (by default the last, after the final LayerNorm), as a feature map.

    Args:
        encoder: any module with Meta's ``get_intermediate_layers(x, n, reshape=...)`` contract.
        images: (B, 3, S, S) normalised images on the encoder's device.
        autocast_dtype: run the encoder under ``torch.autocast`` with this dtype (CUDA fast mode);
            None runs it in the encoder's own dtype.
        layer: the block, 0-based; -1 is the last block (the method's features). Other negative
            values count from the end (the encoder needs ``n_blocks``).
        norm: apply the final LayerNorm to that block (Meta's convention; the method uses it).
            Only blocks other than the default pass it on, so the default call is exactly
            ``get_intermediate_layers(x, n=1, reshape=True)``.

    Returns:
        (B, C, S/p, S/p) float32 features (CLS and register tokens stripped).
    """
    if isinstance(layer, bool) or not isinstance(layer, int):
        raise TypeError(f"layer={layer!r}: must be an integer block index (-1 is the last block)")
    if layer == -1 and norm:
        kwargs = {"n": 1}
    else:
        if layer < 0:
            n_blocks = getattr(encoder, "n_blocks", None)
            if n_blocks is None:
                raise ValueError(f"layer={layer}: negative block indices need an encoder with n_blocks")
            layer += int(n_blocks)
        kwargs = {"n": [layer], "norm": norm}
    with torch.inference_mode():
        if autocast_dtype is not None:
            # Casts are not cached: every weight is used once per pass, so a cache would only
            # keep a low-precision copy of the whole encoder alive next to the original.
            with torch.autocast(device_type=images.device.type, dtype=autocast_dtype, cache_enabled=False):
                feats = encoder.get_intermediate_layers(images, reshape=True, **kwargs)[0]
        else:
            feats = encoder.get_intermediate_layers(images, reshape=True, **kwargs)[0]
    return feats.float()


def l2_normalize(features: Tensor, dim: int = 1) -> Tensor:
    """Unit-length feature vectors along ``dim`` (default: channels of a (B, C, h, w) map)."""
    return F.normalize(features, p=2, dim=dim)
