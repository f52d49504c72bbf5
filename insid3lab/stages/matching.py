"""Stage 4: candidate localisation in the debiased space (forward and backward matching)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["forward_similarity", "forward_mask", "nearest_reference_cells", "backward_votes", "backward_mask", "candidates"]


def forward_similarity(target_deb: Tensor, prototype: Tensor) -> Tensor:
    """s(x) = <tgt_deb(x), p> for every target cell.

    Args:
        target_deb: (C, h, w) debiased target features.
        prototype: (C,) reference prototype.

    Returns:
        (h, w) similarity map.
    """
    return torch.einsum("bchw,cd->bhw", target_deb.unsqueeze(0), prototype.unsqueeze(1))[0]


def forward_mask(similarity: Tensor, quantile: float = 0.9) -> Tensor:
    """Cells with s > 0; if none, cells above the ``quantile`` of s.

    Computed without a host synchronisation: both rules are evaluated and one is selected on-device.

    Args:
        similarity: (h, w) forward similarity.

    Returns:
        (h, w) bool.
    """
    positive = similarity > 0
    fallback = similarity > torch.quantile(similarity.flatten(), quantile)
    return torch.where(positive.any(), positive, fallback)


def nearest_reference_cells(reference_deb: Tensor, target_deb: Tensor) -> Tensor:
    """For each target cell, the index of its most similar reference cell (first on ties).

    Args:
        reference_deb: (C, hr, wr) debiased features of one shot.
        target_deb: (C, h, w) debiased target features.

    Returns:
        (h, w) long indices into the flattened (hr*wr) reference grid.
    """
    sim = torch.einsum("bchw,bcxy->bhwxy", reference_deb.unsqueeze(0), target_deb.unsqueeze(0))[0]
    hr, wr, h, w = sim.shape
    return sim.reshape(hr * wr, h * w).argmax(dim=0).reshape(h, w)


def backward_votes(references_deb: Tensor, target_deb: Tensor, masks_low: Tensor) -> Tensor:
    """Number of shots whose nearest reference cell (for each target cell) is foreground.

    Args:
        references_deb: (k, C, hr, wr) debiased reference features.
        target_deb: (C, h, w) debiased target features.
        masks_low: (k, hr, wr) bool reference masks on the feature grid.

    Returns:
        (h, w) int32 votes in [0, k].
    """
    k = references_deb.shape[0]
    h, w = target_deb.shape[-2:]
    votes = torch.zeros(h, w, dtype=torch.int32, device=target_deb.device)
    for s in range(k):  # a handful of shots; every cell is handled at once
        idx = nearest_reference_cells(references_deb[s], target_deb)
        votes += masks_low[s].reshape(-1)[idx].to(torch.int32)
    return votes


def backward_mask(votes: Tensor, shots: int) -> Tensor:
    """Majority rule: votes >= ceil(k / 2). (h, w) int -> (h, w) bool."""
    return votes >= math.ceil(shots / 2)


def candidates(forward: Tensor, backward: Tensor) -> Tensor:
    """candidates = forward ∧ backward, (h, w) bool."""
    return forward & backward
