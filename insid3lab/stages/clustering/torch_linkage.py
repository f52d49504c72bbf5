"""The ``"torch"`` clusterer: parallel reciprocal-nearest-neighbour rounds written with tensor operations.

It runs on the device that holds the features (CPU, CUDA; MPS computes on the CPU because it has
no float64), with one host synchronisation per round.

Average linkage is *reducible*: merging clusters a and b never brings the result closer to a
third cluster c than min(d(a, c), d(b, c)). Hence a pair of reciprocal nearest neighbours stays
reciprocal until it is merged, and merging every such pair below the threshold in parallel,
round after round, produces the same clusters as the sequential algorithm stopped at the
threshold (for exact ties between distances, see :func:`cluster_average_linkage_torch`).
"""

from __future__ import annotations

import math
from numbers import Real

import torch
from torch import Tensor

from insid3lab.stages.clustering.distances import cosine_distances
from insid3lab.stages.clustering.partition import canonical_labels
from insid3lab.stages.clustering.registry import register_clusterer

__all__ = ["cluster_average_linkage_torch", "torch_clusterer"]


def cluster_average_linkage_torch(D: Tensor, threshold: float) -> Tensor:
    """Average-linkage clustering of a precomputed distance matrix with tensor operations.

    Every round computes, for each current cluster a, its nearest cluster
    ``nn(a) = argmin_b L(a, b)`` under the average linkage
    ``L(a, b) = sum_{i in a, j in b} D[i, j] / (n_a n_b)``, and merges every reciprocal
    pair (``nn(nn(a)) == a``) whose linkage is strictly below ``threshold``, all at once.
    Rounds repeat until no reciprocal pair lies below the threshold. Because average
    linkage is reducible, the result is the partition that the sequential algorithm
    (e.g. scipy's nearest-neighbour chain) reaches by applying all its merges with a
    distance below the threshold.

    The state is a float64 matrix of summed pairwise distances between the current
    clusters, the matrix of their linkages and their sizes. A round costs one row-wise
    argmin over the matrix plus O(P M) updates for its P merges (the rows and columns of
    the merged clusters are rebuilt with ``index_select``/``index_add_``/``index_copy_``;
    the rows and columns of absorbed clusters are set to +inf and dropped once they are
    half of the matrix). Only the loop over rounds runs in Python, with one host
    synchronisation per round.

    Numerics: only the strict upper triangle of ``D`` is read (mirrored to the lower
    one), as scikit-learn does. The sums are float64. When D comes from
    :func:`cosine_distances` in float32, float16 or bfloat16, every entry is a multiple
    of 2**-24 (``1 - s`` is exact for s ≥ 1/2 and at least 1/2 otherwise), so every sum is
    exact for N < 32768 and every linkage is the correctly rounded mean, independent of
    the order of additions and of the device. scipy instead updates linkages with the
    Lance-Williams recurrence, which rounds at every merge; the two can differ only where
    a linkage lies within a few float64 ulps of the threshold or of a competing linkage.

    Ties: clusters are kept in the order of their largest member index (the slot in
    which scipy's nearest-neighbour chain keeps a cluster) and a tie for the nearest
    neighbour goes to the first cluster in that order (``argmin`` returns the first
    minimum, as scipy's scan keeps the first minimum it meets). Consequences:

    * ties that do not decide which pairs are reciprocal cannot change the partition;
      a group of identical rows, for instance, merges within itself (at distance 0 up
      to rounding) before it merges with anything else;
    * an isolated tie, a cell b at the same distance from a and c that are farther
      apart, pairs b with the one of lower index, in both implementations;
    * on lattice-like tie structures (equally spaced points on a line, vertices of a
      hypercube) the partition depends on the order of the merges. scipy's chain starts
      from the lowest slot and, on a tie, prefers the previous element of its chain, a
      sequential rule that no parallel round reproduces, so the two implementations can
      return different (equally valid) average-linkage partitions there. Continuous
      features practically never produce such exact ties.

    Args:
        D: (N, N) floating tensor of pairwise distances (any device). Entries must be
            finite; the diagonal and the strict lower triangle are ignored.
        threshold: merge while the linkage distance is strictly below this value.

    Returns:
        (N,) int64 tensor of canonical labels (see :func:`canonical_labels`) on D's device.
    """
    if D.ndim != 2 or D.shape[0] != D.shape[1]:
        raise ValueError(f"D must be a square (N, N) distance matrix, got shape {tuple(D.shape)}")
    if not D.is_floating_point():
        raise TypeError(f"D must be a floating-point tensor, got dtype {D.dtype}")
    if isinstance(threshold, bool) or not isinstance(threshold, Real) or math.isnan(threshold):
        raise ValueError(f"threshold must be a real number, got {threshold!r}")
    threshold = float(threshold)
    out_device = D.device
    # float64 is not available on MPS: compute on the CPU there.
    device = torch.device("cpu") if D.device.type == "mps" else D.device
    N = D.shape[0]
    if N <= 1:
        return torch.zeros(N, dtype=torch.long, device=out_device)

    upper = torch.triu(D.to(device), diagonal=1)
    # One of each mirrored pair is zero, so this sum is exact in D's dtype.
    sums = (upper + upper.T).to(torch.float64)  # (M, M) summed distances between clusters
    del upper
    linkage = sums.clone()  # (M, M) average linkage; +inf on the diagonal and for gone clusters
    linkage.diagonal().fill_(math.inf)
    sizes = torch.ones(N, dtype=torch.float64, device=device)  # (M,), 0 for gone clusters
    assign = torch.arange(N, device=device)  # cell -> position of its cluster
    active = N

    while True:
        M = sums.shape[0]
        positions = torch.arange(M, device=device)
        nearest = torch.argmin(linkage, dim=1)  # first minimum on ties
        nearest_dist = linkage.gather(1, nearest[:, None])[:, 0]
        merging = (nearest[nearest] == positions) & (nearest_dist < threshold)
        # Of each reciprocal pair the earlier cluster (src) is absorbed into the later one
        # (dst), so positions stay ordered by the largest member index.
        absorbed = merging & (positions < nearest)
        src = absorbed.nonzero()[:, 0]  # the one host synchronisation per round
        if src.numel() == 0:
            break
        dst = nearest[src]
        assign = torch.where(absorbed[assign], nearest[assign], assign)
        sizes.index_add_(0, dst, sizes.index_select(0, src))
        sizes.index_fill_(0, src, 0.0)
        active -= src.numel()

        # Rows of the merged clusters: row(dst) + row(src), then, among themselves, the
        # column of each src added into its dst. The (P, P) block is symmetrised so the
        # matrix stays exactly symmetric whatever the rounding.
        rows = sums.index_select(0, dst) + sums.index_select(0, src)  # (P, M)
        rows.index_add_(1, dst, rows.index_select(1, src))
        block = rows.index_select(1, dst)
        rows.index_copy_(1, dst, torch.minimum(block, block.T))
        sums.index_copy_(0, dst, rows)
        sums.index_copy_(1, dst, rows.T)

        rows = rows / (sizes.index_select(0, dst)[:, None] * sizes[None, :])
        rows.masked_fill_((sizes == 0)[None, :], math.inf)
        rows.scatter_(1, dst[:, None], math.inf)  # the diagonal
        linkage.index_copy_(0, dst, rows)
        linkage.index_copy_(1, dst, rows.T)
        linkage.index_fill_(0, src, math.inf)
        linkage.index_fill_(1, src, math.inf)

        if 2 * active <= M:  # drop the rows and columns of gone clusters
            kept = (sizes > 0).nonzero()[:, 0]
            new_position = torch.full((M,), -1, dtype=torch.long, device=device)
            new_position[kept] = torch.arange(kept.numel(), device=device)
            sums = sums.index_select(0, kept).index_select(1, kept)
            linkage = linkage.index_select(0, kept).index_select(1, kept)
            sizes = sizes.index_select(0, kept)
            assign = new_position[assign]

    return canonical_labels(assign).to(out_device)


@register_clusterer("torch", help="tensor operations on the features' device")
def torch_clusterer(X: Tensor, threshold: float) -> Tensor:
    """The ``"torch"`` clusterer: (N, C) features -> (N,) canonical labels on X's device."""
    return cluster_average_linkage_torch(cosine_distances(X), threshold)
