"""The target's average-linkage tree: built once, cut at any τ.

Average linkage is monotone (a merge is never lower than the merges below it), so the clusters
at a threshold ``t = 1 - τ`` are the subtrees of the full dendrogram whose merges all lie
strictly below ``t``. One tree therefore answers every τ: building it is one run of scipy's
average linkage on the condensed cosine distances (:func:`average_linkage_matrix`, the
``"scipy"`` clusterer without its cut), and each cut is a pass over its N - 1 merges
(:func:`cut_linkage_matrix`, the cut scikit-learn makes). The partition of a cut is the one the
clusterers registered with ``tree=True`` give at that τ
(:class:`~insid3lab.stages.clustering.registry.ClustererEntry`): ``"scipy"`` is this
computation and ``"sklearn"`` equals it by construction; ``"components"`` and ``"auto"`` equal
it up to exact ties between competing linkages (see "Cell order" in
:mod:`~insid3lab.stages.clustering.components`).

The explorers keep one tree per encoded target, so moving the τ slider re-cuts instead of
re-clustering (:class:`insid3lab.lab.cluster_cache.TargetClusters`).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from insid3lab.stages.clustering.distances import cosine_condensed
from insid3lab.stages.clustering.partition import canonical_labels, check_tau

__all__ = ["average_linkage_matrix", "cut_average_linkage", "cut_linkage_matrix", "cut_tree", "linkage_tree"]


def average_linkage_matrix(condensed: np.ndarray) -> np.ndarray:
    """scipy's average-linkage matrix of a condensed float64 distance vector (n >= 2 points).

    Returns:
        (n - 1, 4) float64 linkage matrix (merged ids, distance, size; merges sorted by distance).
    """
    from scipy.cluster.hierarchy import linkage

    return linkage(condensed, method="average")


def cut_linkage_matrix(Z: np.ndarray, threshold: float) -> np.ndarray:
    """The clusters of a linkage matrix cut as scikit-learn cuts it: merges strictly below ``threshold``.

    ``fcluster`` at the largest float64 below ``t`` keeps the clusters whose cophenetic
    distances are all below ``t``; average linkage is monotone, so this is the partition made
    by the merges whose distance is strictly below ``t``, which scikit-learn keeps.

    Returns:
        (n,) int64 numpy array of cluster ids (1-based, not canonical).
    """
    from scipy.cluster.hierarchy import fcluster

    return fcluster(Z, np.nextafter(threshold, -np.inf), criterion="distance").astype(np.int64)


def cut_average_linkage(condensed: np.ndarray, threshold: float) -> np.ndarray:
    """scipy's average linkage of a condensed distance vector, cut as scikit-learn cuts it.

    scikit-learn's ``AgglomerativeClustering(linkage="average", distance_threshold=t)`` runs
    ``scipy.cluster.hierarchy.linkage(method="average")`` on the float64 condensed matrix and
    keeps the merges whose distance is strictly below ``t`` (:func:`cut_linkage_matrix`).

    Args:
        condensed: (n (n - 1) / 2,) float64 strict upper triangle in row-major order, n >= 2.
        threshold: merge while the linkage distance is strictly below this value.

    Returns:
        (n,) int64 numpy array of cluster ids (1-based, not canonical).
    """
    return cut_linkage_matrix(average_linkage_matrix(condensed), threshold)


def linkage_tree(X: Tensor) -> np.ndarray:
    """The full average-linkage dendrogram of the cells on cosine distance.

    Args:
        X: (N, C) floating tensor of L2-normalised features, finite, on any device (the
            distances: :func:`~insid3lab.stages.clustering.distances.cosine_condensed`).

    Returns:
        (N - 1, 4) float64 scipy linkage matrix on the host ((0, 4) for one cell).
    """
    if not isinstance(X, Tensor) or X.ndim != 2 or not X.is_floating_point():
        shape = tuple(X.shape) if isinstance(X, Tensor) else type(X).__name__
        raise ValueError(f"X must be a 2-D (N, C) floating tensor of features, got {shape}")
    if not bool(torch.isfinite(X).all()):
        raise ValueError("X must contain only finite values")
    N = X.shape[0]
    if N == 0:
        raise ValueError("X must hold at least one cell, got shape (0, C)")
    if N == 1:
        return np.zeros((0, 4), dtype=np.float64)
    return average_linkage_matrix(cosine_condensed(X))


def cut_tree(Z: np.ndarray, tau: float) -> Tensor:
    """The clusters at τ: the merges of ``Z`` strictly below ``1 - tau``.

    Args:
        Z: (N - 1, 4) linkage matrix from :func:`linkage_tree`.
        tau: similarity threshold in (0, 1].

    Returns:
        (N,) int64 canonical labels on the CPU (clusters numbered by their smallest member).
    """
    tau = check_tau(tau)
    Z = np.asarray(Z, dtype=np.float64)
    if Z.ndim != 2 or Z.shape[1] != 4:
        raise ValueError(f"Z must be an (N - 1, 4) linkage matrix, got shape {Z.shape}")
    if Z.shape[0] == 0:
        return torch.zeros(1, dtype=torch.long)
    return canonical_labels(torch.from_numpy(cut_linkage_matrix(Z, 1.0 - tau)))
