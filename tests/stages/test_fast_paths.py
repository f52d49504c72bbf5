"""Every fast path against the exact one: equal indices, equal partitions, equal masks.

The fast paths are the restricted and chunked backward matching, the sync-free cluster
counts, the uncached autocast casts, batched backbone passes and the cached reference
(against the authors' procedure of re-encoding it for every target). Tests marked
``cuda`` run only where a CUDA device exists.
"""

from __future__ import annotations

import statistics

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from insid3lab import INSID3, random_backbone
from insid3lab.authors import baseline_basis, baseline_segment
from insid3lab.bench import mask_iou, synthetic_inputs
from insid3lab.core.preprocess import preprocess_image, preprocess_mask
from insid3lab.stages import aggregation as agg
from insid3lab.stages import matching as mat
from insid3lab.stages.clustering import agglomerative_clustering
from insid3lab.stages.features import extract_features

pytestmark = pytest.mark.usefixtures("isolated_cache")

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def unit(shape, seed):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(*shape, generator=g), dim=0)


# ------------------------------------------------------------------ backward matching
@pytest.mark.parametrize("chunk_size", [1, 7, 64, 100, 333, 5000])
def test_chunked_nearest_cells_equal_the_whole_matrix(chunk_size):
    ref, tgt = unit((48, 30, 40), 0), unit((48, 36, 50), 1)
    whole = mat.nearest_reference_cells(ref, tgt)
    assert torch.equal(mat.nearest_reference_cells(ref, tgt, chunk_size=chunk_size), whole)


@pytest.mark.parametrize("count", [0, 1, 5, 63, 64, 65, 700, 1800])
def test_restricted_nearest_cells_equal_the_whole_matrix_where_asked(count):
    ref, tgt = unit((32, 40, 40), 2), unit((32, 36, 50), 3)
    whole = mat.nearest_reference_cells(ref, tgt).reshape(-1)
    cells = torch.randperm(36 * 50, generator=torch.Generator().manual_seed(count))[:count]
    for chunk in (None, 100):
        got = mat.nearest_reference_cells(ref, tgt, cells=cells, chunk_size=chunk).reshape(-1)
        assert torch.equal(got[cells], whole[cells])
        rest = torch.ones(36 * 50, dtype=torch.bool)
        rest[cells] = False
        assert bool((got[rest] == -1).all())


def test_nearest_cells_ties_go_to_the_first_reference_cell_in_every_path():
    ref = torch.zeros(4, 3, 3)
    ref[0] = 1.0  # all nine reference cells identical: every similarity ties
    tgt = unit((4, 10, 10), 4)
    for kw in ({}, {"chunk_size": 64}, {"cells": torch.arange(0, 100, 3)}):
        got = mat.nearest_reference_cells(ref, tgt, **kw)
        assert bool(((got == 0) | (got == -1)).all())


def test_restricted_votes_equal_the_votes_at_those_cells_and_the_candidates():
    refs = torch.stack([unit((24, 20, 20), s) for s in (5, 6, 7)])
    tgt = unit((24, 18, 22), 8)
    g = torch.Generator().manual_seed(9)
    masks = torch.rand(3, 20, 20, generator=g) > 0.6
    forward = torch.rand(18, 22, generator=g) > 0.5
    full = mat.backward_votes(refs, tgt, masks)
    cells = forward.reshape(-1).nonzero()[:, 0]
    part = mat.backward_votes(refs, tgt, masks, cells=cells, chunk_size=64)
    assert torch.equal(part[forward], full[forward])
    assert bool((part[~forward] == 0).all())
    for k in (1, 2, 3):
        assert torch.equal(
            mat.candidates(forward, mat.backward_mask(part, k)), mat.candidates(forward, mat.backward_mask(full, k))
        )


def test_chunk_size_is_validated():
    ref, tgt = unit((8, 4, 4), 0), unit((8, 4, 4), 1)
    with pytest.raises(ValueError, match="chunk_size"):
        mat.nearest_reference_cells(ref, tgt, chunk_size=0)
    with pytest.raises(ValueError, match="cells"):
        mat.nearest_reference_cells(ref, tgt, cells=torch.tensor([16]))


# ------------------------------------------------------------------ aggregation counts
def test_cluster_counts_equal_bincount():
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 13, (30, 30), generator=g)
    cand = torch.rand(30, 30, generator=g) > 0.7
    assert torch.equal(agg.cluster_sizes(labels, 15), torch.bincount(labels.reshape(-1), minlength=15))
    feats = F.normalize(torch.randn(900, 16, generator=g), dim=1)
    P = agg.cluster_prototypes(feats, labels.reshape(-1), 13)
    sim = torch.randn(30, 30, generator=g)
    sc = agg.seed_and_scores(cand, labels, 13, P, P, F.normalize(torch.randn(16, generator=g), dim=0), sim)
    hits = torch.bincount(labels[cand], minlength=13)
    assert torch.equal(sc["overlap"], hits > 0)
    expected_area = hits.float() / torch.bincount(labels.reshape(-1), minlength=13)
    expected_area[sc["seed"]] = 1.0
    assert torch.equal(sc["area"], expected_area)


# ------------------------------------------------------------------ autocast without the cast cache
def test_uncached_autocast_gives_the_cached_result(tiny):
    x = torch.randn(2, 3, 64, 96, generator=torch.Generator().manual_seed(0))
    got = extract_features(tiny, x, autocast_dtype=torch.bfloat16)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        cached = tiny.get_intermediate_layers(x, n=1, reshape=True)[0].float()
    assert got.dtype == torch.float32
    assert torch.equal(got, cached)


# ------------------------------------------------------------------ the fast mode
def test_the_basis_is_computed_at_full_precision_in_the_fast_mode(tiny):
    exact = INSID3(tiny, image_size=128, svd_components=20, basis_cache=False)
    fast = INSID3(tiny, image_size=128, svd_components=20, basis_cache=False, autocast_dtype=torch.bfloat16)
    assert torch.equal(fast.positional.black_image_features(), exact.positional.black_image_features())
    assert torch.equal(fast.positional.basis, exact.positional.basis)


def test_fast_mode_masks_agree_with_float32(tiny):
    refs, targets = synthetic_inputs(1, 8, seed=19, size=(120, 160))
    exact = INSID3(tiny, image_size=256, svd_components=30, basis_cache=False)
    fast = INSID3(tiny, image_size=256, svd_components=30, basis_cache=False, autocast_dtype=torch.bfloat16)
    exact.set_reference(*refs[0])
    fast.set_reference(*refs[0])
    ious = [mask_iou(fast.segment(t), exact.segment(t)) for t in targets]
    assert statistics.fmean(ious) >= 0.98, ious


# ------------------------------------------------------------------ masks end to end
CONFIGS = [  # (image_size, svd_components, shots, tau, merge_threshold)
    (64, 10, 1, 0.6, 0.2),
    (128, 20, 1, 0.6, 0.2),
    (128, 64, 2, 0.5, 0.1),
    (160, 40, 3, 0.6, 0.2),
    (256, 30, 1, 0.7, 0.0),
]


@pytest.mark.parametrize("S,r,k,tau,mt", CONFIGS)
def test_fast_decode_equals_the_traced_path_and_the_authors_procedure(tiny, S, r, k, tau, mt):
    refs, targets = synthetic_inputs(k, 3, seed=S + k, size=(120, 160))
    model = INSID3(tiny, image_size=S, svd_components=r, tau=tau, merge_threshold=mt, basis_cache=False)
    for img, m in refs:
        model.set_reference(img, m)
    U = baseline_basis(tiny, S, r)
    xs = torch.cat([preprocess_image(img, S)[0] for img, _ in refs])
    ms = torch.cat([preprocess_mask(m, S) for _, m in refs])
    for t in targets:
        fast = model.segment(t)  # votes only at the forward cells
        traced, trace = model.segment(t, return_trace=True)  # votes everywhere
        authors = baseline_segment(tiny, U, xs, ms, t, image_size=S, tau=tau, merge_threshold=mt)
        assert torch.equal(fast, traced)
        assert torch.equal(fast, authors)
        assert torch.equal(trace.candidates, trace.forward_mask & trace.backward_mask)


def test_timings_cover_every_stage_and_do_not_change_the_mask(tiny):
    refs, targets = synthetic_inputs(1, 1, seed=3, size=(120, 160))
    model = INSID3(tiny, image_size=128, svd_components=20, basis_cache=False)
    model.set_reference(*refs[0])
    times: dict[str, float] = {}
    mask = model.segment(targets[0], timings=times)
    assert torch.equal(mask, model.segment(targets[0]))
    assert {"preprocess", "features", "debias", "forward", "backward", "upsampling"} <= set(times)
    assert all(v >= 0 for v in times.values())


def test_segment_many_in_batches_equals_segment_one_by_one(tiny):
    refs, targets = synthetic_inputs(2, 5, seed=11, size=(100, 140))
    model = INSID3(tiny, image_size=128, svd_components=20, basis_cache=False)
    for img, m in refs:
        model.set_reference(img, m)
    single = [model.segment(t) for t in targets]
    for bs in (1, 2, 5):
        many = model.segment_many(targets, batch_size=bs)
        assert all(torch.equal(a, b) for a, b in zip(many, single))


def test_the_pipeline_clusters_into_the_same_partition_with_either_method(tiny):
    refs, targets = synthetic_inputs(1, 3, seed=5, size=(120, 160))
    model = INSID3(tiny, image_size=192, svd_components=20, basis_cache=False)
    for t in targets:
        enc = model.encode(t)
        X = enc.features_norm.reshape(enc.features_norm.shape[0], -1).T
        for tau in (0.4, 0.6, 0.8):
            a = agglomerative_clustering(X, tau, method="sklearn")
            b = agglomerative_clustering(X, tau, method="torch")
            assert torch.equal(a, b)  # canonical numbering: equal labels = equal partitions


# ------------------------------------------------------------------ CUDA
@pytest.mark.cuda
@cuda
def test_cuda_clustering_equals_sklearn_on_the_cpu(tiny):
    refs, targets = synthetic_inputs(1, 3, seed=7, size=(120, 160))
    model = INSID3(tiny, image_size=256, svd_components=20, basis_cache=False)
    for t in targets:
        enc = model.encode(t)
        X = enc.features_norm.reshape(enc.features_norm.shape[0], -1).T
        for tau in (0.5, 0.6, 0.7):
            on_gpu = agglomerative_clustering(X.cuda(), tau, method="auto")
            assert on_gpu.device.type == "cuda"
            assert torch.equal(on_gpu.cpu(), agglomerative_clustering(X, tau, method="sklearn"))


@pytest.mark.cuda
@cuda
def test_cuda_decode_equals_the_cpu_decode_of_the_same_features(tiny):
    from insid3lab.method import pipeline as method

    refs, targets = synthetic_inputs(2, 4, seed=13, size=(120, 160))
    cpu = INSID3(tiny, image_size=128, svd_components=20, basis_cache=False)
    for img, m in refs:
        cpu.set_reference(img, m)
    ref = cpu.shots.state()
    # the decode alone, a function of tensors: both sides start from the CPU's features and basis
    for t in targets:
        e = cpu.encode(t)
        args = (
            ref["features_deb"],
            ref["masks_low"],
            ref["prototype"],
            e.features_norm,
            cpu.positional.debias(e.features_norm),
        )
        want = method.decode(*args, cpu.params, out_size=e.orig_size)
        got = method.decode(*(a.cuda() for a in args), cpu.params, out_size=e.orig_size)
        assert got.device.type == "cuda" and torch.equal(got.cpu(), want)


@pytest.mark.cuda
@cuda
def test_cuda_segment_many_in_batches_equals_segment():
    model = INSID3(random_backbone("tiny", seed=0, device="cuda"), image_size=128, svd_components=20, basis_cache=False)
    refs, targets = synthetic_inputs(1, 6, seed=17, size=(100, 140))
    model.set_reference(*refs[0])
    single = [model.segment(t) for t in targets]
    many = model.segment_many(targets, batch_size=3)
    assert all(torch.equal(a, b) for a, b in zip(many, single))


@pytest.mark.cuda
@cuda
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_cuda_fast_mode_agrees_with_float32(dtype):
    bb = random_backbone("vits16", seed=0, device="cuda", num_hidden_layers=4)
    refs, targets = synthetic_inputs(1, 8, seed=19)
    exact = INSID3(bb, image_size=256, svd_components=100, basis_cache=False)
    fast = INSID3(bb, image_size=256, svd_components=100, basis_cache=False, autocast_dtype=dtype)
    exact.set_reference(*refs[0])
    fast.set_reference(*refs[0])
    ious = [mask_iou(fast.segment(t), exact.segment(t)) for t in targets]
    assert statistics.fmean(ious) >= 0.98, ious
    assert np.isfinite(ious).all()
