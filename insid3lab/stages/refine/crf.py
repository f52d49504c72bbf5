"""Optional stage 7b: refine the upsampled mask's boundary with a dense Gaussian CRF.

The paper's CRF refinement (``mask_refiner='crf'``), written for any device in pure torch. It follows
the authors' ``utils/refinement.py`` (``init_crf`` for the parameters, ``crf_refine`` for the band
logic) and, for the CRF itself, ``DenseGaussianCRF`` with ``GeneralCRF.frank_wolfe`` from the dense
CRF library they call (netw0rkf10w/CRF, ``src/CRF/CRF.py``):

1. Band. A disc of radius ``max(1, band // 2)`` splits the (S, S) mask into a core (the erosion,
   zero padding, so pixels near the image border are never core), an outside (the complement of the
   dilation) and the band between them.
2. Unary. Foreground probability ``p_core`` in the core, ``1 - p_core`` outside, 0.5 in the band;
   the two classes' scores are ``(-logit(p), logit(p))`` (p clamped to [1e-6, 1 - 1e-6]).
3. Pairwise. Potts (compatibility -1 on the diagonal, 0 elsewhere) over two normalised Gaussian
   kernels: bilateral on (row/alpha, col/alpha, r/beta, g/beta, b/beta), weight 20, and spatial on
   (row/gamma, col/gamma), weight 3; alpha = 12 S/512, beta = 0.03 on the image in [0, 1],
   gamma = 4 S/512. Both kernels are permutohedral-lattice filters in their library (the spatial one
   too, with d = 2), so both are here (``insid3lab.stages.refine.lattice``); each filter averages over all
   pixels including the pixel itself, divided by the filtered ones.
4. Solver. Regularised Frank-Wolfe, l2 regulariser (sparsemax), lambda = 1, fixed step 1, no x0
   mixing: start at ``x = softmax(scores)``, then ``iterations`` times
   ``x <- sparsemax(scores + 3 K_spatial x + 20 K_bilateral x)``.
5. Decision. Foreground where the final foreground probability exceeds the background one; only band
   pixels take it, the core stays foreground and the outside background.

With two classes and normalised kernels, ``K x_bg = 1 - K x_fg``, and sparsemax of two scores whose
difference is ``t`` gives the foreground ``clamp((1 + t) / 2, 0, 1)``; the solver therefore filters
one channel per kernel and iteration, which is the same computation as the library's two.
"""

from __future__ import annotations

import functools
import math
import numbers

import torch
import torch.nn.functional as F
from torch import Tensor

from insid3lab.stages.refine.lattice import PermutohedralLattice, dense_gaussian_filter
from insid3lab.stages.refine.registry import register_refiner

__all__ = [
    "CRF_DEFAULTS",
    "band_regions",
    "crf_energy",
    "crf_features",
    "crf_inference",
    "crf_refine",
    "crf_refiner",
    "crf_unary",
    "spatial_lattice",
]

#: The authors' settings (``init_crf``): band width in pixels, core probability, Frank-Wolfe
#: iterations, kernel standard deviations at S = 512 (alpha, gamma scale with S / 512) and weights.
CRF_DEFAULTS = {
    "band": 10,
    "p_core": 0.95,
    "iterations": 10,
    "alpha_at_512": 12.0,
    "beta": 0.03,
    "gamma_at_512": 4.0,
    "spatial_weight": 3.0,
    "bilateral_weight": 20.0,
}

#: Spatial lattices kept (:func:`spatial_lattice`): one per recent (H, W, gamma, device).
SPATIAL_CACHE_SIZE = 2

#: The filters ``crf_inference`` knows: the lattice (any size) and the exact brute force (small images).
FILTERS = ("lattice", "dense")


def band_regions(mask: Tensor, band: int = CRF_DEFAULTS["band"]) -> tuple[Tensor, Tensor, Tensor]:
    """Split a mask into core, outside and the band between (as the authors' ``crf_refine``).

    Args:
        mask: (H, W) bool.
        band: band width in pixels; the structuring element is a disc of radius ``max(1, band // 2)``.

    Returns:
        core, outside, band: (H, W) bool each, a partition of the image. Core is the erosion (pixels
        within the radius of the image border are never core), outside the complement of the dilation.

    Raises:
        ValueError: a band wider than twice the mask's larger side (its disc would cover the image
            many times over: every pixel is band long before).
    """
    _check_band(band, mask.shape)
    r = max(1, int(band) // 2)
    ax = torch.arange(-r, r + 1, device=mask.device)
    disc = ((ax[:, None] ** 2 + ax[None, :] ** 2) <= r * r).float()
    hits = F.conv2d(mask.float()[None, None], disc[None, None], padding=r)[0, 0]
    dilated = hits > 0
    core = hits == disc.sum()
    return core, ~dilated, dilated & ~core


def crf_unary(core: Tensor, outside: Tensor, p_core: float = CRF_DEFAULTS["p_core"]) -> Tensor:
    """The unary as the difference of the two class scores, logit_fg - logit_bg = 2 logit(p): (H, W) float32.

    ``p`` is ``p_core`` on ``core``, ``1 - p_core`` on ``outside`` and 0.5 elsewhere (the band).
    """
    p = torch.full(core.shape, 0.5, device=core.device, dtype=torch.float32)
    p[core] = p_core
    p[outside] = 1.0 - p_core
    return 2.0 * torch.logit(p.clamp(1e-6, 1 - 1e-6))


def crf_features(image: Tensor, alpha: float, beta: float, gamma: float) -> tuple[Tensor, Tensor]:
    """The kernels' features, pixels in row-major order.

    Args:
        image: (3, H, W) float in [0, 1].

    Returns:
        spatial: (H W, 2) float32, (row, col) / gamma.
        bilateral: (H W, 5) float32, (row / alpha, col / alpha, r / beta, g / beta, b / beta).
    """
    _, h, w = image.shape
    pos = _positions(h, w, image.device)
    colour = image.to(torch.float32).reshape(3, -1).T
    return pos / gamma, torch.cat([pos / alpha, colour / beta], dim=1)


def _positions(h: int, w: int, device) -> Tensor:
    """(H W, 2) float32 (row, col) of every pixel, row-major."""
    rows, cols = torch.meshgrid(
        torch.arange(h, device=device, dtype=torch.float32),
        torch.arange(w, device=device, dtype=torch.float32),
        indexing="ij",
    )
    return torch.stack([rows.reshape(-1), cols.reshape(-1)], dim=1)


@functools.lru_cache(maxsize=SPATIAL_CACHE_SIZE)
def spatial_lattice(h: int, w: int, gamma: float, device: torch.device) -> PermutohedralLattice:
    """The spatial kernel's lattice, on (row, col) / gamma: it depends only on the size and gamma, not the image.

    Built once per (H, W, gamma, device) and kept for the :data:`SPATIAL_CACHE_SIZE` most recent ones
    (about 40 MB each at 1024 x 1024), so a series of images of one size builds it once. Read-only.
    """
    return PermutohedralLattice(_positions(h, w, device) / gamma)


def crf_energy(
    x_fg: Tensor, unary: Tensor, k_spatial: Tensor, k_bilateral: Tensor, spatial_weight: float, bilateral_weight: float
) -> float:
    """The regularised energy Frank-Wolfe lowers, at a foreground probability map.

    ``E(x) = sum_i sum_l x_il (P x / 2 - U)_il + sum_i sum_l x_il^2 / 2`` with two labels (bg, fg),
    scores ``U = (-unary / 2, unary / 2)``, ``P x = -(w_s K_s x + w_b K_b x)`` (Potts, compatibility -1)
    and the l2 regulariser with lambda = 1 (the library's ``GeneralCRF.energy`` plus the regulariser).

    Args:
        x_fg: (n,) foreground probabilities; the background is ``1 - x_fg``.
        unary: (n,) score difference fg - bg.
        k_spatial, k_bilateral: (n,) the normalised kernels applied to ``x_fg``.

    Returns:
        The energy as a Python float (float64 sum).
    """
    x = torch.stack([1.0 - x_fg, x_fg]).double()
    u = torch.stack([-unary / 2, unary / 2]).double()
    kx = torch.stack([1.0 - k_spatial, k_spatial]).double() * spatial_weight
    kx = kx + torch.stack([1.0 - k_bilateral, k_bilateral]).double() * bilateral_weight
    return float((x * (-0.5 * kx - u)).sum() + 0.5 * x.square().sum())


def crf_inference(
    image: Tensor,
    unary: Tensor,
    *,
    iterations: int = CRF_DEFAULTS["iterations"],
    alpha: float,
    beta: float = CRF_DEFAULTS["beta"],
    gamma: float,
    spatial_weight: float = CRF_DEFAULTS["spatial_weight"],
    bilateral_weight: float = CRF_DEFAULTS["bilateral_weight"],
    filtering: str = "lattice",
    energies: list[float] | None = None,
) -> Tensor:
    """Two-label dense Gaussian CRF by regularised Frank-Wolfe (l2, lambda 1, step 1), as ``frank_wolfe``.

    Args:
        image: (3, H, W) float in [0, 1].
        unary: (H, W) float, the score difference fg - bg (``crf_unary``).
        iterations: Frank-Wolfe steps (each filters once with each kernel, built once; the spatial
            lattice is shared by images of one size, :func:`spatial_lattice`).
        alpha, beta, gamma: kernel standard deviations (pixels, colour, pixels).
        spatial_weight, bilateral_weight: kernel weights.
        filtering: "lattice" (permutohedral, any size) or "dense" (exact brute force, small images).
        energies: if a list, the energy (``crf_energy``) of the start and of every iterate is appended.

    Returns:
        (H, W) float32, the final score difference fg - bg; the label is foreground where it is > 0.
    """
    if filtering not in FILTERS:
        raise ValueError(f"crf_inference: filtering must be one of {FILTERS}; got {filtering!r}")
    _, h, w = image.shape
    spatial, bilateral = crf_features(image, alpha, beta, gamma)
    if filtering == "lattice":
        k_s = spatial_lattice(h, w, float(gamma), image.device).filter
        k_b = PermutohedralLattice(bilateral).filter
    else:

        def k_s(v):
            return dense_gaussian_filter(spatial, v).float()

        def k_b(v):
            return dense_gaussian_filter(bilateral, v).float()

    u = unary.to(device=image.device, dtype=torch.float32).reshape(-1)
    x = torch.sigmoid(u)  # softmax of the scores (-u/2, u/2), foreground component
    t = u
    for _ in range(iterations):
        fs, fb = k_s(x[:, None])[:, 0], k_b(x[:, None])[:, 0]
        if energies is not None:
            energies.append(crf_energy(x, u, fs, fb, spatial_weight, bilateral_weight))
        # the scores fg - bg of sparsemax's argument, normalised kernels: K x_bg = 1 - K x_fg
        t = u + spatial_weight * (2.0 * fs - 1.0) + bilateral_weight * (2.0 * fb - 1.0)
        x = ((t + 1.0) * 0.5).clamp_(0.0, 1.0)
    if energies is not None:
        fs, fb = k_s(x[:, None])[:, 0], k_b(x[:, None])[:, 0]
        energies.append(crf_energy(x, u, fs, fb, spatial_weight, bilateral_weight))
    return t.reshape(h, w)


def _check_band(band, shape) -> None:
    """A band of at most twice the larger side of an (H, W) mask (one line, before any allocation)."""
    _positive("band", band, integer=True)
    side = max(int(shape[-2]), int(shape[-1]))
    if band > 2 * side:
        raise ValueError(f"crf_refine: band={band} exceeds twice the mask's larger side ({2 * side}); give a band "
                         f"in pixels of the mask, at most {2 * side} (default {CRF_DEFAULTS['band']})")  # fmt: skip


def _positive(name: str, value, *, integer: bool = False) -> None:
    kind = numbers.Integral if integer else numbers.Real
    if isinstance(value, bool) or not isinstance(value, kind) or not value > 0 or not math.isfinite(value):
        what = "a positive integer" if integer else "a positive finite number"
        raise ValueError(f"crf_refine: {name} must be {what}; got {value!r}")


def _check_inputs(image: Tensor, mask: Tensor) -> None:
    if not isinstance(image, Tensor) or image.ndim != 3 or image.shape[0] != 3 or not image.is_floating_point():
        got = f"{tuple(image.shape)} {image.dtype}" if isinstance(image, Tensor) else type(image).__name__
        raise ValueError(f"crf_refine: image must be a (3, H, W) float tensor in [0, 1]; got {got}")
    if image.numel() == 0:
        raise ValueError(f"crf_refine: image must be non-empty; got {tuple(image.shape)}")
    lo, hi = float(image.min()), float(image.max())
    if not (lo >= 0.0 and hi <= 1.0):
        raise ValueError(
            f"crf_refine: image values must lie in [0, 1]; got [{lo:.3g}, {hi:.3g}] "
            "(an ImageNet-normalised tensor passed by mistake? un-normalise it first)"
        )
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool or tuple(mask.shape) != tuple(image.shape[1:]):
        got = f"{tuple(mask.shape)} {mask.dtype}" if isinstance(mask, Tensor) else type(mask).__name__
        raise ValueError(
            f"crf_refine: mask must be a bool tensor of the image's size {tuple(image.shape[1:])}; got {got}"
        )
    if mask.device != image.device:
        raise ValueError(f"crf_refine: mask and image must be on one device; got {mask.device} and {image.device}")


@torch.no_grad()
def crf_refine(
    image: Tensor,
    mask: Tensor,
    *,
    band: int = CRF_DEFAULTS["band"],
    p_core: float = CRF_DEFAULTS["p_core"],
    iterations: int = CRF_DEFAULTS["iterations"],
    alpha: float | None = None,
    beta: float = CRF_DEFAULTS["beta"],
    gamma: float | None = None,
    spatial_weight: float = CRF_DEFAULTS["spatial_weight"],
    bilateral_weight: float = CRF_DEFAULTS["bilateral_weight"],
) -> Tensor:
    """Refine a mask's boundary: a dense CRF decides the band, the core and the outside are kept.

    Args:
        image: (3, H, W) float in [0, 1] (un-normalised RGB), on the device to compute on.
        mask: (H, W) bool, the upsampled mask.
        band: band width in pixels (> 0).
        p_core: foreground probability of the core (0.5 < p_core < 1); 1 - p_core outside.
        iterations: Frank-Wolfe iterations (> 0).
        alpha, gamma: bilateral and spatial standard deviations in pixels; default 12 and 4 times
            max(H, W) / 512.
        beta: colour standard deviation (> 0) on the [0, 1] image.
        spatial_weight, bilateral_weight: kernel weights (>= 0).

    Returns:
        (H, W) bool on the mask's device: ``mask`` with the band re-decided.
    """
    _check_inputs(image, mask)
    _check_band(band, mask.shape)
    _positive("iterations", iterations, integer=True)
    _positive("beta", beta)
    for name, value in (("alpha", alpha), ("gamma", gamma)):
        if value is not None:
            _positive(name, value)
    if isinstance(p_core, bool) or not isinstance(p_core, numbers.Real) or not 0.5 < p_core < 1.0:
        raise ValueError(f"crf_refine: p_core must lie in (0.5, 1); got {p_core!r}")
    for name, value in (("spatial_weight", spatial_weight), ("bilateral_weight", bilateral_weight)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (value >= 0 and math.isfinite(value)):
            raise ValueError(f"crf_refine: {name} must be a finite number >= 0; got {value!r}")

    scale = max(mask.shape) / 512.0
    alpha = CRF_DEFAULTS["alpha_at_512"] * scale if alpha is None else float(alpha)
    gamma = CRF_DEFAULTS["gamma_at_512"] * scale if gamma is None else float(gamma)

    core, outside, in_band = band_regions(mask, band)
    if not in_band.any():  # nothing to decide: the mask is its own core (or empty)
        return mask.clone()
    t = crf_inference(
        image,
        crf_unary(core, outside, p_core),
        iterations=iterations,
        alpha=alpha,
        beta=float(beta),
        gamma=gamma,
        spatial_weight=float(spatial_weight),
        bilateral_weight=float(bilateral_weight),
    )
    return torch.where(in_band, t > 0, core)


@register_refiner("crf", help="the authors' dense CRF on a band around the boundary")
def crf_refiner(mask: Tensor, image: Tensor) -> Tensor:
    """The CRF as a mask refiner with the authors' settings: (S, S) bool, (3, S, S) in [0, 1] -> (S, S) bool.

    Registered as ``refine="crf"`` (:mod:`insid3lab.stages.refine.registry`); the authors' ``mask_refiner="crf"``.
    """
    return crf_refine(image, mask)


def _crf_band(mask: Tensor) -> Tensor:
    """(S, S) bool -> (S, S) bool: the band whose pixels the CRF decides (the rest is kept)."""
    return band_regions(mask)[2]


#: The pixels the refiner may change, recorded in the trace as ``refine_band``.
crf_refiner.band = _crf_band
