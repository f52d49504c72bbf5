"""Each stage against a hand computation on tiny tensors."""

import math

import pytest
import torch
import torch.nn.functional as F

from insid3lab.stages import aggregation as agg
from insid3lab.stages import correspondence as corr
from insid3lab.stages import matching as mat
from insid3lab.stages import prototype as proto
from insid3lab.stages import subspace as sub
from insid3lab.stages.upsampling import upsample_mask


def _orthonormal(C, r, seed=0):
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(C, C, generator=g))
    return q[:, :r].contiguous()


def test_debias_removes_exactly_the_subspace():
    C, r = 12, 4
    U = _orthonormal(C, r)
    g = torch.Generator().manual_seed(1)
    X = F.normalize(torch.randn(2, C, 3, 5, generator=g), dim=1)
    X_deb = sub.debias(X, sub.complement_projector(U))
    flat = X_deb.reshape(2, C, -1)
    # nothing of the subspace is left, every cell is unit length
    assert torch.allclose(U.T @ flat, torch.zeros(2, r, 15), atol=1e-6)
    assert torch.allclose(flat.norm(dim=1), torch.ones(2, 15), atol=1e-6)
    # and it is the normalised orthogonal remainder, computed by hand
    Xf = X.reshape(2, C, -1)
    expected = F.normalize(Xf - U @ (U.T @ Xf), dim=1)
    assert torch.allclose(flat, expected, atol=1e-6)


def test_debias_of_a_vector_inside_the_complement_is_unchanged():
    U = torch.eye(6)[:, :2]  # the first two axes
    x = torch.zeros(1, 6, 1, 1)
    x[0, 3] = 1.0
    assert torch.equal(sub.debias(x, sub.complement_projector(U)), x)


def test_positional_svd_centres_over_positions():
    g = torch.Generator().manual_seed(2)
    f = torch.randn(1, 5, 3, 4, generator=g)
    U, S, mean = sub.positional_svd(f)
    E = f[0].reshape(5, -1)
    assert torch.allclose(mean, E.mean(dim=1))
    Ec = E - E.mean(dim=1, keepdim=True)
    # U spans the centred features: projecting on it reconstructs them
    assert torch.allclose(U @ (U.T @ Ec), Ec, atol=1e-5)
    # singular values are those of the centred matrix, in decreasing order
    assert torch.allclose(S, torch.linalg.svdvals(Ec), atol=1e-5)
    assert torch.all(S[:-1] >= S[1:])
    # a constant feature map has a zero centred matrix: all singular values vanish
    _, S0, _ = sub.positional_svd(torch.ones(1, 5, 3, 4))
    assert torch.allclose(S0, torch.zeros_like(S0), atol=1e-6)


def test_components_are_clamped_with_a_warning():
    with pytest.warns(UserWarning, match="exceeds min"):
        assert sub.clamp_components(50, 6, 4) == 4
    assert sub.clamp_components(3, 6, 4) == 3


def test_downsample_mask_bilinear_path():
    m = torch.zeros(64, 64, dtype=torch.bool)
    m[16:48, 0:32] = True
    d = proto.downsample_mask(m, 4, 4)
    expected = torch.zeros(4, 4, dtype=torch.bool)
    expected[1:3, 0:2] = True
    assert torch.equal(d, expected)


def test_downsample_mask_nearest_fallback():
    # One pixel exactly where nearest-neighbour samples (row 16, col 32 -> cell (1, 2));
    # the bilinear average over the cell is far below 0.5.
    m = torch.zeros(64, 64, dtype=torch.bool)
    m[16, 32] = True
    d = proto.downsample_mask(m, 4, 4)
    assert d.sum() == 1 and d[1, 2]


def test_downsample_mask_centroid_fallback():
    # Pixels that neither bilinear nor nearest sampling sees: the centroid (20, 37.5)
    # divided by the stride 16 and truncated gives cell (1, 2).
    m = torch.zeros(64, 64, dtype=torch.bool)
    m[20, 37] = True
    m[20, 38] = True
    d = proto.downsample_mask(m, 4, 4)
    assert d.sum() == 1 and d[1, 2]


def test_downsample_mask_empty_is_an_error():
    with pytest.raises(proto.EmptyMaskError, match="no foreground"):
        proto.downsample_mask(torch.zeros(32, 32, dtype=torch.bool), 2, 2)


def test_reference_prototype_averages_shot_means_then_normalises():
    C = 3
    f = torch.zeros(2, C, 1, 2)
    f[0, :, 0, 0] = torch.tensor([1.0, 0, 0])
    f[0, :, 0, 1] = torch.tensor([0, 1.0, 0])
    f[1, :, 0, 0] = torch.tensor([0, 0, 1.0])
    masks = torch.tensor([[[True, True]], [[True, False]]])
    shot = proto.shot_prototypes(f, masks)
    assert torch.allclose(shot, torch.tensor([[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]]))
    p = proto.reference_prototype(f, masks)
    assert torch.allclose(p, torch.tensor([0.25, 0.25, 0.5]) / math.sqrt(0.25**2 * 2 + 0.25))


def test_forward_similarity_and_mask():
    t = torch.zeros(2, 1, 3)
    t[0, 0] = torch.tensor([1.0, -1.0, 0.5])
    p = torch.tensor([2.0, 0.0])
    s = mat.forward_similarity(t, p)
    assert torch.allclose(s, torch.tensor([[2.0, -2.0, 1.0]]))
    assert torch.equal(mat.forward_mask(s), torch.tensor([[True, False, True]]))


def test_forward_mask_falls_back_to_the_quantile():
    s = -torch.arange(1.0, 11.0).reshape(2, 5)  # all negative: -1 ... -10
    q = torch.quantile(s.flatten(), 0.9)  # -1.9 by linear interpolation
    assert math.isclose(float(q), -1.9, rel_tol=1e-6)
    m = mat.forward_mask(s)
    assert m.sum() == 1 and m[0, 0]


def _onehot_refs():
    """Reference grid 2x2 whose cells are the axes e0..e3; target cells copy chosen axes."""
    ref = torch.eye(4).reshape(4, 2, 2)  # cell (i, j) holds e_{2i+j}
    tgt = torch.zeros(4, 1, 4)
    for x, j in enumerate([0, 1, 2, 3]):
        tgt[j, 0, x] = 1.0  # target cell x is most similar to reference cell j
    return ref, tgt


def test_nearest_reference_cells_is_the_argmax():
    ref, tgt = _onehot_refs()
    assert torch.equal(mat.nearest_reference_cells(ref, tgt), torch.tensor([[0, 1, 2, 3]]))


@pytest.mark.parametrize(
    "shot_masks, votes, need",
    [
        ([[1, 1, 0, 0]], [1, 1, 0, 0], 1),
        ([[1, 1, 0, 0], [0, 1, 1, 0]], [1, 2, 1, 0], 1),
        ([[1, 1, 0, 0], [0, 1, 1, 0], [0, 1, 0, 1]], [1, 3, 1, 1], 2),
    ],
)
def test_backward_votes_and_majority(shot_masks, votes, need):
    ref, tgt = _onehot_refs()
    k = len(shot_masks)
    refs = ref.unsqueeze(0).repeat(k, 1, 1, 1)
    masks = torch.tensor(shot_masks, dtype=torch.bool).reshape(k, 2, 2)
    v = mat.backward_votes(refs, tgt, masks)
    assert v.dtype == torch.int32
    assert v.flatten().tolist() == votes
    assert need == math.ceil(k / 2)
    assert torch.equal(mat.backward_mask(v, k), torch.tensor([votes]) >= need)


def test_candidates_is_the_conjunction():
    a = torch.tensor([[True, True, False]])
    b = torch.tensor([[True, False, False]])
    assert torch.equal(mat.candidates(a, b), torch.tensor([[True, False, False]]))


def test_cluster_prototypes_equal_a_loop():
    g = torch.Generator().manual_seed(3)
    X = torch.randn(40, 7, generator=g)
    labels = torch.randint(0, 6, (40,), generator=g)
    labels[:6] = torch.arange(6)
    P = agg.cluster_prototypes(X, labels, 6)
    for k in range(6):
        assert torch.allclose(P[k], F.normalize(X[labels == k].mean(0), dim=0), atol=1e-6)


def test_seed_and_scores_on_a_crafted_example():
    # grid 2x3, clusters: 0 = left column pair, 1 = middle pair, 2 = right pair
    labels = torch.tensor([[0, 1, 2], [0, 1, 2]])
    cand = torch.tensor([[True, True, False], [False, False, False]])
    p = torch.tensor([1.0, 0.0])
    P_deb = torch.tensor([[0.6, 0.8], [1.0, 0.0], [0.0, 1.0]])  # cluster 1 is closest to p
    P_orig = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]])
    sim = torch.tensor([[0.5, 0.9, -0.2], [0.1, 0.7, -0.4]])
    out = agg.seed_and_scores(cand, labels, 3, P_deb, P_orig, p, sim)
    assert int(out["seed"]) == 1
    assert out["overlap"].tolist() == [True, True, False]
    assert torch.allclose(out["area"], torch.tensor([0.5, 1.0, 0.0]))  # seed's area set to 1
    assert torch.allclose(out["intra"], torch.tensor([0.8, 1.0, 0.6]))
    assert torch.allclose(out["cross"], torch.tensor([0.3, 0.8, -0.3]))
    assert torch.allclose(out["score"], torch.tensor([0.3 * 0.8 * 0.5, 0.8, 0.0]))
    low = agg.aggregate(labels, out["score"], 0.2)
    assert torch.equal(low, torch.tensor([[False, True, False], [False, True, False]]))
    low = agg.aggregate(labels, out["score"], 0.1)
    assert torch.equal(low, torch.tensor([[True, True, False], [True, True, False]]))


def test_seed_is_chosen_only_among_clusters_with_candidates():
    labels = torch.tensor([[0, 1]])
    cand = torch.tensor([[False, True]])
    P = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    out = agg.seed_and_scores(cand, labels, 2, P, P, torch.tensor([1.0, 0.0]), torch.zeros(1, 2))
    assert int(out["seed"]) == 1  # cluster 0 is more similar to p but has no candidate


def test_upsample_mask_bilinear_threshold():
    m = torch.tensor([[True, False], [False, False]])
    up = upsample_mask(m, 4, 4)
    # align_corners=False: output row i samples input row (i + 0.5) / 2 - 0.5, clamped to [0, 1],
    # so the weight of input cell 0 along one axis is [1, 0.75, 0.25, 0]; the value is the product.
    a = torch.tensor([1.0, 0.75, 0.25, 0.0])
    assert torch.equal(up, (a[:, None] * a[None, :]) > 0.5)
    assert up.sum() == 4 and up[1, 1]


def test_keypoint_matching_on_distinct_cells_lands_on_the_same_cell():
    h, w = 4, 6
    feats = torch.eye(h * w).T.reshape(h * w, h, w)  # each cell its own axis
    pts = torch.tensor([[50.0, 10.0], [0.0, 0.0], [119.0, 79.0]])  # in a 120 x 80 (W x H) reference
    matches, maps = corr.match_keypoints(feats, feats, pts, (80, 120), (40, 60))
    cells = torch.tensor([[2.5, 0.5], [0.0, 0.0], [5.95, 3.95]]).round().clamp(min=0)
    cells[:, 0] = cells[:, 0].clamp(max=w - 1)
    cells[:, 1] = cells[:, 1].clamp(max=h - 1)
    expected = cells * torch.tensor([60 / w, 40 / h])
    assert maps.shape == (3, h, w)
    assert torch.allclose(matches, expected, atol=1e-3)
