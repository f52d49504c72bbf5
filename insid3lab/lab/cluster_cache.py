"""Cluster labels of encoded targets at any τ, each target clustered once (for the explorers).

With a clusterer whose registry entry says ``tree=True``
(:class:`~insid3lab.stages.clustering.registry.ClustererEntry`; the default ``"auto"`` among
them), the first request for a target builds its average-linkage tree and every τ after that
is a cut of it (:func:`~insid3lab.stages.clustering.tree.cut_tree`, well under a millisecond
at 64 x 64 cells, where re-clustering takes about 0.2 s on 2 cores). Any other clusterer
(``"torch"``, a name registered without ``tree=True``, or a callable) is run once per (target,
τ, clusterer) and its labels kept.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from insid3lab.method.params import Params
from insid3lab.method.pipeline import cluster_target
from insid3lab.stages.clustering.registry import CLUSTERERS
from insid3lab.stages.clustering.tree import cut_tree, linkage_tree

__all__ = ["TargetClusters"]


class TargetClusters:
    """The cluster labels of encoded targets, kept per target.

    Attributes:
        runs: how many clusterings ran (trees built plus labels computed); cuts are not counted.
    """

    def __init__(self) -> None:
        self._trees: dict[Any, Any] = {}
        self._labels: dict[tuple, Tensor] = {}
        self.runs = 0

    def labels(self, key, features_norm: Tensor, params: Params) -> Tensor:
        """The target's cluster labels at ``params.tau``.

        Args:
            key: any hashable that names the target's encoding (e.g. its image size); the
                caller keeps keys and encodings in step.
            features_norm: (C, h, w) L2-normalised target features.
            params: the hyper-parameters (``tau`` and ``clustering`` are read).

        Returns:
            (h, w) int64 labels on the features' device, numbered canonically.
        """
        C, h, w = features_norm.shape
        method = params.clustering
        entry = CLUSTERERS.get(method) if isinstance(method, str) else None
        if entry is not None and entry.tree:
            if key not in self._trees:
                self._trees[key] = linkage_tree(features_norm.reshape(C, -1).T)
                self.runs += 1
            labels = cut_tree(self._trees[key], params.tau)
            return labels.reshape(h, w).to(features_norm.device)
        k = (key, round(float(params.tau), 6), method)
        if k not in self._labels:
            self._labels[k] = cluster_target(features_norm, params)
            self.runs += 1
        return self._labels[k]
