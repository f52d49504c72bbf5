"""The ``"scipy"`` clusterer: scikit-learn's average-linkage computation, called on scipy directly.

``AgglomerativeClustering(metric="precomputed", linkage="average", distance_threshold=t)``
takes the strict upper triangle of the distance matrix row by row, gives it to
``scipy.cluster.hierarchy.linkage(method="average")`` (which converts it to float64, an exact
widening of float32) and keeps the merges whose distance is strictly below ``t`` (the number of
clusters is ``count(distance >= t) + 1``; the merges are sorted by distance). This module builds
the same float64 vector and cuts the linkage at the same place, without scikit-learn's input
checks and index bookkeeping (about twice as fast at N = 4096): the partition is identical to
``"sklearn"``'s by construction. On the CPU the vector is computed directly from half the
matrix product (:func:`~insid3lab.stages.clustering.distances.cosine_condensed`, the same
values).
"""

from __future__ import annotations

import torch
from torch import Tensor

from insid3lab.stages.clustering.distances import condensed_matrix, cosine_condensed
from insid3lab.stages.clustering.partition import canonical_labels
from insid3lab.stages.clustering.registry import register_clusterer
from insid3lab.stages.clustering.tree import cut_average_linkage

__all__ = ["cluster_average_linkage_scipy", "scipy_clusterer"]


def cluster_average_linkage_scipy(D: Tensor, threshold: float) -> Tensor:
    """scikit-learn's average-linkage clustering of a distance matrix, on scipy directly.

    Builds the float64 strict upper triangle in row-major order
    (:func:`~insid3lab.stages.clustering.distances.condensed_matrix`), so the linkage matrix is
    scikit-learn's, and cuts it where scikit-learn cuts
    (:func:`~insid3lab.stages.clustering.tree.cut_average_linkage`).

    Args:
        D: (N, N) distance matrix (any device; copied to the CPU), N >= 2.
        threshold: merge while the linkage distance is strictly below this value.

    Returns:
        (N,) int64 canonical labels on the CPU.
    """
    return canonical_labels(torch.from_numpy(cut_average_linkage(condensed_matrix(D), threshold)))


@register_clusterer("scipy", tree=True, help="the same computation on scipy directly, faster")
def scipy_clusterer(X: Tensor, threshold: float) -> Tensor:
    """The ``"scipy"`` clusterer: (N, C) features -> (N,) canonical labels on the CPU."""
    return canonical_labels(torch.from_numpy(cut_average_linkage(cosine_condensed(X), threshold)))
