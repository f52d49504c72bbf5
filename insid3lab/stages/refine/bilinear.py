"""The ``"bilinear"`` refiner: no refinement, the method as the authors run it by default
(``mask_refiner="bilinear"``)."""

from __future__ import annotations

from torch import Tensor

from insid3lab.stages.refine.registry import register_refiner

__all__ = ["bilinear"]


@register_refiner("bilinear", help="no refinement")
def bilinear(mask: Tensor, image: Tensor) -> Tensor:
    """No refinement: the bilinearly upsampled mask as it is. (S, S) bool -> (S, S) bool."""
    return mask
