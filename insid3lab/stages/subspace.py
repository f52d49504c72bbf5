"""Stage 2: the positional subspace and debiasing.

A black image carries no content, so the variation of its DINOv3 features across
positions is positional. The leading left singular vectors of those (centred)
features span a "positional subspace"; projecting every feature onto its
orthogonal complement removes position from the similarity between cells. The
paper's text estimates the subspace from noise images instead: then the features
of all images are pooled (see :func:`positional_svd`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from insid3lab.core.warn import warn as _warn

__all__ = ["positional_svd", "clamp_components", "complement_projector", "debias"]


def positional_svd(features_norm: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """SVD of the centred, normalised features of content-free images (the black image, or noise images).

    Follows ``_build_positional_basis`` of the authors' ``models/insid3.py``, whose rearrangement
    ``b c h w -> c (b h w)`` already pools a batch: with n images, the n*h*w cells of all of them are
    the columns of one (C, n*h*w) matrix, centred by one mean over all of them, then decomposed. Pooling
    (rather than one SVD per image) gives one basis whose leading directions are those along which
    features vary with position in every image alike; what a noise image adds at a cell varies from
    image to image and spreads over many weak directions. One shared mean (rather than one per image)
    keeps the n = 1 case exactly the authors' black-image basis.

    Args:
        features_norm: (n, C, h, w) or (C, h, w) L2-normalised features; n = 1 for the black image.

    Returns:
        U: (C, m) left singular vectors, m = min(C, n*h*w), in decreasing singular-value order.
        S: (m,) singular values.
        mean: (C,) the mean over all positions of all images that was subtracted.
    """
    f = features_norm
    if f.ndim == 4:
        f = f.permute(1, 0, 2, 3)  # (C, B, h, w): all positions of all images
    E = f.reshape(f.shape[0], -1)
    mean = E.mean(dim=1, keepdim=True)
    E = E - mean
    U, S, _ = torch.linalg.svd(E, full_matrices=False)
    return U, S, mean[:, 0]


def clamp_components(components: int, channels: int, positions: int) -> int:
    """``components`` limited to min(C, h*w), with a warning when it had to be reduced."""
    limit = min(channels, positions)
    if components > limit:
        _warn(
            f"svd_components={components} exceeds min(C, h*w) = min({channels}, {positions}) = {limit}; using {limit}"
        )
        return limit
    return components


def complement_projector(basis: Tensor) -> Tensor:
    """I − U Uᵀ for a (C, r) orthonormal basis U: (C, C)."""
    C = basis.shape[0]
    return torch.eye(C, device=basis.device, dtype=basis.dtype) - basis @ basis.T


def debias(features_norm: Tensor, projector: Tensor) -> Tensor:
    """Remove the positional subspace from every cell and re-normalise.

    Args:
        features_norm: (B, C, h, w) L2-normalised features.
        projector: (C, C) ``complement_projector(U)``.

    Returns:
        (B, C, h, w) features, X_deb = normalise((I − U Uᵀ) X) per cell.
    """
    B, C, h, w = features_norm.shape
    X = features_norm.reshape(B, C, h * w)
    X_deb = torch.matmul(projector.unsqueeze(0), X).reshape(B, C, h, w)
    return F.normalize(X_deb, p=2, dim=1)
