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

from insid3lab.method.grid_decode import ClusterCuts
from insid3lab.method.params import Params

__all__ = ["TargetClusters"]


class TargetClusters:
    """The cluster labels of encoded targets, kept per target (one
    :class:`~insid3lab.method.grid_decode.ClusterCuts` each).

    Attributes:
        runs: how many clusterings ran (trees built plus labels computed); cuts are not counted.
    """

    def __init__(self) -> None:
        self._targets: dict[Any, ClusterCuts] = {}

    @property
    def runs(self) -> int:
        return sum(cuts.runs for cuts in self._targets.values())

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
        if key not in self._targets:
            self._targets[key] = ClusterCuts(features_norm)
        return self._targets[key].labels(params)
