"""One average-linkage tree per target, cut at any τ, equals clustering at that τ."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from insid3lab import Params, TargetClusters
from insid3lab.stages.clustering import CLUSTERERS, agglomerative_clustering, register_clusterer
from insid3lab.stages.clustering.tree import cut_tree, linkage_tree


def blobs(n: int, c: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    centres = F.normalize(torch.randn(12, c, generator=g), dim=1)
    return F.normalize(centres[torch.randint(0, 12, (n,), generator=g)] + 0.4 * torch.randn(n, c, generator=g), dim=1)


@pytest.mark.parametrize("n, c, seed", [(60, 8, 0), (300, 16, 1), (700, 32, 2)])
def test_every_cut_equals_clustering_at_that_tau(n, c, seed):
    X = blobs(n, c, seed)
    Z = linkage_tree(X)
    assert Z.shape == (n - 1, 4) and Z.dtype == np.float64
    for tau in (0.05, 0.3, 0.5, 0.6, 0.7, 0.85, 0.95, 1.0):
        got = cut_tree(Z, tau)
        assert got.dtype == torch.long and got.shape == (n,)
        assert torch.equal(got, agglomerative_clustering(X, tau, method="sklearn")), tau


def test_cuts_nest_and_reach_both_ends():
    X = blobs(200, 8, seed=3)
    Z = linkage_tree(X)
    assert cut_tree(Z, 1.0).tolist() == list(range(200))  # nothing merges below distance 0
    for tau in (0.001, 0.3, 0.6, 0.9):  # one cluster per merge at or above the threshold, plus one
        assert int(cut_tree(Z, tau).max()) + 1 == int((Z[:, 2] >= 1 - tau).sum()) + 1
    coarse, fine = cut_tree(Z, 0.5).numpy(), cut_tree(Z, 0.8).numpy()
    assert len(set(zip(fine.tolist(), coarse.tolist()))) == fine.max() + 1  # each fine cluster in one coarse


def test_one_cell_and_bad_input():
    assert cut_tree(linkage_tree(torch.ones(1, 4)), 0.6).tolist() == [0]
    with pytest.raises(ValueError, match="X must hold at least one cell"):
        linkage_tree(torch.ones(0, 4))
    with pytest.raises(ValueError, match=r"X must be a 2-D \(N, C\) floating tensor"):
        linkage_tree(torch.ones(4, dtype=torch.long))
    with pytest.raises(ValueError, match="X must contain only finite values"):
        linkage_tree(torch.tensor([[1.0, float("nan")], [0.0, 1.0]]))
    with pytest.raises(ValueError, match=r"Z must be an \(N - 1, 4\) linkage matrix"):
        cut_tree(np.zeros((3, 3)), 0.6)
    with pytest.raises(ValueError, match=r"tau must be a real number in \(0, 1\]"):
        cut_tree(linkage_tree(blobs(5, 4, 0)), 1.5)


def test_target_clusters_builds_one_tree_and_cuts_it():
    X = blobs(256, 16, seed=4)
    feats = X.T.reshape(16, 16, 16)  # (C, h, w)
    cache = TargetClusters()
    for tau in (0.6, 0.8, 0.6, 0.3):
        labels = cache.labels("S=256", feats, Params(tau=tau))
        assert labels.shape == (16, 16) and labels.dtype == torch.long
        assert torch.equal(labels.reshape(-1), agglomerative_clustering(X, tau))
    assert cache.runs == 1
    cache.labels("another target", feats, Params(tau=0.6))
    assert cache.runs == 2
    assert CLUSTERERS["auto"].tree and not CLUSTERERS["torch"].tree


def test_target_clusters_runs_other_clusterers_once_per_tau(registries):
    X = blobs(64, 8, seed=5)
    feats = X.T.reshape(8, 8, 8)
    calls = []

    @register_clusterer("halves-for-test")
    def halves(X, threshold):
        calls.append(threshold)
        return (torch.arange(X.shape[0]) >= X.shape[0] // 2).long()

    cache = TargetClusters()
    for tau in (0.6, 0.7, 0.6):
        labels = cache.labels(0, feats, Params(tau=tau, clustering="halves-for-test"))
        assert labels.reshape(-1).tolist() == [0] * 32 + [1] * 32
    assert cache.runs == 2 and calls == [pytest.approx(0.4), pytest.approx(0.3)]
    cache.labels(0, feats, Params(tau=0.6, clustering="torch"))
    assert cache.runs == 3


def test_a_clusterer_registered_with_tree_is_cut_from_the_tree(registries):
    X = blobs(64, 8, seed=6)
    feats = X.T.reshape(8, 8, 8)
    calls = []

    @register_clusterer("scipy-counted", tree=True, help="scipy, counted")
    def counted(X, threshold):
        calls.append(threshold)
        return CLUSTERERS["scipy"].fn(X, threshold)

    cache = TargetClusters()
    for tau in (0.6, 0.7, 0.5):
        labels = cache.labels(0, feats, Params(tau=tau, clustering="scipy-counted"))
        assert torch.equal(labels.reshape(-1), agglomerative_clustering(X, tau, method="scipy"))
    assert cache.runs == 1 and calls == []  # one tree, three cuts: the clusterer itself never ran
