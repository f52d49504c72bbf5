"""The target's average-linkage tree: built once, cut at any τ.

Average linkage is monotone (a merge is never lower than the merges below it), so the clusters
at a threshold ``t = 1 - τ`` are the subtrees of the full dendrogram whose merges all lie
strictly below ``t``. One tree therefore answers every τ: building it is one clustering (the
``"scipy"`` path of :mod:`~insid3lab.stages.clustering`, without its cut), and each cut is a
pass over its N - 1 merges. The partition of a cut is the one the built-in exact clusterers
give at that τ (:data:`TREE_CLUSTERERS`): ``"scipy"`` is this computation and ``"sklearn"``
equals it by construction; ``"components"`` and ``"auto"`` equal it up to exact ties between
competing linkages (see "Cell order" in :mod:`~insid3lab.stages.clustering.components`).

The explorers keep one tree per encoded target, so moving the τ slider re-cuts instead of
re-clustering (:class:`insid3lab.lab.cluster_cache.TargetClusters`).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from insid3lab.stages.clustering import _check_tau, canonical_labels, cosine_condensed
from insid3lab.stages.clustering.components import average_linkage_matrix, cut_linkage_matrix

__all__ = ["TREE_CLUSTERERS", "cut_tree", "linkage_tree"]

#: Clusterer names whose partition at every τ is a cut of :func:`linkage_tree`.
TREE_CLUSTERERS = frozenset({"auto", "sklearn", "scipy", "components"})


def linkage_tree(X: Tensor) -> np.ndarray:
    """The full average-linkage dendrogram of the cells on cosine distance.

    Args:
        X: (N, C) floating tensor of L2-normalised features, finite, on any device (the
            distances: :func:`~insid3lab.stages.clustering.cosine_condensed`).

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
    tau = _check_tau(tau)
    Z = np.asarray(Z, dtype=np.float64)
    if Z.ndim != 2 or Z.shape[1] != 4:
        raise ValueError(f"Z must be an (N - 1, 4) linkage matrix, got shape {Z.shape}")
    if Z.shape[0] == 0:
        return torch.zeros(1, dtype=torch.long)
    return canonical_labels(torch.from_numpy(cut_linkage_matrix(Z, 1.0 - tau)))
