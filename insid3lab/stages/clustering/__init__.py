"""Stage 5: average-linkage agglomerative clustering of the target cells.

The N = h*w target cells (original, not debiased, L2-normalised features) are grouped
by average-linkage agglomerative clustering on the cosine distance
``D = 1 - clamp(X Xᵀ, -1, 1)``; two clusters are merged while their linkage distance
(the mean of all pairwise distances between their members) is strictly below
``1 - tau``. :func:`agglomerative_clustering` is the stage; the implementations are
registered clusterers, one module each, and give the same partition (up to exact ties
between distances, see :func:`cluster_average_linkage_torch`):

``"auto"`` (:mod:`.auto`)
    the default: ``"components"`` for CPU tensors, ``"torch"`` otherwise, the fastest exact
    path measured on each (``benchmarks/bench_clustering.py``).
``"sklearn"`` (:mod:`.sklearn_linkage`)
    scikit-learn's ``AgglomerativeClustering`` on ``D`` moved to the CPU, the authors' call.
``"scipy"`` (:mod:`.scipy_linkage`)
    the same arithmetic as ``"sklearn"``, on scipy directly (about twice as fast at N = 4096).
``"torch"`` (:mod:`.torch_linkage`)
    parallel reciprocal-nearest-neighbour rounds with tensor operations, on the features'
    device (CPU, CUDA; MPS computes on the CPU because it has no float64).
``"components"`` (:mod:`.components`)
    scipy's linkage on each connected component of the graph "distance below the
    threshold" (no cluster spans two), quadratic in the component sizes instead of N.

The rest of the package:

* :mod:`.registry` — :data:`CLUSTERERS` and the decorator :func:`register_clusterer`, by which
  each algorithm's module registers its clusterer (``fn(X, threshold) -> labels``, see
  :data:`Clusterer`) with what the command lines and the explorers read (a one-line help, and
  whether its partitions are cuts of the average-linkage tree). Pass any callable as
  ``method`` to use one without registering it.
* :mod:`.partition` — :func:`agglomerative_clustering` (validation, canonical labels:
  clusters numbered 0..K-1 in the order of their smallest member, whichever clusterer ran).
* :mod:`.distances` — the cell distances: :func:`cosine_distances`, and the condensed float64
  vector scipy reads, computed from half the matrix product on the CPU.
* :mod:`.tree` — the average-linkage tree of a target, built once and cut at any τ
  (:func:`~.tree.linkage_tree`, :func:`~.tree.cut_tree`).
"""

# isort: off
from insid3lab.stages.clustering.registry import (
    CLUSTERERS,
    Clusterer,
    ClustererEntry,
    register_clusterer,
    resolve_clusterer,
)
from insid3lab.stages.clustering.partition import agglomerative_clustering, canonical_labels

# The built-in clusterers register themselves when imported, in the order their names are listed.
from insid3lab.stages.clustering import auto  # noqa: F401
from insid3lab.stages.clustering import sklearn_linkage  # noqa: F401
from insid3lab.stages.clustering import scipy_linkage  # noqa: F401
from insid3lab.stages.clustering import torch_linkage  # noqa: F401
from insid3lab.stages.clustering import components  # noqa: F401

# isort: on
from insid3lab.stages.clustering.components import cluster_average_linkage_components
from insid3lab.stages.clustering.distances import cosine_distances
from insid3lab.stages.clustering.scipy_linkage import cluster_average_linkage_scipy
from insid3lab.stages.clustering.torch_linkage import cluster_average_linkage_torch
from insid3lab.stages.clustering.tree import cut_tree, linkage_tree

__all__ = [
    "CLUSTERERS",
    "Clusterer",
    "ClustererEntry",
    "agglomerative_clustering",
    "canonical_labels",
    "cluster_average_linkage_components",
    "cluster_average_linkage_scipy",
    "cluster_average_linkage_torch",
    "cosine_distances",
    "cut_tree",
    "linkage_tree",
    "register_clusterer",
    "resolve_clusterer",
]
