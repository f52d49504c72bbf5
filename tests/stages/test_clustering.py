"""Stage 5: average-linkage clustering, scikit-learn path against the torch path."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.cluster import AgglomerativeClustering

from insid3lab.stages.clustering import (
    CLUSTERERS,
    agglomerative_clustering,
    canonical_labels,
    cluster_average_linkage_scipy,
    cluster_average_linkage_torch,
    cosine_distances,
    register_clusterer,
)
from insid3lab.stages.clustering.components import (
    cluster_average_linkage_components,
    cluster_condensed_components,
    cosine_asymmetry_bound,
    cosine_edge_bound,
    threshold_components,
)
from insid3lab.stages.clustering.distances import condensed_cosine_distances


def normalised(shape, seed):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(*shape, generator=g), dim=-1)


def sklearn_raw_labels(D: torch.Tensor, threshold: float) -> np.ndarray:
    """scikit-learn's own labels for a precomputed distance matrix, not renumbered."""
    model = AgglomerativeClustering(
        n_clusters=None, metric="precomputed", linkage="average", distance_threshold=threshold
    )
    return model.fit_predict(D.cpu().numpy())


def same_partition(a, b) -> bool:
    a = [int(v) for v in a]
    b = [int(v) for v in b]
    pairs = set(zip(a, b))
    return len(a) == len(b) and len(pairs) == len(set(a)) == len(set(b))


def per_component(X: torch.Tensor, tau: float, asymmetry: bool = True) -> torch.Tensor:
    """The components path forced to cluster component by component (never one full run)."""
    bound = cosine_asymmetry_bound(X) if asymmetry else None
    labels = cluster_average_linkage_components(cosine_distances(X), 1.0 - tau, asymmetry=bound, full_run_fraction=None)
    return canonical_labels(labels)


def per_component_condensed(X: torch.Tensor, tau: float) -> torch.Tensor:
    """The CPU components path (condensed distances, half the product, the cells' own order) forced per component."""
    distances = condensed_cosine_distances(X, edge_bound=cosine_edge_bound(X, 1.0 - tau), block_rows=64)
    return canonical_labels(cluster_condensed_components(distances, 1.0 - tau, full_run_fraction=None))


def assert_paths_agree(X: torch.Tensor, tau: float) -> torch.Tensor:
    """All methods give identical labels, and they are scikit-learn's partition."""
    by_sklearn = agglomerative_clustering(X, tau, method="sklearn")
    by_torch = agglomerative_clustering(X, tau, method="torch")
    assert torch.equal(agglomerative_clustering(X, tau, method="scipy"), by_sklearn)
    assert torch.equal(agglomerative_clustering(X, tau, method="components"), by_sklearn)
    assert torch.equal(agglomerative_clustering(X, tau, method="auto"), by_sklearn)
    if X.shape[0] >= 2:
        assert torch.equal(per_component(X, tau), by_sklearn)
        assert torch.equal(per_component(X, tau, asymmetry=False), by_sklearn)
        assert torch.equal(per_component_condensed(X, tau), by_sklearn)
    assert by_sklearn.dtype == by_torch.dtype == torch.long
    assert by_sklearn.shape == by_torch.shape == (X.shape[0],)
    assert torch.equal(by_sklearn, by_torch)
    raw = sklearn_raw_labels(cosine_distances(X), 1.0 - tau)
    assert same_partition(raw, by_torch)
    return by_torch


# --------------------------------------------------------------------------- distances


def test_cosine_distances_values_and_dtype():
    angles = torch.tensor([0.0, math.pi / 3, math.pi / 2, math.pi], dtype=torch.float64)
    X = torch.stack([angles.cos(), angles.sin()], dim=1)
    D = cosine_distances(X)
    assert D.dtype == torch.float64 and D.shape == (4, 4)
    expected = 1 - torch.cos(angles[:, None] - angles[None, :])
    torch.testing.assert_close(D, expected, atol=1e-12, rtol=0)
    assert cosine_distances(X.float()).dtype == torch.float32


def test_cosine_distances_clamps_similarity():
    X = torch.tensor([[1.0, 0.0], [1.0 + 1e-3, 0.0], [-1.0 - 1e-3, 0.0]])
    D = cosine_distances(X)
    assert D[0, 1] == 0 and D[1, 0] == 0  # similarity 1.001 clamped to 1
    assert D[1, 2] == 2  # similarity -1.002 clamped to -1
    assert (D >= 0).all() and (D <= 2).all()


def test_canonical_labels_orders_by_smallest_member():
    labels = torch.tensor([5, 5, 2, 9, 2, 7])
    assert canonical_labels(labels).tolist() == [0, 0, 1, 2, 1, 3]
    assert canonical_labels(torch.tensor([3, 1, 0, 2])).tolist() == [0, 1, 2, 3]
    assert canonical_labels(torch.zeros(0, dtype=torch.long)).tolist() == []


# ----------------------------------------------------------------- hand-computed cases


def test_hand_computed_distance_matrix():
    # Distances in sixteenths (exact in binary). Average linkage merges
    # {0,1} at 1/16, {2,3} at 2/16, then {2,3}+{4} at (8 + 4)/2 = 6/16 = 0.375,
    # then everything at (15*6)/6 = 15/16.
    D = torch.full((5, 5), 15.0)
    for (i, j), v in {(0, 1): 1, (2, 3): 2, (3, 4): 4, (2, 4): 8}.items():
        D[i, j] = D[j, i] = v
    D.fill_diagonal_(0)
    D = D / 16
    cases = {
        0.05: [0, 1, 2, 3, 4],  # below every distance
        0.1: [0, 0, 1, 2, 3],
        0.2: [0, 0, 1, 1, 2],
        0.375: [0, 0, 1, 1, 2],  # linkage exactly 0.375 is not strictly below
        0.376: [0, 0, 1, 1, 1],
        0.9375: [0, 0, 1, 1, 1],  # 15/16 is not strictly below
        0.94: [0, 0, 0, 0, 0],
    }
    for threshold, expected in cases.items():
        assert cluster_average_linkage_torch(D, threshold).tolist() == expected, threshold
        assert same_partition(sklearn_raw_labels(D, threshold), expected), threshold


def test_hand_computed_features_on_a_circle():
    deg = torch.tensor([0.0, 20.0, 90.0, 100.0, 130.0], dtype=torch.float64)
    X = torch.stack([torch.cos(torch.deg2rad(deg)), torch.sin(torch.deg2rad(deg))], dim=1)
    d = lambda a, b: 1 - math.cos(math.radians(a - b))  # noqa: E731
    # Merge distances in order: {2,3} 0.0152, {0,1} 0.0603, {2,3}+{4} 0.1840, all 1.1071.
    first = d(90, 100)
    second = d(0, 20)
    third = (d(90, 130) + d(100, 130)) / 2
    last = sum(d(a, b) for a in (0, 20) for b in (90, 100, 130)) / 6
    assert first < 0.05 < second < 0.1 < third < 0.2 and last > 1
    cases = {0.99: [0, 1, 2, 3, 4], 0.95: [0, 1, 2, 2, 3], 0.9: [0, 0, 1, 1, 2], 0.8: [0, 0, 1, 1, 1]}
    for tau, expected in cases.items():
        for method in CLUSTERERS:
            assert agglomerative_clustering(X, tau, method=method).tolist() == expected, (tau, method)
    # Even the smallest tau keeps the two groups apart: their linkage exceeds 1.
    assert agglomerative_clustering(X, 1e-6, method="torch").tolist() == [0, 0, 1, 1, 1]


# ------------------------------------------------------------------ the two paths agree


@pytest.mark.parametrize(
    "N, C, tau",
    [
        (64, 8, 0.4),
        (64, 8, 0.8),
        (256, 8, 0.6),
        (256, 16, 0.3),
        (1024, 8, 0.6),
        (1024, 32, 0.2),
        (1024, 16, 0.45),
    ],
)
def test_paths_agree_on_random_features(N, C, tau):
    X = normalised((N, C), seed=N + C)
    labels = assert_paths_agree(X, tau)
    K = int(labels.max()) + 1
    assert 1 < K < N  # a non-trivial partition
    assert labels[0] == 0 and torch.equal(torch.unique(labels), torch.arange(K))


def test_paths_agree_on_blobs_and_find_them():
    g = torch.Generator().manual_seed(3)
    centres = normalised((6, 32), seed=4)
    blob = torch.randint(0, 6, (300,), generator=g)
    X = F.normalize(centres[blob] + 0.05 * torch.randn(300, 32, generator=g), dim=1)
    labels = assert_paths_agree(X, 0.6)
    assert torch.equal(labels, canonical_labels(blob))
    # A tau close to 1 splits the blobs into many small clusters.
    fine = assert_paths_agree(X, 0.999)
    assert int(fine.max()) + 1 > 6


def test_paths_agree_on_smooth_image_like_features():
    g = torch.Generator().manual_seed(5)
    field = F.interpolate(torch.randn(1, 24, 4, 4, generator=g), size=(16, 16), mode="bilinear")[0]
    X = F.normalize((field + 0.3 * torch.randn(24, 16, 16, generator=g)).reshape(24, -1).T, dim=1)
    for tau in (0.4, 0.6, 0.8):
        labels = assert_paths_agree(X, tau)
        assert 1 < int(labels.max()) + 1 < 256


def test_float64_float16_and_bfloat16_features():
    X = normalised((200, 8), seed=11)
    assert_paths_agree(X.double(), 0.6)
    assert_paths_agree(X.half(), 0.6)
    Xb = X.bfloat16()
    by_sklearn = agglomerative_clustering(Xb, 0.6, method="sklearn")
    by_torch = agglomerative_clustering(Xb, 0.6, method="torch")
    assert torch.equal(by_sklearn, by_torch)
    assert torch.equal(agglomerative_clustering(Xb, 0.6, method="scipy"), by_sklearn)
    assert same_partition(sklearn_raw_labels(cosine_distances(Xb).float(), 0.4), by_torch)


# ------------------------------------------------------------------------------- ties


def test_exact_duplicates():
    g = torch.Generator().manual_seed(7)
    distinct = normalised((12, 16), seed=8)
    X = torch.cat([distinct[torch.randint(0, 12, (200,), generator=g)], normalised((56, 16), seed=9)])
    X = X[torch.randperm(256, generator=g)]
    for tau in (0.2, 0.4, 0.6, 0.9):
        labels = assert_paths_agree(X, tau)
        # identical rows always end in the same cluster
        same_row = (X[:, None, :] == X[None, :, :]).all(-1)
        assert (labels[:, None] == labels[None, :])[same_row].all()
    # tau = 1: threshold 0, not even duplicates (distance 0) merge
    assert agglomerative_clustering(X, 1.0, method="torch").tolist() == list(range(256))
    assert agglomerative_clustering(X, 1.0, method="sklearn").tolist() == list(range(256))
    assert agglomerative_clustering(X, 1.0, method="scipy").tolist() == list(range(256))
    assert agglomerative_clustering(X, 1.0, method="components").tolist() == list(range(256))


def test_exact_distance_ties_between_duplicate_groups():
    # Vertices of the cube {±1/2}^4 are unit vectors with pairwise distances exactly
    # 0.5, 1, 1.5 or 2: every cross-group linkage is tied with many others. With a
    # threshold below 0.5 only identical rows merge, whatever the order of the ties.
    g = torch.Generator().manual_seed(12)
    vertices = torch.tensor(list(itertools.product([-0.5, 0.5], repeat=4)))
    which = torch.randint(0, 16, (80,), generator=g)
    X = vertices[which]
    D = cosine_distances(X)
    assert set(torch.unique(D).tolist()) <= {0.0, 0.5, 1.0, 1.5, 2.0}
    for tau in (0.55, 0.6, 0.75):
        labels = assert_paths_agree(X, tau)
        assert torch.equal(labels, canonical_labels(which))


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
def test_isolated_tie_goes_to_the_lower_index(order):
    # Cell b is at 1/4 from both a and c, which are 1 apart. With threshold 1/2 b merges
    # with one of them and the third stays alone (linkage (1 + 1/4)/2 = 0.625). scipy's
    # chain and the torch path both pair b with the lower index of a and c.
    a, b, c = order
    D = torch.zeros(3, 3)
    D[a, b] = D[b, a] = 0.25
    D[b, c] = D[c, b] = 0.25
    D[a, c] = D[c, a] = 1.0
    partner = min(a, c)
    expected = canonical_labels(torch.tensor([0 if i in (b, partner) else 1 for i in range(3)]))
    assert torch.equal(cluster_average_linkage_torch(D, 0.5), expected)
    assert same_partition(sklearn_raw_labels(D, 0.5), expected)


# ---------------------------------------------------------------- everything / nothing


def test_everything_merges():
    g = torch.Generator().manual_seed(13)
    axis = normalised((1, 32), seed=14)
    X = F.normalize(axis + 0.08 * torch.randn(128, 32, generator=g), dim=1)
    assert cosine_distances(X).max() < 0.9  # all similarities positive
    for tau in (0.1, 1e-4):
        labels = assert_paths_agree(X, tau)
        assert labels.tolist() == [0] * 128


def test_nothing_merges():
    X = torch.eye(40)  # pairwise distance exactly 1
    for tau in (0.05, 0.5, 1.0):  # threshold 0.95 < 1
        labels = assert_paths_agree(X, tau)
        assert labels.tolist() == list(range(40))
    X = normalised((128, 16), seed=15)
    assert agglomerative_clustering(X, 1.0, method="torch").tolist() == list(range(128))


def test_tiny_inputs():
    for method in ("sklearn", "scipy", "torch", "components", "auto"):
        assert agglomerative_clustering(torch.ones(1, 4) / 2, 0.6, method=method).tolist() == [0]
        assert agglomerative_clustering(torch.zeros(0, 4), 0.6, method=method).tolist() == []
        two = torch.tensor([[1.0, 0.0], [0.8, 0.6]])  # distance 0.2
        assert agglomerative_clustering(two, 0.7, method=method).tolist() == [0, 0]
        assert agglomerative_clustering(two, 0.9, method=method).tolist() == [0, 1]


def test_lower_triangle_and_diagonal_are_ignored():
    X = normalised((100, 6), seed=16)
    D = cosine_distances(X)
    upper = torch.triu(D, diagonal=1)
    noisy = upper + torch.tril(torch.rand(100, 100), diagonal=0)
    assert torch.equal(cluster_average_linkage_torch(noisy, 0.4), cluster_average_linkage_torch(upper + upper.T, 0.4))
    assert torch.equal(cluster_average_linkage_torch(noisy, 0.4), agglomerative_clustering(X, 0.6, method="sklearn"))


def test_labels_stay_on_input_device_and_auto_is_components_on_cpu(monkeypatch):
    import insid3lab.stages.clustering.components as comp

    X = normalised((64, 8), seed=17)
    calls = []
    real = comp.cluster_cosine_components
    monkeypatch.setattr(comp, "cluster_cosine_components", lambda X, t: calls.append(t) or real(X, t))
    labels = agglomerative_clustering(X, 0.6)
    assert calls == [pytest.approx(0.4)]
    assert labels.device == X.device and labels.dtype == torch.long
    assert torch.equal(labels, agglomerative_clustering(X, 0.6, method="sklearn"))


# ------------------------------------------------------------------------ validation


@pytest.mark.parametrize("tau", [0, 0.0, -0.1, 1.5, float("nan"), True, "0.6", None])
def test_tau_is_validated(tau):
    with pytest.raises(ValueError, match=r"tau must be a real number in \(0, 1\]"):
        agglomerative_clustering(normalised((8, 4), seed=0), tau)


def test_method_is_validated():
    with pytest.raises(
        ValueError,
        match="unknown clustering method 'kmeans'. Try one of 'auto', 'sklearn', 'scipy', 'torch', 'components'",
    ):
        agglomerative_clustering(normalised((8, 4), seed=0), 0.6, method="kmeans")
    with pytest.raises(ValueError, match="unknown clustering method None"):
        agglomerative_clustering(normalised((8, 4), seed=0), 0.6, method=None)


def test_features_are_validated():
    with pytest.raises(ValueError, match=r"X must be a 2-D \(N, C\) tensor"):
        agglomerative_clustering(torch.ones(8), 0.6)
    with pytest.raises(ValueError, match=r"X must be a 2-D \(N, C\) tensor"):
        agglomerative_clustering(torch.ones(1, 8, 4), 0.6)
    with pytest.raises(ValueError, match=r"X must be a 2-D \(N, C\) tensor"):
        agglomerative_clustering(np.ones((8, 4)), 0.6)
    with pytest.raises(TypeError, match="X must be a floating-point tensor"):
        agglomerative_clustering(torch.ones(8, 4, dtype=torch.long), 0.6)
    X = normalised((8, 4), seed=0)
    X[3, 1] = float("nan")
    with pytest.raises(ValueError, match="X must contain only finite values"):
        agglomerative_clustering(X, 0.6)
    with pytest.raises(ValueError, match=r"X must be a 2-D \(N, C\) tensor"):
        cosine_distances(torch.ones(8))


def test_distance_matrix_is_validated():
    with pytest.raises(ValueError, match=r"D must be a square \(N, N\) distance matrix"):
        cluster_average_linkage_torch(torch.zeros(3, 4), 0.4)
    with pytest.raises(TypeError, match="D must be a floating-point tensor"):
        cluster_average_linkage_torch(torch.zeros(3, 3, dtype=torch.long), 0.4)
    with pytest.raises(ValueError, match="threshold must be a real number"):
        cluster_average_linkage_torch(torch.zeros(3, 3), float("nan"))


# ------------------------------------------------------------- connected components


def test_threshold_components_by_hand():
    # Cells 0-1 and 2-3-4 (a chain) are linked below 0.3; cell 5 is alone; 0.3 itself is no edge.
    D = torch.full((6, 6), 0.9)
    for i, j, d in [(0, 1, 0.1), (2, 3, 0.2), (3, 4, 0.29), (1, 5, 0.3)]:
        D[i, j] = D[j, i] = d
    D.fill_diagonal_(0)
    Dn = D.numpy()
    assert threshold_components(Dn, 0.3).tolist() == [0, 0, 1, 1, 1, 2]
    assert threshold_components(Dn, 0.3, asymmetry=0.0).tolist() == [0, 0, 1, 1, 1, 2]
    assert threshold_components(Dn, 0.30001).tolist() == [0, 0, 1, 1, 1, 0]
    # Only the strict upper triangle decides: a small value below the diagonal is ignored.
    Dn[5, 2] = 0.0
    assert threshold_components(Dn, 0.3).tolist() == [0, 0, 1, 1, 1, 2]
    assert threshold_components(Dn, 0.3, asymmetry=0.0).tolist() == [0, 0, 1, 1, 1, 1]  # a superset


@pytest.mark.parametrize("seed", range(6))
def test_components_are_scipys_and_no_cluster_spans_two(seed):
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import connected_components

    g = torch.Generator().manual_seed(seed)
    centres = normalised((20, 16), seed=100 + seed)
    X = F.normalize(centres[torch.randint(0, 20, (300,), generator=g)] + 0.3 * torch.randn(300, 16, generator=g), dim=1)
    D = cosine_distances(X)
    Dn = D.numpy()
    for tau in (0.6, 0.8, 0.9):
        t = 1.0 - tau
        upper = np.triu(Dn.astype(np.float64) < t, 1)
        _, expected = connected_components(csr_matrix(upper), directed=False)
        comp = threshold_components(Dn, t)
        assert same_partition(comp, expected)
        assert comp[0] == 0 and set(comp.tolist()) == set(range(int(comp.max()) + 1))
        # The graph used for cosine distances: every exact component lies inside one of its components.
        loose = threshold_components(Dn, t, asymmetry=cosine_asymmetry_bound(X))
        assert len(set(zip(comp.tolist(), loose.tolist()))) == int(comp.max()) + 1
        labels = agglomerative_clustering(X, tau, method="sklearn").numpy()
        assert len(set(zip(labels.tolist(), comp.tolist()))) == int(labels.max()) + 1  # clusters nest in components
        assert int(labels.max()) >= int(comp.max()) >= 1


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_components_at_thresholds_equal_to_a_distance(dtype):
    # The threshold is exactly one of the distances (that pair must not merge) at several
    # quantiles, on random and on duplicated rows.
    for seed in range(8):
        g = torch.Generator().manual_seed(seed)
        N = 60 + 30 * seed
        X = torch.randn(N, 6, generator=g)
        if seed % 2:
            X = X[torch.randint(0, N, (N,), generator=g)]
        D = cosine_distances(F.normalize(X, dim=1).to(dtype))
        values = torch.unique(D[torch.triu(torch.ones(N, N, dtype=torch.bool), 1)])
        for q in (0.01, 0.05, 0.2, 0.5):
            t = float(values[int(q * (values.numel() - 1))])
            expected = cluster_average_linkage_scipy(D, t)
            got = canonical_labels(cluster_average_linkage_components(D, t, full_run_fraction=None))
            assert torch.equal(got, expected), (seed, q)
            assert torch.equal(cluster_average_linkage_torch(D, t), expected), (seed, q)


@pytest.mark.parametrize("N, C", [(150, 4), (400, 8), (400, 64), (900, 32)])
def test_components_path_on_groups_of_many_sizes(N, C):
    # Groups of 1..~40 cells at several spreads: singletons, pairs, small and large components.
    g = torch.Generator().manual_seed(N + C)
    centres = normalised((N // 8, C), seed=N * C)
    which = torch.randint(0, N // 8, (N,), generator=g)
    spread = 0.02 + 0.5 * torch.rand(N // 8, generator=g)
    X = F.normalize(centres[which] + spread[which, None] * torch.randn(N, C, generator=g), dim=1)
    for tau in (0.5, 0.7, 0.9, 0.97):
        sizes = np.bincount(threshold_components(cosine_distances(X).numpy(), 1 - tau))
        labels = assert_paths_agree(X, tau)
        assert int(labels.max()) + 1 >= sizes.size


# ------------------------------------------------------------------------------ registry


def test_a_custom_callable_is_used_and_its_labels_made_canonical():
    X = normalised((50, 4), seed=20)
    seen = []

    def halves(X, threshold):
        seen.append((X.shape, threshold))
        return torch.tensor([7] * 25 + [3] * 25)

    labels = agglomerative_clustering(X, 0.75, method=halves)
    assert seen == [((50, 4), 0.25)]
    assert labels.tolist() == [0] * 25 + [1] * 25


def test_register_clusterer_makes_a_name_selectable(monkeypatch):
    monkeypatch.setitem(CLUSTERERS, "placeholder", None)  # restored after the test
    register_clusterer("placeholder", lambda X, t: torch.arange(X.shape[0]).flip(0))
    X = normalised((10, 4), seed=21)
    assert agglomerative_clustering(X, 0.5, method="placeholder").tolist() == list(range(10))
    with pytest.raises(ValueError, match="Try one of .*'components', 'placeholder'"):
        agglomerative_clustering(X, 0.5, method="nope")


def test_the_decorator_registers_an_entry_and_returns_the_function(registries):
    @register_clusterer("reversed-for-test", help="  every cell\n alone,  reversed ")
    def each_alone(X, threshold):
        return torch.arange(X.shape[0]).flip(0)

    entry = CLUSTERERS["reversed-for-test"]
    assert entry.fn is each_alone and entry.name == "reversed-for-test"
    assert entry.tree is False and entry.help == "every cell alone, reversed"
    assert list(CLUSTERERS)[-1] == "reversed-for-test"
    assert [n for n, e in CLUSTERERS.items() if e.tree] == ["auto", "sklearn", "scipy", "components"]
    X = normalised((6, 4), seed=23)
    assert agglomerative_clustering(X, 0.5, method="reversed-for-test").tolist() == list(range(6))
    # a taken name is refused unless asked; the same function again is not a clash
    with pytest.raises(ValueError, match="'scipy' is already registered; pass overwrite=True"):
        register_clusterer("scipy", each_alone)
    assert register_clusterer("reversed-for-test", each_alone) is each_alone
    register_clusterer("scipy", each_alone, tree=False, overwrite=True)
    assert CLUSTERERS["scipy"].fn is each_alone and not CLUSTERERS["scipy"].tree


def test_register_clusterer_and_clusterer_output_are_validated():
    with pytest.raises(ValueError, match="non-empty string"):
        register_clusterer("", lambda X, t: X)
    with pytest.raises(TypeError, match="must be callable"):
        register_clusterer("x", 3)
    with pytest.raises(TypeError, match="must be callable"):
        register_clusterer("x")(3)
    X = normalised((10, 4), seed=22)
    with pytest.raises(ValueError, match=r"must return an \(N,\) = \(10,\) integer tensor"):
        agglomerative_clustering(X, 0.5, method=lambda X, t: torch.zeros(9, dtype=torch.long))
    with pytest.raises(ValueError, match=r"must return an \(N,\) = \(10,\) integer tensor"):
        agglomerative_clustering(X, 0.5, method=lambda X, t: torch.zeros(10))
