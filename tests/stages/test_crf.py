"""The dense CRF refinement: lattice filter against brute force, solver, band logic, errors, devices."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from insid3lab.stages.refine.crf import (
    CRF_DEFAULTS,
    band_regions,
    crf_features,
    crf_inference,
    crf_refine,
    crf_refiner,
    crf_unary,
)
from insid3lab.stages.refine.lattice import PermutohedralLattice, dense_gaussian_filter, permutohedral_filter
from insid3lab.synthetic import sample_scene


def _scene(seed: int, h: int, w: int, grid: int = 8):
    """(3, h, w) image in [0, 1], its ground-truth mask and a coarse mask (area-pooled to a grid, upsampled)."""
    img, m = sample_scene(seed, size=(h, w))
    image = torch.from_numpy(img).permute(2, 0, 1).float() / 255
    gt = torch.from_numpy(m)
    pooled = F.interpolate(gt[None, None].float(), size=(grid, grid), mode="area")
    coarse = F.interpolate(pooled, size=(h, w), mode="bilinear", align_corners=False)[0, 0] > 0.5
    return image, gt, coarse


def _iou(a: torch.Tensor, b: torch.Tensor) -> float:
    union = (a | b).sum().item()
    return 1.0 if union == 0 else (a & b).sum().item() / union


def _edge_image(h: int = 48, w: int = 64, edge: int = 30, seed: int = 0) -> torch.Tensor:
    """Red left of column ``edge``, blue from it on, light noise: (3, h, w) in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    image = torch.empty(3, h, w)
    image[:, :, :edge] = torch.tensor([0.8, 0.2, 0.15])[:, None, None]
    image[:, :, edge:] = torch.tensor([0.15, 0.3, 0.75])[:, None, None]
    return (image + 0.02 * torch.randn(3, h, w, generator=g)).clamp(0, 1)


# ---------------------------------------------------------------- lattice filter


@pytest.mark.parametrize("colour_std", [None, 0.1, 0.3])
def test_lattice_filter_matches_dense_filter(colour_std):
    # The permutohedral lattice approximates the Gaussian by splatting onto simplex vertices, one
    # [1/4, 1/2, 1/4] blur along each of the d+1 lattice directions and slicing; Adams, Baek and Davis
    # (2010) report errors of a few percent of the signal range against the exact filter. Measured here: mean |error| ~0.003-0.007,
    # max ~0.02-0.05 on a 0/1 signal. Tolerances: mean 0.015, max 0.1 (a tenth of the signal range), and a
    # relative L2 error (to the signal's deviation from its mean) under 5%.
    image = _edge_image(40, 48)
    rows, cols = torch.meshgrid(torch.arange(40.0), torch.arange(48.0), indexing="ij")
    spatial_std = 3.0 if colour_std is None else 4.0
    feats = [rows.reshape(-1) / spatial_std, cols.reshape(-1) / spatial_std]
    if colour_std is not None:
        feats += [image[c].reshape(-1) / colour_std for c in range(3)]
    features = torch.stack(feats, 1)
    disc = ((rows - 20) ** 2 + (cols - 22) ** 2 < 150).float().reshape(-1, 1)
    values = torch.cat([disc, 1 - disc, (cols.reshape(-1, 1) / 47)], 1)
    approx = permutohedral_filter(features, values)
    exact = dense_gaussian_filter(features, values).float()
    err = (approx - exact).abs()
    assert approx.shape == values.shape and approx.dtype == torch.float32
    assert err.mean() < 0.015 and err.max() < 0.1
    rel = (approx - exact).norm() / (exact - exact.mean(0)).norm()
    assert rel < 0.05
    # the filter is linear and normalised: channels that sum to one still sum to one
    torch.testing.assert_close(approx[:, 0] + approx[:, 1], torch.ones(40 * 48), atol=1e-5, rtol=0)


@pytest.mark.parametrize("d", [1, 3])
def test_lattice_other_dimensions_and_constants(d):
    g = torch.Generator().manual_seed(d)
    features = torch.rand(300, d, generator=g) * 4
    values = torch.rand(300, 2, generator=g)
    lattice = PermutohedralLattice(features)
    assert lattice.index.shape == (300, d + 1) and lattice.neighbours.shape == (d + 1, 2, lattice.m)
    torch.testing.assert_close(lattice.weight.sum(1), torch.ones(300), atol=1e-5, rtol=0)
    assert (lattice.weight >= -1e-6).all()
    # a constant is reproduced exactly, any signal approximately
    torch.testing.assert_close(lattice.filter(torch.full((300, 1), 0.7)), torch.full((300, 1), 0.7))
    err = (lattice.filter(values) - dense_gaussian_filter(features, values).float()).abs()
    assert err.mean() < 0.02 and err.max() < 0.1


def test_dense_filter_by_hand():
    # two points at distance 1 and a far one: weights exp(-1/2) between the first two
    features = torch.tensor([[0.0], [1.0], [100.0]])
    values = torch.tensor([[1.0], [0.0], [5.0]])
    k = math.exp(-0.5)
    out = dense_gaussian_filter(features, values)
    torch.testing.assert_close(out[:, 0], torch.tensor([1 / (1 + k), k / (1 + k), 5.0], dtype=torch.float64))


def test_lattice_errors():
    with pytest.raises(ValueError, match="features must be a"):
        PermutohedralLattice(torch.zeros(5))
    with pytest.raises(ValueError, match="finite"):
        PermutohedralLattice(torch.tensor([[0.0, float("nan")]]))
    with pytest.raises(ValueError, match="values must be an"):
        PermutohedralLattice(torch.zeros(5, 2)).filter(torch.zeros(4, 1))


# ---------------------------------------------------------------- band logic and unary


def test_band_regions_square_by_hand():
    mask = torch.zeros(64, 64, dtype=torch.bool)
    mask[20:44, 20:44] = True
    core, outside, band = band_regions(mask, 10)  # disc of radius 5
    expected_core = torch.zeros_like(mask)
    expected_core[25:39, 25:39] = True  # a square eroded by a disc: 5 px off each side
    assert torch.equal(core, expected_core)
    assert not outside[15, 32] and outside[14, 32]  # dilation reaches 5 px along an axis
    assert outside[16, 16] and not outside[17, 16]  # corner: 4^2 + 4^2 > 25, 3^2 + 4^2 = 25
    assert torch.equal(core ^ outside ^ band, torch.ones_like(mask)) and not (core & band).any()


def test_unary_values():
    core = torch.tensor([[True, False, False]])
    outside = torch.tensor([[False, False, True]])
    u = crf_unary(core, outside, 0.95)
    logit = math.log(0.95 / 0.05)
    torch.testing.assert_close(u, torch.tensor([[2 * logit, 0.0, -2 * logit]]))


def test_core_and_outside_are_kept():
    # The image says the object is the right half; the mask is a square on the left. Only the band
    # may change: the core stays foreground and the outside background whatever the colours say.
    image = _edge_image(64, 64, edge=32)
    mask = torch.zeros(64, 64, dtype=torch.bool)
    mask[16:48, 8:40] = True
    core, outside, band = band_regions(mask)
    out = crf_refine(image, mask)
    assert out[core].all() and not out[outside].any()
    assert torch.equal(out & ~band, mask & ~band)


def test_empty_and_full_masks_unchanged():
    # A full mask still has a band along the image border (the erosion pads with background), which the
    # CRF fills from the core. At 128 px the default kernels (alpha 3, gamma 1 px) reach across it; on
    # much smaller images they shrink under a pixel and the far side of the band stays a tie, which the
    # strict argmax calls background, as in the authors' code.
    image, _, _ = _scene(0, 128, 120)
    for mask in (torch.zeros(128, 120, dtype=torch.bool), torch.ones(128, 120, dtype=torch.bool)):
        assert torch.equal(crf_refine(image, mask), mask)


# ---------------------------------------------------------------- solver


def test_frank_wolfe_energy_decreases():
    # With an attractive Potts model and symmetric kernels the regularised energy is a concave quadratic
    # plus the l2 term, so every step-1 Frank-Wolfe iterate (the minimiser of the linearisation) lowers
    # it; the row-normalised kernels are close to symmetric and the decrease holds, with both filters.
    image, _, coarse = _scene(1, 48, 44)
    core, outside, _ = band_regions(coarse)
    for filt in ("lattice", "dense"):
        energies = []
        crf_inference(image, crf_unary(core, outside), alpha=6.0, gamma=2.0, filtering=filt, energies=energies)
        e = torch.tensor(energies, dtype=torch.float64)
        assert len(energies) == CRF_DEFAULTS["iterations"] + 1
        assert (e[1:] <= e[:-1] + 1e-6 * e.abs().max()).all()
        assert e[-1] < e[0] - 100  # a real decrease, not a standstill


def _sparsemax(z: torch.Tensor) -> torch.Tensor:
    """Sparsemax over dim 0 by sorting (Martins and Astudillo 2016): (L, n) -> (L, n)."""
    zs, _ = torch.sort(z, dim=0, descending=True)
    k = torch.arange(1, z.shape[0] + 1, dtype=z.dtype)[:, None]
    cums = zs.cumsum(0) - 1
    support = (k * zs > cums).sum(0, keepdim=True)
    tau = cums.gather(0, support - 1) / support
    return (z - tau).clamp(min=0)


def _normalised_kernel(features: torch.Tensor) -> torch.Tensor:
    """exp(-|f_i - f_j|^2 / 2), rows divided by their sums: (n, d) -> (n, n) float64."""
    f = features.double()
    k = torch.exp(-0.5 * torch.cdist(f, f).square())
    return k / k.sum(1, keepdim=True)


def _reference_refine(image, mask, alpha, gamma, beta=0.03, ws=3.0, wb=20.0, iterations=10, p=0.95):
    """The two-label CRF written out in full with the exact dense filter: scores (-l, l), softmax start,
    x <- sparsemax(U - P x) with P = -I (w_s K_s + w_b K_b), label = argmax log(x + 1e-9)."""
    core, outside, band = band_regions(mask, 10)
    prob = torch.full(mask.shape, 0.5)
    prob[core], prob[outside] = p, 1 - p
    logit = torch.logit(prob.clamp(1e-6, 1 - 1e-6)).reshape(-1).double()
    scores = torch.stack([-logit, logit])  # (2, n)
    spatial, bilateral = crf_features(image, alpha, beta, gamma)
    kernel = ws * _normalised_kernel(spatial) + wb * _normalised_kernel(bilateral)  # (n, n)
    compat = -torch.eye(2, dtype=torch.float64)
    x = torch.softmax(scores, 0)
    for _ in range(iterations):
        message = x @ kernel.T
        px = compat @ message
        x = _sparsemax(scores - px)
    logits = torch.log(x + 1e-9)
    label = (logits[1] > logits[0]).reshape(mask.shape)
    return torch.where(band, label, core), band


@pytest.mark.parametrize("seed,h,w", [(1, 48, 48), (2, 41, 37)])
def test_lattice_crf_agrees_with_exact_reference(seed, h, w):
    # alpha = 6, gamma = 2 px: on images this small the default scaling would give stds under a pixel,
    # where the lattice's quantisation is coarser than the pixel grid; these are the kernels of S = 256.
    image, gt, coarse = _scene(seed, h, w)
    ref, band = _reference_refine(image, coarse, alpha=6.0, gamma=2.0)
    # the one-channel solver with the exact filter is the two-label algorithm itself
    core, outside, _ = band_regions(coarse)
    exact = crf_inference(image, crf_unary(core, outside), alpha=6.0, gamma=2.0, filtering="dense") > 0
    assert torch.equal(torch.where(band, exact, core), ref)
    # and the lattice changes no more than a sliver of the band
    out = crf_refine(image, coarse, alpha=6.0, gamma=2.0)
    assert out.shape == (h, w) and out.dtype == torch.bool
    assert _iou(out[band], ref[band]) >= 0.98
    assert _iou(out, ref) >= 0.995
    assert _iou(out, gt) > _iou(coarse, gt)


def test_snaps_a_blurred_boundary_onto_a_colour_edge():
    # The mask overshoots a sharp red/blue edge at column 64 by 4 px (as a bilinear upsampling of a
    # coarse grid would): the CRF moves the boundary onto the edge on every row (128 px, default kernels).
    image = _edge_image(128, 128, edge=64)
    cols = torch.arange(128)[None, :].expand(128, 128)
    truth = cols < 64
    for mask in (cols < 68, cols < 60):  # overshoot, and a mask that stops short and must grow
        out = crf_refine(image, mask)
        assert (mask.sum(1).float() - 64).abs().mean().item() == 4.0
        assert (out.sum(1).float() - 64).abs().mean().item() < 0.1
        assert (out == truth).float().mean() > 0.999


def test_odd_size_and_refiner_signature():
    image, gt, coarse = _scene(3, 61, 47)
    out = crf_refiner(coarse, image)
    assert out.shape == (61, 47) and out.dtype == torch.bool
    assert torch.equal(out, crf_refine(image, coarse))
    assert _iou(out, gt) > _iou(coarse, gt)


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "image,mask,kwargs,match",
    [
        (torch.rand(4, 8, 8), torch.zeros(8, 8, dtype=torch.bool), {}, r"image must be a \(3, H, W\)"),
        (torch.rand(8, 8), torch.zeros(8, 8, dtype=torch.bool), {}, r"image must be a \(3, H, W\)"),
        (torch.randn(3, 8, 8) * 2, torch.zeros(8, 8, dtype=torch.bool), {}, "normalised tensor passed by mistake"),
        (torch.rand(3, 8, 8), torch.zeros(8, 9, dtype=torch.bool), {}, "mask must be a bool tensor of the image's"),
        (torch.rand(3, 8, 8), torch.zeros(8, 8), {}, "mask must be a bool tensor"),
        (torch.rand(3, 8, 8), torch.zeros(8, 8, dtype=torch.bool), {"band": 0}, "band must be a positive integer"),
        (torch.rand(3, 8, 8), torch.zeros(8, 8, dtype=torch.bool), {"iterations": -1}, "iterations must be"),
        (torch.rand(3, 8, 8), torch.zeros(8, 8, dtype=torch.bool), {"alpha": 0.0}, "alpha must be a positive"),
        (torch.rand(3, 8, 8), torch.zeros(8, 8, dtype=torch.bool), {"beta": -0.1}, "beta must be a positive"),
        (torch.rand(3, 8, 8), torch.zeros(8, 8, dtype=torch.bool), {"gamma": float("inf")}, "gamma must be"),
        (torch.rand(3, 8, 8), torch.zeros(8, 8, dtype=torch.bool), {"p_core": 0.3}, r"p_core must lie in"),
        (torch.rand(3, 8, 8), torch.zeros(8, 8, dtype=torch.bool), {"bilateral_weight": -1}, "bilateral_weight"),
    ],
)
def test_bad_input(image, mask, kwargs, match):
    with pytest.raises(ValueError, match=match):
        crf_refine(image, mask, **kwargs)


# ---------------------------------------------------------------- devices


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    image, _, coarse = _scene(4, 256, 256, grid=16)
    spatial, bilateral = crf_features(image, 6.0, 0.03, 2.0)
    values = torch.rand(256 * 256, 2, generator=torch.Generator().manual_seed(0))
    for features in (spatial, bilateral):
        cpu = PermutohedralLattice(features).filter(values)
        gpu = PermutohedralLattice(features.cuda()).filter(values.cuda())
        assert gpu.is_cuda
        torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-4, rtol=0)
    out_cpu = crf_refine(image, coarse)
    out_gpu = crf_refine(image.cuda(), coarse.cuda())
    assert out_gpu.is_cuda and out_gpu.dtype == torch.bool
    assert _iou(out_gpu.cpu(), out_cpu) >= 0.999


def test_an_absurd_band_is_one_line_before_any_allocation():
    image = torch.rand(3, 32, 40)
    mask = torch.zeros(32, 40, dtype=torch.bool)
    mask[8:20, 8:30] = True
    for band in (10**7, 81):
        with pytest.raises(ValueError, match=rf"crf_refine: band={band} exceeds twice the mask's larger side \(80\)"):
            crf_refine(image, mask, band=band)
    with pytest.raises(ValueError, match=r"band=10000000 exceeds twice"):
        band_regions(mask, 10**7)
    assert crf_refine(image, mask, band=80).shape == (32, 40)
