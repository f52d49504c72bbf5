"""Condensed cosine distances from half the product, and the threshold graph beside them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components

import insid3lab.stages.clustering.distances as cd
from insid3lab.stages.clustering import agglomerative_clustering, canonical_labels, cosine_distances
from insid3lab.stages.clustering.components import (
    adjacency_components,
    cluster_condensed_components,
    cluster_cosine_components,
    cosine_asymmetry_bound,
    cosine_edge_bound,
    linkage_order,
)
from insid3lab.stages.clustering.distances import CellDistances, condensed_cosine_distances, condensed_subset


def features(n: int, c: int, seed: int, dtype=torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, c, generator=g, dtype=torch.float64), dim=1).to(dtype)


def full_condensed(X: torch.Tensor) -> np.ndarray:
    """The strict upper triangle of the full cosine-distance matrix, row-major, as float64."""
    D = cosine_distances(X)
    if D.dtype == torch.bfloat16:
        D = D.float()
    N = X.shape[0]
    return D.numpy()[np.triu(np.ones((N, N), dtype=bool), 1)].astype(np.float64)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize(
    "n, c, block_rows", [(2, 24, 256), (3, 24, 64), (97, 24, 64), (300, 24, 64), (513, 48, 256), (600, 24, 1000)]
)
def test_condensed_equals_the_full_products_upper_triangle(dtype, n, c, block_rows):
    X = features(n, c, seed=n, dtype=dtype)
    got = condensed_cosine_distances(X, block_rows=block_rows)
    assert got.n == n and got.adjacency is None
    assert got.condensed.dtype == np.float64 and got.condensed.shape == (n * (n - 1) // 2,)
    assert np.array_equal(got.condensed, full_condensed(X))


@pytest.mark.parametrize("n, c", [(1024, 384), (1000, 768), (2304, 384)])
def test_condensed_equals_the_full_product_at_the_methods_grid_sizes(n, c):
    # S = 512 and 768 with patch 16 (1024, 2304 cells), ViT-S and ViT-B widths, and an odd N.
    X = features(n, c, seed=c)
    assert np.array_equal(condensed_cosine_distances(X).condensed, full_condensed(X))


def test_row_blocks_cover_every_row_and_are_never_small():
    assert cd._row_blocks(4096, 256)[-1] == (3840, 4095) and len(cd._row_blocks(4096, 256)) == 16
    assert cd._row_blocks(300, 64) == [(0, 64), (64, 128), (128, 192), (192, 299)]  # 43 rows join the last
    assert cd._row_blocks(200, 64) == [(0, 64), (64, 128), (128, 199)]
    assert cd._row_blocks(100, 256) == [(0, 99)]


def test_features_that_require_grad_are_read_without_it():
    X = features(300, 16, seed=7).requires_grad_()
    got = condensed_cosine_distances(X, edge_bound=0.5)
    assert np.array_equal(got.condensed, full_condensed(X.detach()))
    assert torch.equal(agglomerative_clustering(X, 0.6), agglomerative_clustering(X.detach(), 0.6, method="sklearn"))


def test_condensed_by_hand():
    angles = torch.tensor([0.0, np.pi / 2, np.pi, np.pi / 3], dtype=torch.float64)
    X = torch.stack([angles.cos(), angles.sin()], dim=1)
    got = condensed_cosine_distances(X).condensed
    # pairs (0,1) (0,2) (0,3) (1,2) (1,3) (2,3): 1 - cos of the angle between them
    np.testing.assert_allclose(got, [1, 2, 0.5, 1, 1 - np.cos(np.pi / 6), 1.5], atol=1e-12)


@pytest.mark.parametrize("seed", range(4))
def test_adjacency_holds_every_edge_both_ways_and_only_near_ones(seed):
    # Unit vectors around a few centres: a graph with several components at these thresholds.
    g = torch.Generator().manual_seed(seed)
    centres = features(12, 16, seed=50 + seed)
    X = F.normalize(
        centres[torch.randint(0, 12, (400,), generator=g)] + 0.25 * torch.randn(400, 16, generator=g), dim=1
    )
    D = cosine_distances(X).numpy().astype(np.float64)
    upper = np.triu(np.ones(D.shape, dtype=bool), 1)
    for t in (0.1, 0.3, 0.5):
        adj = condensed_cosine_distances(X, edge_bound=cosine_edge_bound(X, t), block_rows=64).adjacency
        edges = (D < t) & upper
        assert adj[edges].all() and adj.T[edges].all()  # every edge, in both directions
        far = D >= t + 2 * cosine_asymmetry_bound(X)
        assert not adj[far].any()  # nothing beyond the margin
        comp = adjacency_components(adj)
        _, exact = connected_components(csr_matrix(edges), directed=False)
        assert len(set(zip(exact.tolist(), comp.tolist()))) == int(exact.max()) + 1  # exact ones nest in comp
        assert int(comp.max()) >= (1 if t == 0.1 else 0)  # the graph splits at the lowest threshold


def test_adjacency_components_follow_one_way_edges_into_unions():
    adj = np.zeros((5, 5), dtype=bool)
    for i, j in [(0, 1), (1, 0), (3, 4), (4, 3)]:
        adj[i, j] = True
    assert adjacency_components(adj).tolist() == [0, 0, 1, 2, 2]
    adj[4, 0] = True  # an extra one-way edge: the component of 4 joins that of 0 (or 0 joins 4's)
    comp = adjacency_components(adj)
    assert comp.tolist() == [0, 0, 1, 0, 0]


@pytest.mark.parametrize("m, vector_max", [(2, 1024), (5, 1024), (40, 1024), (40, 3), (121, 10)])
def test_condensed_subset_is_the_submatrix(m, vector_max, monkeypatch):
    monkeypatch.setattr(cd, "VECTOR_GATHER_MAX", vector_max)
    X = features(130, 8, seed=m)
    full = condensed_cosine_distances(X).condensed
    idx = np.sort(np.random.default_rng(m).choice(130, size=m, replace=False))
    D = cosine_distances(X).numpy()
    expected = D[np.ix_(idx, idx)][np.triu(np.ones((m, m), dtype=bool), 1)].astype(np.float64)
    assert np.array_equal(condensed_subset(full, 130, idx), expected)
    assert np.array_equal(condensed_subset(full, 130, np.arange(130)), full)


def test_inputs_are_validated():
    with pytest.raises(ValueError, match=r"X must be a 2-D \(N, C\) tensor with N >= 2"):
        condensed_cosine_distances(torch.ones(1, 4))
    with pytest.raises(ValueError, match=r"X must be a 2-D \(N, C\) tensor with N >= 2"):
        condensed_cosine_distances(torch.ones(4))
    with pytest.raises(ValueError, match="X must be on the CPU, got device meta"):
        condensed_cosine_distances(torch.ones(4, 3, device="meta"))
    with pytest.raises(ValueError, match="block_rows must be an int >= 64, got 8"):
        condensed_cosine_distances(features(4, 3, seed=0), block_rows=8)
    no_graph = CellDistances(n=3, condensed=np.zeros(3))
    with pytest.raises(ValueError, match="distances has no adjacency"):
        cluster_condensed_components(no_graph, 0.4)


def test_linkage_order_by_hand():
    r = 2**-0.5
    X = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [r, r, 0.0], [0.0, 0.0, 1.0]])
    # mean (0.43, 0.43, 0.25): similarities 0.43 and 0.43 (a tie, kept in order), 0.60, 0.25 (over |mean|)
    assert linkage_order(X).tolist() == [2, 0, 1, 3]


@pytest.mark.parametrize("seed", range(3))
def test_the_fast_order_gives_the_partition_of_the_cells_own_order(seed):
    # Groups of very different spreads (near-duplicates included) at thresholds around the merges.
    g = torch.Generator().manual_seed(seed)
    centres = features(30, 32, seed=200 + seed)
    which = torch.randint(0, 30, (900,), generator=g)
    spread = torch.tensor([0.001, 0.05, 0.3, 0.6])[torch.randint(0, 4, (30,), generator=g)]
    X = F.normalize(centres[which] + spread[which, None] * torch.randn(900, 32, generator=g), dim=1)
    for tau in (0.3, 0.5, 0.6, 0.7, 0.9):
        ordered = canonical_labels(cluster_cosine_components(X, 1 - tau))
        assert torch.equal(ordered, agglomerative_clustering(X, tau, method="scipy")), tau
    for dtype in (torch.float16, torch.bfloat16):  # low precision keeps the cells' own order
        Xh = X.to(dtype)
        assert torch.equal(
            canonical_labels(cluster_cosine_components(Xh, 0.4)), agglomerative_clustering(Xh, 0.6, method="scipy")
        )


@pytest.mark.parametrize("dtype, n", [(torch.float32, 300), (torch.float64, 150), (torch.float32, 90)])
def test_a_workspace_is_reused_and_gives_the_same_result(dtype, n):
    X = features(n, 16, seed=n, dtype=dtype)
    fresh = condensed_cosine_distances(X, edge_bound=0.6)
    ws = cd.Workspace()
    ws.condensed(n * (n - 1) // 2).fill(np.nan)  # dirty buffers: every entry must be written again
    ws.adjacency(n).fill_(True)
    got = condensed_cosine_distances(X, edge_bound=0.6, workspace=ws)
    assert np.array_equal(got.condensed, fresh.condensed) and np.array_equal(got.adjacency, fresh.adjacency)
    assert not got.adjacency.diagonal().any()
    again = condensed_cosine_distances(X, edge_bound=0.6, workspace=ws)
    assert again.condensed is got.condensed or np.shares_memory(again.condensed, got.condensed)
    other = condensed_cosine_distances(X, edge_bound=0.6)
    assert not np.shares_memory(other.condensed, fresh.condensed)  # no workspace: fresh arrays


def test_a_workspace_keeps_nothing_above_its_limit():
    ws = cd.Workspace(max_bytes=1000)
    a, b = ws.condensed(100), ws.condensed(100)  # 800 bytes: kept
    assert np.shares_memory(a, b)
    c, d = ws.condensed(200), ws.condensed(200)  # 1600 bytes: fresh each time
    assert not np.shares_memory(c, d)
    assert cd.thread_workspace() is cd.thread_workspace()
