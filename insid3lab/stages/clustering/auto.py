"""The ``"auto"`` clusterer, the default: the fastest exact path measured on each device.

On the CPU, ``"components"`` (never slower than one scipy run by more than the cost of the
threshold graph); elsewhere (CUDA, MPS), ``"torch"`` on the features' device
(``benchmarks/bench_clustering.py``). Both are looked up in the registry when called.
"""

from __future__ import annotations

from torch import Tensor

from insid3lab.stages.clustering.registry import CLUSTERERS, register_clusterer

__all__ = ["auto_clusterer"]


@register_clusterer("auto", tree=True, help="components on the CPU, torch elsewhere")
def auto_clusterer(X: Tensor, threshold: float) -> Tensor:
    """The ``"auto"`` clusterer: (N, C) features -> (N,) labels (not canonical)."""
    return CLUSTERERS["components" if X.device.type == "cpu" else "torch"].fn(X, threshold)
