"""Exact average-linkage clustering, one connected component of the threshold graph at a time.

Let ``t`` be the distance threshold (clusters merge while their average linkage is strictly
below ``t``) and ``G`` the graph on the N cells with an edge ``i - j`` (``i < j``) when the
distance ``D[i, j]`` read from the strict upper triangle (the entries every clustering path
reads) is strictly below ``t``.

**No cluster spans two components of G.** A merge of clusters A and B that lie in different
components has every member pair at distance ``>= m``, where ``m >= t`` is the smallest of
those pair distances. Its linkage is an average of values ``>= m``, so it is ``>= m >= t``
and the merge is never kept. This holds for the float64 arithmetic of scipy's linkage too:
its Lance-Williams update ``(n_a d(c, a) + n_b d(c, b)) / (n_a + n_b)`` is a composition of
correctly rounded, monotone operations, so by induction over the merges every linkage
between A's and B's sub-clusters is at least the value the same operations give when every
input equals ``m``; for a float32 (or float16, bfloat16) distance matrix ``m`` has at most
24 significant bits, every product ``n m``, sum and quotient in that computation is exact
(for N < 2**29), and the result is ``m`` itself. For a float64 distance matrix those
operations can round, so the graph is built with a margin (edges below ``t + 2**-30``):
extra edges only join components, which never changes the clusters.

Hence the clusters are found component by component: a cell without an edge is alone; a
component of two cells is one cluster; larger components run scipy's average linkage on
their own sub-matrix (the very same float values, taken from the one distance matrix) and
are cut at ``t`` as scikit-learn cuts. Within a component the merges are those of the
full-matrix run: merges inside it involve only its members. The order in which scipy's
nearest-neighbour chain visits them can differ between the full-matrix run and the
component's run, and the float64 rounding of a linkage depends on that order, so the two
can differ where a linkage lies within a few float64 ulps of the threshold or of a
competing linkage (the same caveat as for the torch path); the tests compare the two paths
on random, structured, tied and borderline inputs.

The cost is the threshold graph (one pass over D), its components, and the linkage of each
component, quadratic in the component's size: a scene that splits into many components is
clustered much faster than with one N x N linkage; one that forms a single giant component
is clustered by the full-matrix run (no gain, little overhead). On the CPU the distances
and the graph come together from half the matrix product
(:mod:`~insid3lab.stages.clustering.distances`, :func:`cluster_condensed_components`).

**Cell order.** The clusters do not depend on how the cells are numbered, up to ties: average
linkage is reducible, so when no two competing linkages are equal its tree is unique and
scipy's nearest-neighbour chain finds it from any start. scipy's running time does depend
on the numbering: every one of its ~3 N nearest-neighbour scans reads all N slots of the
condensed matrix (half of them with a stride), a merged cluster takes the higher of its two
slots, and where the frequently merged clusters sit decides how many of those reads miss the
caches. Numbering the cells by decreasing similarity to their mean feature
(:func:`linkage_order`) made scipy's linkage 1.3 to 2.8 times faster on the ViT features of
every synthetic scene measured at 64 x 64 cells, with the same number of scans and the same
partitions. What the numbering can change: exact ties between competing linkages are broken
by slot order, and the float64 rounding of a linkage depends on the order of the merges, so
the partition can differ from the cells'-own-order run where two competing linkages are equal
or within a few float64 ulps of each other or of the threshold (as for the per-component runs
above). Continuous float32 features tie exactly only among near-duplicate cells, far below
the threshold; float16 and bfloat16 distances tie often and keep the cells' own order.
``"scipy"`` and ``"sklearn"`` always keep it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from insid3lab.stages.clustering.distances import (
    CellDistances,
    as_numpy_distances,
    condensed_cosine_distances,
    condensed_matrix,
    condensed_subset,
    cosine_distances,
    strict_upper,
    thread_workspace,
)
from insid3lab.stages.clustering.registry import register_clusterer
from insid3lab.stages.clustering.tree import cut_average_linkage

__all__ = [
    "adjacency_components",
    "cluster_average_linkage_components",
    "cluster_condensed_components",
    "cluster_cosine_components",
    "components_clusterer",
    "cosine_asymmetry_bound",
    "cosine_edge_bound",
    "linkage_order",
    "threshold_components",
]

#: Graphs with at most this many edges per cell go to scipy's sparse connected components;
#: denser ones are searched breadth-first on the dense adjacency matrix.
SPARSE_EDGES_PER_CELL = 8

#: When the largest component holds at least this fraction of all cell pairs, the full
#: matrix is clustered in one run (cutting out the sub-matrix would cost more than it saves:
#: at 64 x 64 cells, in the fast cell order, the two broke even at about 0.75).
FULL_RUN_FRACTION = 0.7


def _edge_bound(dtype: np.dtype, threshold: float) -> float:
    """The value that ``D < bound`` compares against so that edges are ``D < threshold`` (exactly)."""
    if dtype == np.float64:
        return threshold + 2.0**-30  # margin for float64 rounding, see the module docstring
    # For float16/float32 values, d < t (real numbers) <=> d < the smallest float32 >= t.
    bound = np.float32(threshold)
    if float(bound) < threshold:
        bound = np.nextafter(bound, np.float32(np.inf))
    return float(bound)


def threshold_components(Dn: np.ndarray, threshold: float, *, asymmetry: float | None = None) -> np.ndarray:
    """Connected components of the graph with an edge where ``D[i, j] < threshold`` (i < j).

    Args:
        Dn: (N, N) numpy distance matrix; only its strict upper triangle decides edges.
        threshold: edge when the distance is strictly below this value (float64 matrices get
            the margin of the module docstring).
        asymmetry: a bound on ``|D[i, j] - D[j, i]|`` (for :func:`cosine_distances`, see
            :func:`cosine_asymmetry_bound`). With it, the graph takes every entry of both
            triangles below ``threshold + asymmetry``, a superset of the edges in both
            directions, and the components are still exact: extra edges only join components
            (no cluster is ever split by them), and each upper-triangle edge appears in both
            rows. This saves transposing the adjacency matrix. None: the strict upper triangle
            is compared and mirrored.

    Returns:
        (N,) int64 numpy array of component ids numbered 0..K-1 in the order of each
        component's smallest member (canonical). Every cluster at ``threshold`` lies inside one
        component; with ``asymmetry``, a component can be a union of several exact ones.
    """
    N = Dn.shape[0]
    Dc = Dn if Dn.dtype == np.float64 else Dn.astype(np.float32, copy=False)
    bound = _edge_bound(Dc.dtype, threshold)
    if asymmetry is None:
        adjacency = Dc < Dc.dtype.type(bound)
        adjacency &= strict_upper(N)
        adjacency |= adjacency.T
    else:
        adjacency = Dc < Dc.dtype.type(np.nextafter(bound + asymmetry, np.inf))
    return adjacency_components(adjacency)


def adjacency_components(adjacency: np.ndarray) -> np.ndarray:
    """Connected components of a graph given by its (N, N) bool adjacency matrix.

    A search follows the rows (out-edges). For a symmetric matrix these are the connected
    components; for one that holds every edge of a graph in both directions plus extra
    one-way edges, each component found is a union of that graph's components (a search
    reaching one cell of such a component reaches all of it), which is all the clustering
    needs.

    Returns:
        (N,) int64 component ids numbered 0..K-1 in the order of each component's smallest member.
    """
    N = adjacency.shape[0]
    edges = int(np.count_nonzero(adjacency))
    comp = np.full(N, -1, dtype=np.int64)
    if edges <= SPARSE_EDGES_PER_CELL * N:
        from scipy.sparse import coo_matrix
        from scipy.sparse.csgraph import connected_components

        i, j = np.nonzero(adjacency)
        graph = coo_matrix((np.ones(edges, dtype=np.int8), (i, j)), shape=(N, N)).tocsr()
        _, comp = connected_components(graph, directed=True, connection="weak")
    else:
        unseen = np.ones(N, dtype=bool)
        c = 0
        for seed in range(N):
            if not unseen[seed]:
                continue
            unseen[seed] = False
            comp[seed] = c
            frontier = np.array([seed])
            while frontier.size:  # breadth-first: every row is read once in all
                frontier = np.flatnonzero(adjacency[frontier].any(0) & unseen)
                unseen[frontier] = False
                comp[frontier] = c
            c += 1
    # Renumber by smallest member (whatever order the search found them in).
    _, first = np.unique(comp, return_index=True)
    rank = np.empty_like(first)
    rank[np.argsort(first)] = np.arange(first.size)
    return rank[comp]


def cosine_edge_bound(X: Tensor, threshold: float) -> float:
    """An ``edge_bound`` for :func:`~insid3lab.stages.clustering.distances.condensed_cosine_distances`.

    The bound that :func:`threshold_components` compares against (exact for float16/32
    distances, with the float64 margin for float64 ones) plus :func:`cosine_asymmetry_bound`,
    so that every edge appears in both directions of the adjacency.

    Args:
        X: (N, C) floating tensor of L2-normalised features.
        threshold: merge while the linkage distance is strictly below this value.
    """
    dtype = np.float64 if X.dtype == torch.float64 else np.float32
    return _edge_bound(np.dtype(dtype), threshold) + cosine_asymmetry_bound(X)


def cosine_asymmetry_bound(X: Tensor) -> float:
    """A bound on ``|D[i, j] - D[j, i]|`` for ``D = cosine_distances(X)``.

    Both entries approximate the same dot product; each is within ``(C + 2) u |x_i| |x_j|`` of
    it (the standard bound for a length-C dot product in precision ``u``, plus the clamp and
    ``1 - s``), so they differ by at most twice that. Doubled once more for safety.

    Args:
        X: (N, C) floating tensor.
    """
    C = X.shape[1]
    u = torch.finfo(X.dtype).eps
    norm2 = float((X.detach().float() ** 2).sum(1).max()) if X.numel() else 0.0
    return 4.0 * (C + 2) * u * max(norm2, 1.0)


def linkage_order(X: Tensor) -> Tensor:
    """The order in which :func:`cluster_cosine_components` numbers the cells: by decreasing similarity to their mean.

    Args:
        X: (N, C) floating tensor of L2-normalised features.

    Returns:
        (N,) int64 permutation (a stable sort: cells with equal keys keep their order).
    """
    Xf = X.detach().float()
    mean = Xf.mean(0)
    return torch.argsort(-(Xf @ (mean / mean.norm().clamp_min(1e-12))), stable=True)


def cluster_cosine_components(X: Tensor, threshold: float) -> Tensor:
    """Average-linkage clusters of CPU features on cosine distance, component by component, in a fast order.

    The distances and the threshold graph come from half the product
    (:func:`~insid3lab.stages.clustering.distances.condensed_cosine_distances`). For float32 and
    float64 features the cells are first numbered in :func:`linkage_order` and the labels mapped
    back (see "Cell order" in the module docstring); float16 and bfloat16 distances, which tie
    often, keep the cells' own order.

    Args:
        X: (N, C) floating tensor of L2-normalised features on the CPU, N >= 2.
        threshold: merge while the linkage distance is strictly below this value.

    Returns:
        (N,) int64 labels on the CPU, not canonical.
    """
    N = X.shape[0]
    order = linkage_order(X) if X.dtype in (torch.float32, torch.float64) else torch.arange(N)
    Xo = X[order]
    distances = condensed_cosine_distances(
        Xo, edge_bound=cosine_edge_bound(Xo, threshold), workspace=thread_workspace()
    )  # used up before this function returns
    labels = torch.empty(N, dtype=torch.long)
    labels[order] = cluster_condensed_components(distances, threshold)
    return labels


def cluster_average_linkage_components(
    D: Tensor,
    threshold: float,
    *,
    asymmetry: float | None = None,
    full_run_fraction: float | None = FULL_RUN_FRACTION,
) -> Tensor:
    """Average-linkage clusters of a distance matrix, computed per connected component of the threshold graph.

    The partition is scipy's full-matrix average linkage cut at ``threshold`` (see the module
    docstring for the argument and its float64 caveat).

    Args:
        D: (N, N) distance matrix (any device; read on the CPU), N >= 2. Only its strict upper
            triangle is read.
        threshold: merge while the linkage distance is strictly below this value.
        asymmetry: a bound on ``|D[i, j] - D[j, i]|`` (see :func:`threshold_components`).
        full_run_fraction: when the largest component holds at least this fraction of the
            N (N - 1) / 2 cell pairs, cluster the whole matrix in one scipy run instead;
            None always works component by component.

    Returns:
        (N,) int64 labels on the CPU, not canonical (one block of ids per component).
    """
    Dn = as_numpy_distances(D)
    N = Dn.shape[0]

    def pairs(idx: np.ndarray) -> np.ndarray:
        if idx.size == N:
            return condensed_matrix(D)
        return np.asarray(Dn[np.ix_(idx, idx)][strict_upper(idx.size)], dtype=np.float64)

    comp = threshold_components(Dn, threshold, asymmetry=asymmetry)
    return torch.from_numpy(_cluster_per_component(comp, pairs, threshold, full_run_fraction))


def cluster_condensed_components(
    distances: CellDistances, threshold: float, *, full_run_fraction: float | None = FULL_RUN_FRACTION
) -> Tensor:
    """:func:`cluster_average_linkage_components` on condensed distances and their threshold graph.

    Args:
        distances: from :func:`~insid3lab.stages.clustering.distances.condensed_cosine_distances`
            with ``edge_bound`` at least the threshold's edge bound (its adjacency may hold
            extra edges, see :func:`adjacency_components`).
        threshold, full_run_fraction: as in :func:`cluster_average_linkage_components`.

    Returns:
        (N,) int64 labels on the CPU, not canonical.
    """
    if distances.adjacency is None:
        raise ValueError("distances has no adjacency: build it with condensed_cosine_distances(X, edge_bound=...)")
    N, condensed = distances.n, distances.condensed

    def pairs(idx: np.ndarray) -> np.ndarray:
        return condensed if idx.size == N else condensed_subset(condensed, N, idx)

    comp = adjacency_components(distances.adjacency)
    return torch.from_numpy(_cluster_per_component(comp, pairs, threshold, full_run_fraction))


def _cluster_per_component(
    comp: np.ndarray,
    pairs: Callable[[np.ndarray], np.ndarray],
    threshold: float,
    full_run_fraction: float | None,
) -> np.ndarray:
    """Labels from components: singletons alone, pairs by their one distance, larger ones by scipy.

    Args:
        comp: (N,) int64 component ids 0..K-1 (every cluster inside one component).
        pairs: ``pairs(idx)`` -> the float64 condensed distances among the ascending cells ``idx``.
        threshold, full_run_fraction: as in :func:`cluster_average_linkage_components`.

    Returns:
        (N,) int64 labels, one block of ids per component.
    """
    N = comp.size
    sizes = np.bincount(comp)
    if full_run_fraction is not None and sizes.max() ** 2 >= full_run_fraction * N * N:
        return cut_average_linkage(pairs(np.arange(N)), threshold)
    labels = comp.copy()  # singletons and two-cell components: the component is the cluster
    next_id = sizes.size
    order = np.argsort(comp, kind="stable")  # members of each component, ascending
    starts = np.concatenate([[0], np.cumsum(sizes)])
    for c in np.flatnonzero(sizes >= 2):
        idx = order[starts[c] : starts[c + 1]]
        sub = pairs(idx)
        if idx.size == 2:
            if not float(sub[0]) < threshold:  # an edge of the margin only: the pair stays apart
                labels[idx[1]] = next_id
                next_id += 1
            continue
        part = cut_average_linkage(sub, threshold)
        labels[idx] = next_id + part - 1
        next_id += int(part.max())
    return labels


@register_clusterer("components", tree=True, help="scipy per connected component of the threshold graph")
def components_clusterer(X: Tensor, threshold: float) -> Tensor:
    """The ``"components"`` clusterer: :func:`cluster_cosine_components` for CPU features; elsewhere
    :func:`cluster_average_linkage_components` of the distance matrix computed on the features' device.
    (N, C) features -> (N,) labels on the CPU, not canonical."""
    if X.device.type == "cpu":  # distances and threshold graph from half the product, in a fast order
        return cluster_cosine_components(X, threshold)
    return cluster_average_linkage_components(cosine_distances(X), threshold, asymmetry=cosine_asymmetry_bound(X))
