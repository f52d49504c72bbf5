"""The stage itself: validate, run a registered clusterer, number the clusters canonically.

Labels are canonical whichever clusterer ran: clusters are numbered 0..K-1 in the order of their
smallest member index (cell 0 is always in cluster 0, the first cell not in cluster 0 opens
cluster 1, ...). The numbering that scikit-learn itself produces depends on the shape of the
dendrogram; the canonical numbering depends only on the partition.
"""

from __future__ import annotations

from numbers import Real

import torch
from torch import Tensor

from insid3lab.stages.clustering.registry import Clusterer, resolve_clusterer

__all__ = ["agglomerative_clustering", "canonical_labels", "check_tau"]


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


def check_tau(tau: float) -> float:
    """``tau`` as a float, or a ValueError unless it is a real number in (0, 1]."""
    if isinstance(tau, bool) or not isinstance(tau, Real) or not (0.0 < float(tau) <= 1.0):
        raise ValueError(f"tau must be a real number in (0, 1], got {tau!r}")
    return float(tau)


def agglomerative_clustering(X: Tensor, tau: float, *, method: str | Clusterer = "auto") -> Tensor:
    """Partition the target cells by average-linkage clustering on cosine distance.

    Clusters are merged while their average-linkage cosine distance is strictly below
    ``1 - tau``; a larger tau therefore gives more, smaller clusters (tau = 1: every cell
    alone).

    Args:
        X: (N, C) floating tensor, the L2-normalised features of the N = h*w target cells.
        tau: similarity threshold in (0, 1]; the distance threshold is ``1 - tau``.
        method: a name from :data:`~insid3lab.stages.clustering.registry.CLUSTERERS` or a
            :data:`~insid3lab.stages.clustering.registry.Clusterer` callable. The built-in
            names (``"auto"``, ``"sklearn"``, ``"scipy"``, ``"torch"``, ``"components"``; see
            :mod:`insid3lab.stages.clustering`) give the same partition.

    Returns:
        (N,) int64 tensor of cluster labels 0..K-1 on X's device, numbered canonically
        (clusters in the order of their smallest member), identical for every built-in method.
    """
    fn = resolve_clusterer(method)
    tau = check_tau(tau)
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
