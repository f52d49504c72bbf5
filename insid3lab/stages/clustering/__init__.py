"""Stage 5: average-linkage agglomerative clustering of the target cells.

The N = h*w target cells (original, not debiased, L2-normalised features) are grouped
by average-linkage agglomerative clustering on the cosine distance
``D = 1 - clamp(X Xᵀ, -1, 1)``; two clusters are merged while their linkage distance
(the mean of all pairwise distances between their members) is strictly below
``1 - tau``.

The implementations live in the registry :data:`CLUSTERERS` (``fn(X, threshold) -> labels``,
see :data:`Clusterer`; add one with :func:`register_clusterer`, or pass any callable as
``method``). The built-in ones give the same labels (for exact ties between distances, see
:func:`cluster_average_linkage_torch`):

``"sklearn"``
    scikit-learn's ``AgglomerativeClustering(n_clusters=None, metric="precomputed",
    linkage="average", distance_threshold=1 - tau)`` on ``D`` moved to the CPU. It hands
    the strict upper triangle of ``D`` (as float64) to scipy's nearest-neighbour-chain
    linkage, sorts the merges by distance and keeps every merge whose distance is
    strictly below the threshold.
``"scipy"``
    :func:`cluster_average_linkage_scipy`: the same arithmetic as ``"sklearn"`` — the same
    float32 distance matrix, its strict upper triangle handed to scipy's linkage as float64,
    the same cut — without scikit-learn's input checks and index bookkeeping (about twice
    as fast at N = 4096). The partition is identical to ``"sklearn"``'s by construction.
    On the CPU the float64 vector is computed directly from half the matrix product
    (:func:`~insid3lab.stages.clustering.distances.condensed_cosine_distances`, the same values).
``"components"``
    :func:`~insid3lab.stages.clustering.components.cluster_average_linkage_components`:
    no cluster spans two connected components of the graph "distance below the
    threshold", so scipy's linkage runs on each component's sub-matrix (singletons and
    pairs need none). Quadratic in the component sizes instead of N; a single giant
    component falls back to the full-matrix run. On the CPU the distances and the graph
    come from half the matrix product, and float32/float64 cells are numbered in an order
    in which scipy's linkage runs faster
    (:func:`~insid3lab.stages.clustering.components.cluster_cosine_components`; for what the
    order can change, exact ties and float64 rounding, see "Cell order" in
    :mod:`~insid3lab.stages.clustering.components`).
``"torch"``
    :func:`cluster_average_linkage_torch`, a parallel reciprocal-nearest-neighbour
    algorithm written with tensor operations, which runs on the device that holds the
    features (CPU, CUDA; MPS computes on the CPU because it has no float64).
``"auto"``
    ``"components"`` for CPU tensors, ``"torch"`` otherwise: the fastest exact path
    measured on each (``benchmarks/bench_clustering.py``).

Average linkage is *reducible*: merging clusters a and b never brings the result closer
to a third cluster c than min(d(a, c), d(b, c)). Hence a pair of reciprocal nearest
neighbours stays reciprocal until it is merged, and merging every such pair below the
threshold in parallel, round after round, produces the same clusters as the sequential
algorithm stopped at the threshold.

Labels are canonical in every path: clusters are numbered 0..K-1 in the order of their
smallest member index (cell 0 is always in cluster 0, the first cell not in cluster 0
opens cluster 1, ...). The numbering that scikit-learn itself produces depends on the
shape of the dendrogram; the canonical numbering depends only on the partition.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from numbers import Real

import numpy as np
import torch
from torch import Tensor

from insid3lab.stages.clustering.components import (
    as_numpy_distances,
    cluster_average_linkage_components,
    cluster_cosine_components,
    condensed_matrix,
    cosine_asymmetry_bound,
    cut_average_linkage,
)
from insid3lab.stages.clustering.distances import condensed_cosine_distances, thread_workspace

__all__ = [
    "CLUSTERERS",
    "Clusterer",
    "agglomerative_clustering",
    "canonical_labels",
    "cluster_average_linkage_components",
    "cluster_average_linkage_scipy",
    "cluster_average_linkage_torch",
    "cosine_distances",
    "register_clusterer",
    "resolve_clusterer",
]


def cosine_distances(X: Tensor) -> Tensor:
    """Pairwise cosine distances of L2-normalised rows.

    Args:
        X: (N, C) floating tensor of L2-normalised features.

    Returns:
        (N, N) tensor ``1 - clamp(X @ Xᵀ, -1, 1)`` in X's dtype and on X's device. Values
        lie in [0, 2]. The diagonal is close to, not necessarily exactly, 0, and the matrix
        need not be exactly symmetric (the two triangles come from separate dot products);
        both clustering paths read only the strict upper triangle.
    """
    if X.ndim != 2:
        raise ValueError(f"X must be a 2-D (N, C) tensor of features, got shape {tuple(X.shape)}")
    # In place on the fresh product: -s + 1 rounds exactly like 1 - s, without two more N x N buffers.
    return (X @ X.T).clamp_(-1, 1).neg_().add_(1)


def canonical_labels(labels: Tensor) -> Tensor:
    """Renumber a labelling so that clusters are ordered by their smallest member index.

    Args:
        labels: (N,) integer tensor, any cluster ids (not necessarily contiguous).

    Returns:
        (N,) int64 tensor on the same device with values 0..K-1: the cluster of cell 0 is
        0, and cluster k+1 is the one whose smallest member comes first among the clusters
        not yet numbered. Two labellings of the same partition give equal tensors.
    """
    if labels.ndim != 1:
        raise ValueError(f"labels must be a 1-D (N,) tensor, got shape {tuple(labels.shape)}")
    N = labels.shape[0]
    if N == 0:
        return labels.to(torch.long)
    _, inverse = torch.unique(labels.to(torch.long), return_inverse=True)
    K = int(inverse.max()) + 1
    idx = torch.arange(N, device=labels.device)
    first = torch.full((K,), N, dtype=torch.long, device=labels.device)
    first.scatter_reduce_(0, inverse, idx, reduce="amin")
    rank = torch.empty_like(first)
    rank[torch.argsort(first)] = torch.arange(K, device=labels.device)
    return rank[inverse]


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


def _check_tau(tau: float) -> float:
    if isinstance(tau, bool) or not isinstance(tau, Real) or not (0.0 < float(tau) <= 1.0):
        raise ValueError(f"tau must be a real number in (0, 1], got {tau!r}")
    return float(tau)


def cluster_average_linkage_scipy(D: Tensor, threshold: float) -> Tensor:
    """scikit-learn's average-linkage computation, called on scipy directly.

    ``AgglomerativeClustering(metric="precomputed", linkage="average", distance_threshold=t)``
    takes the strict upper triangle of the distance matrix row by row, gives it to
    ``scipy.cluster.hierarchy.linkage(method="average")`` (which converts it to float64, an
    exact widening of float32) and keeps the merges whose distance is strictly below ``t``
    (the number of clusters is ``count(distance >= t) + 1``; the merges are sorted by
    distance). This function builds the same float64 vector (the strict upper triangle in
    row-major order, selected with a cached boolean mask), so the linkage matrix is
    identical, and cuts it at the same place (:func:`cut_average_linkage`): the partition is
    identical.

    Args:
        D: (N, N) distance matrix (any device; copied to the CPU), N >= 2.
        threshold: merge while the linkage distance is strictly below this value.

    Returns:
        (N,) int64 canonical labels on the CPU.
    """
    return canonical_labels(torch.from_numpy(cut_average_linkage(condensed_matrix(D), threshold)))


# ------------------------------------------------------------------------------ registry

#: A clusterer: ``fn(X, threshold) -> labels``.
#:
#: * ``X``: (N, C) floating tensor of L2-normalised features, N >= 2, finite, on any device;
#: * ``threshold``: Python float ``1 - tau`` in [0, 1); clusters merge while their average
#:   linkage cosine distance is strictly below it;
#: * ``labels``: (N,) integer tensor of cluster ids, any numbering, on any device.
#:
#: :func:`agglomerative_clustering` checks the shape, renumbers canonically and moves the
#: labels to X's device, so every clusterer's output is compared and used in one form.
Clusterer = Callable[[Tensor, float], Tensor]


def _sklearn(X: Tensor, threshold: float) -> Tensor:
    from sklearn.cluster import AgglomerativeClustering

    model = AgglomerativeClustering(
        n_clusters=None,
        metric="precomputed",
        linkage="average",
        distance_threshold=threshold,
    )
    labels = model.fit_predict(as_numpy_distances(cosine_distances(X)))
    return torch.from_numpy(np.asarray(labels, dtype=np.int64))


def cosine_condensed(X: Tensor) -> np.ndarray:
    """The float64 condensed cosine distances of X's rows, the vector scipy's linkage reads.

    On the CPU from half the product, in this thread's workspace (valid until the thread's
    next clustering: hand it to scipy, which copies it); elsewhere from :func:`cosine_distances`
    on the device. Equal values either way (see :mod:`~insid3lab.stages.clustering.distances`).

    Args:
        X: (N, C) floating tensor of L2-normalised features, N >= 2.
    """
    if X.device.type == "cpu":
        return condensed_cosine_distances(X, workspace=thread_workspace()).condensed
    return condensed_matrix(cosine_distances(X))


def _scipy(X: Tensor, threshold: float) -> Tensor:
    return canonical_labels(torch.from_numpy(cut_average_linkage(cosine_condensed(X), threshold)))


def _torch(X: Tensor, threshold: float) -> Tensor:
    return cluster_average_linkage_torch(cosine_distances(X), threshold)


def _components(X: Tensor, threshold: float) -> Tensor:
    if X.device.type == "cpu":  # distances and threshold graph from half the product, in a fast order
        return cluster_cosine_components(X, threshold)
    return cluster_average_linkage_components(cosine_distances(X), threshold, asymmetry=cosine_asymmetry_bound(X))


def _auto(X: Tensor, threshold: float) -> Tensor:
    # The fastest exact path measured on each device (benchmarks/bench_clustering.py): on the
    # CPU the component decomposition (never slower than one scipy run by more than the cost
    # of the threshold graph); elsewhere the tensor path on the features' device.
    return (_components if X.device.type == "cpu" else _torch)(X, threshold)


#: Registered clusterers by name (see :data:`Clusterer` for the signature). All built-in
#: entries give the same partition.
CLUSTERERS: dict[str, Clusterer] = {
    "auto": _auto,
    "sklearn": _sklearn,
    "scipy": _scipy,
    "torch": _torch,
    "components": _components,
}


def register_clusterer(name: str, fn: Clusterer) -> None:
    """Make ``fn`` selectable as ``method=name`` (replaces an entry of the same name).

    Args:
        name: a non-empty string.
        fn: a :data:`Clusterer`, ``fn(X (N, C), threshold) -> (N,) labels``.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"clusterer name must be a non-empty string, got {name!r}")
    if not callable(fn):
        raise TypeError(f"clusterer {name!r} must be callable fn(X, threshold) -> labels, got {type(fn).__name__}")
    CLUSTERERS[name] = fn


def resolve_clusterer(method: str | Clusterer) -> Clusterer:
    """The clusterer for a registered name or a callable.

    Raises:
        ValueError: for an unknown name, listing the registered ones.
    """
    if callable(method):
        return method
    if isinstance(method, str) and method in CLUSTERERS:
        return CLUSTERERS[method]
    raise ValueError(f"unknown clustering method {method!r}. Try one of {', '.join(map(repr, CLUSTERERS))}")


def agglomerative_clustering(X: Tensor, tau: float, *, method: str | Clusterer = "auto") -> Tensor:
    """Partition the target cells by average-linkage clustering on cosine distance.

    Clusters are merged while their average-linkage cosine distance is strictly below
    ``1 - tau``; a larger tau therefore gives more, smaller clusters (tau = 1: every cell
    alone).

    Args:
        X: (N, C) floating tensor, the L2-normalised features of the N = h*w target cells.
        tau: similarity threshold in (0, 1]; the distance threshold is ``1 - tau``.
        method: a name from :data:`CLUSTERERS` or a :data:`Clusterer` callable.
            ``"sklearn"`` runs scikit-learn's ``AgglomerativeClustering`` on the distance
            matrix moved to the CPU (the reference computation); ``"scipy"`` runs the same
            computation without scikit-learn's overheads; ``"torch"`` runs
            :func:`cluster_average_linkage_torch` on X's device; ``"components"`` runs
            scipy's linkage per connected component of the threshold graph
            (:mod:`~insid3lab.stages.clustering.components`); ``"auto"`` picks
            ``"components"`` for CPU tensors and ``"torch"`` otherwise (CUDA, MPS).

    Returns:
        (N,) int64 tensor of cluster labels 0..K-1 on X's device, numbered canonically
        (clusters in the order of their smallest member), identical for every built-in method.
    """
    fn = resolve_clusterer(method)
    tau = _check_tau(tau)
    if not isinstance(X, Tensor) or X.ndim != 2:
        shape = tuple(X.shape) if isinstance(X, Tensor) else type(X).__name__
        raise ValueError(f"X must be a 2-D (N, C) tensor of features, got {shape}")
    if not X.is_floating_point():
        raise TypeError(f"X must be a floating-point tensor, got dtype {X.dtype}")
    if not bool(torch.isfinite(X).all()):
        raise ValueError("X must contain only finite values")

    N = X.shape[0]
    if N <= 1:  # scikit-learn needs two samples; a single cell is a single cluster
        return torch.zeros(N, dtype=torch.long, device=X.device)
    labels = fn(X, float(1.0 - tau))
    if not isinstance(labels, Tensor) or labels.shape != (N,) or labels.is_floating_point() or labels.is_complex():
        got = f"{labels.dtype} tensor of shape {tuple(labels.shape)}" if isinstance(labels, Tensor) else type(labels)
        raise ValueError(f"clusterer {method!r} must return an (N,) = ({N},) integer tensor of labels, got {got}")
    return canonical_labels(labels.to(X.device))
