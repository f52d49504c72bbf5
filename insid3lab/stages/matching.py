"""Stage 4: candidate localisation in the debiased space (forward and backward matching)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = [
    "forward_similarity",
    "forward_mask",
    "nearest_reference_cells",
    "backward_votes",
    "backward_mask",
    "candidates",
]


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


#: Fewest target cells in one matrix product of the chunked path. Narrower products can be
#: routed by BLAS to matrix-vector kernels whose rounding differs from the full product's;
#: a narrower selection is padded with other cells and a short last chunk joins the one before.
MIN_CHUNK = 64


def nearest_reference_cells(
    reference_deb: Tensor,
    target_deb: Tensor,
    *,
    cells: Tensor | None = None,
    chunk_size: int | None = None,
) -> Tensor:
    """For each target cell, the index of its most similar reference cell (first on ties).

    Without ``cells`` and ``chunk_size`` the whole (hr*wr) x (h*w) similarity matrix is
    formed at once. With either, only an argmax per target cell is kept: the similarities
    of at most ``chunk_size`` target cells exist at a time (one matrix product per chunk),
    and only the target cells in ``cells`` are matched. Every product has at least
    ``MIN_CHUNK`` columns, so each similarity comes from the same matrix-product kernel
    as in the whole matrix and the indices are equal.

    Args:
        reference_deb: (C, hr, wr) debiased features of one shot.
        target_deb: (C, h, w) debiased target features.
        cells: optional (M,) long indices into the flattened (h*w) target grid; only these
            cells are matched.
        chunk_size: optional number of target cells per matrix product (>= 1; raised to
            ``MIN_CHUNK``). Memory for the similarities: 4 * hr*wr * chunk_size bytes.

    Returns:
        (h, w) long indices into the flattened (hr*wr) reference grid; -1 at the cells
        left out by ``cells``.
    """
    if cells is None and chunk_size is None:
        sim = torch.einsum("bchw,bcxy->bhwxy", reference_deb.unsqueeze(0), target_deb.unsqueeze(0))[0]
        hr, wr, h, w = sim.shape
        return sim.reshape(hr * wr, h * w).argmax(dim=0).reshape(h, w)
    if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1):
        raise ValueError(f"chunk_size={chunk_size!r}: must be a positive integer or None")
    C = reference_deb.shape[0]
    h, w = target_deb.shape[-2:]
    N = h * w
    device = target_deb.device
    R = reference_deb.reshape(C, -1)
    T = target_deb.reshape(C, N)
    if cells is None:
        selected = torch.arange(N, device=device)
    else:
        selected = cells.reshape(-1).to(device=device, dtype=torch.long)
        if selected.numel() and (int(selected.min()) < 0 or int(selected.max()) >= N):
            raise ValueError(
                f"cells must index the flattened target grid, i.e. lie in [0, {N}); "
                f"got values in [{int(selected.min())}, {int(selected.max())}]"
            )
    out = torch.full((N,), -1, dtype=torch.long, device=device)
    M = selected.numel()
    if M == 0:
        return out.reshape(h, w)
    columns = selected
    pad = min(MIN_CHUNK, N) - M
    if pad > 0:
        free = torch.ones(N, dtype=torch.bool, device=device)
        free[selected] = False
        columns = torch.cat([selected, free.nonzero()[:pad, 0]])
    total = columns.numel()
    step = max(chunk_size or total, MIN_CHUNK)
    found = torch.empty(total, dtype=torch.long, device=device)
    start = 0
    while start < total:
        stop = start + step
        if total - stop < MIN_CHUNK:  # a short tail joins this chunk
            stop = total
        block = T.index_select(1, columns[start:stop])  # (C, m)
        found[start:stop] = (block.T @ R).argmax(dim=1)  # (m, hr*wr) similarities, one argmax per row
        start = stop
    out[selected] = found[:M]
    return out.reshape(h, w)


def backward_votes(
    references_deb: Tensor,
    target_deb: Tensor,
    masks_low: Tensor,
    *,
    cells: Tensor | None = None,
    chunk_size: int | None = None,
) -> Tensor:
    """Number of shots whose nearest reference cell (for each target cell) is foreground.

    Args:
        references_deb: (k, C, hr, wr) debiased reference features.
        target_deb: (C, h, w) debiased target features.
        masks_low: (k, hr, wr) bool reference masks on the feature grid.
        cells: optional (M,) long indices into the flattened target grid: votes are counted
            only there (0 elsewhere). Cells outside the forward mask can never be candidates,
            so the pipeline passes the forward cells.
        chunk_size: target cells per similarity product (see :func:`nearest_reference_cells`).

    Returns:
        (h, w) int32 votes in [0, k].
    """
    k = references_deb.shape[0]
    h, w = target_deb.shape[-2:]
    votes = torch.zeros(h, w, dtype=torch.int32, device=target_deb.device)
    for s in range(k):  # a handful of shots; every cell is handled at once
        idx = nearest_reference_cells(references_deb[s], target_deb, cells=cells, chunk_size=chunk_size)
        if cells is None:
            votes += masks_low[s].reshape(-1)[idx].to(torch.int32)
        else:
            hit = masks_low[s].reshape(-1)[idx.clamp_min(0)] & (idx >= 0)
            votes += hit.to(torch.int32)
    return votes


def backward_mask(votes: Tensor, shots: int) -> Tensor:
    """Majority rule: votes >= ceil(k / 2). (h, w) int -> (h, w) bool."""
    return votes >= math.ceil(shots / 2)


def candidates(forward: Tensor, backward: Tensor) -> Tensor:
    """candidates = forward ∧ backward, (h, w) bool."""
    return forward & backward
