"""The ``"sklearn"`` clusterer: scikit-learn's ``AgglomerativeClustering``, the authors' call.

``AgglomerativeClustering(n_clusters=None, metric="precomputed", linkage="average",
distance_threshold=1 - tau)`` on the cosine-distance matrix moved to the CPU. It hands the
strict upper triangle of the matrix (as float64) to scipy's nearest-neighbour-chain linkage,
sorts the merges by distance and keeps every merge whose distance is strictly below the
threshold: the reference computation every other clusterer is compared with.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from insid3lab.stages.clustering.distances import as_numpy_distances, cosine_distances
from insid3lab.stages.clustering.registry import register_clusterer

__all__ = ["sklearn_clusterer"]


@register_clusterer("sklearn", tree=True, help="scikit-learn, the authors' call")
def sklearn_clusterer(X: Tensor, threshold: float) -> Tensor:
    """The ``"sklearn"`` clusterer: (N, C) features -> (N,) scikit-learn labels on the CPU (not canonical)."""
    from sklearn.cluster import AgglomerativeClustering

    model = AgglomerativeClustering(
        n_clusters=None,
        metric="precomputed",
        linkage="average",
        distance_threshold=threshold,
    )
    labels = model.fit_predict(as_numpy_distances(cosine_distances(X)))
    return torch.from_numpy(np.asarray(labels, dtype=np.int64))
