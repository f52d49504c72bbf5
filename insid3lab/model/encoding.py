"""Encoded images and the small records around them: what the pipeline keeps per image."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import Tensor

__all__ = ["Encoded", "SegmentManyError", "describe"]


@dataclass
class Encoded:
    """One encoded image (a reference shot or a target).

    Attributes:
        image: (1, 3, S, S) normalised network input.
        orig_size: (H, W) of the image as given.
        features: (C, h, w) float32 raw features.
        features_norm: (C, h, w) L2-normalised features.
        size: the input side S it was encoded at.
        name: a printable description of where it came from.
        source: the object the user passed (kept to re-encode at another size).
        mask: (S, S) bool reference mask, or None.
        mask_low: (h, w) bool reference mask on the feature grid, or None.
        mask_source: the mask object the user passed.
        mask_value: the label selected from a label map, or None.
        label: the name of the concept the shot belongs to, or None (the unnamed concept).
    """

    image: Tensor
    orig_size: tuple[int, int]
    features: Tensor
    features_norm: Tensor
    size: int
    name: str
    source: Any = None
    mask: Tensor | None = None
    mask_low: Tensor | None = None
    mask_source: Any = None
    mask_value: int | None = None
    label: str | None = None


class SegmentManyError(RuntimeError):
    """One target of :meth:`INSID3.segment_many` failed.

    Attributes:
        index: position of the failing target.
        target: the target as given.
        masks: the masks computed before it (nothing is lost).
    """

    def __init__(self, message: str, index: int, target: Any, masks: list):
        super().__init__(message)
        self.index = index
        self.target = target
        self.masks = masks


def describe(x: Any) -> str:
    """A short printable name for an image or mask as the user gave it (path, tensor shape, ...)."""
    if isinstance(x, (str, os.PathLike)):
        return str(x)
    if isinstance(x, Tensor):
        return f"tensor{tuple(x.shape)}"
    if isinstance(x, np.ndarray):
        return f"array{x.shape}"
    fn = getattr(x, "filename", None)
    if fn:
        return str(fn)
    return type(x).__name__
