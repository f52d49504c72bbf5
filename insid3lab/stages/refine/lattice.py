"""Gaussian filtering in feature space: a permutohedral lattice in pure torch, and the exact dense filter.

Both filters compute, for every point i, the Gaussian-weighted average of the values of all points::

    out_i = sum_j k(f_i, f_j) v_j / sum_j k(f_i, f_j),   k(f_i, f_j) = exp(-|f_i - f_j|^2 / 2)

over features already divided by their standard deviations (the centre point included, nothing
subtracted). ``dense_gaussian_filter`` does it by brute force (O(n^2), for tests and small images);
``PermutohedralLattice`` approximates it in O(n d^2) with the permutohedral lattice of Adams, Baek and
Davis (Eurographics 2010): embed the points in the (d+1)-dimensional hyperplane, splat their values
onto the vertices of the enclosing simplex with barycentric weights, blur with [1/4, 1/2, 1/4] along
each of the d+1 lattice directions, slice back with the same weights, and divide by the same
pipeline applied to ones.

The lattice follows the CUDA filter of the dense CRF library the INSID3 authors use
(netw0rkf10w/CRF, ``PermutohedralLatticeGPU.cuh``: ``createLattice``, ``splatCache``, ``blur``,
``slice`` and ``init_scaleFactor``): the same feature scaling, closest-remainder-0 rounding and rank
tie-break, barycentric weights, blur order (direction 0 first), zero for a missing neighbour, and
normalisation by the homogeneous coordinate. Their hash table is replaced by integer codes: every
lattice key is encoded into one int64, ``torch.unique`` gives the lattice vertices, and the neighbours
along each direction are found with ``torch.searchsorted`` on the shifted codes. The lattice is built
once per set of features and applied many times (the CRF filters ten times with the same image).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["PermutohedralLattice", "dense_gaussian_filter", "permutohedral_filter"]

#: Largest product of per-coordinate key ranges that still encodes into a non-negative int64.
_MAX_CODE = 2**62


def _check_features(features: Tensor, name: str) -> None:
    if not isinstance(features, Tensor) or features.ndim != 2 or features.shape[0] < 1 or features.shape[1] < 1:
        got = tuple(features.shape) if isinstance(features, Tensor) else type(features).__name__
        raise ValueError(f"{name}: features must be a (n, d) tensor with n, d >= 1; got {got}")
    if not features.is_floating_point() or not torch.isfinite(features).all():
        raise ValueError(f"{name}: features must be finite floating-point values")


def _check_values(values: Tensor, n: int, name: str) -> None:
    if not isinstance(values, Tensor) or values.ndim != 2 or values.shape[0] != n:
        got = tuple(values.shape) if isinstance(values, Tensor) else type(values).__name__
        raise ValueError(f"{name}: values must be an (n, c) tensor with n = {n} (one row per feature); got {got}")


class PermutohedralLattice:
    """The permutohedral lattice of a set of points, ready to filter any values defined on them.

    Building it (embedding, rounding to the enclosing simplex, barycentric weights, vertex codes
    and neighbour indices) is the expensive part; ``filter`` then costs one scatter, 2(d+1)
    gathers and one gather per call.

    Args:
        features: (n, d) float, the points' features already divided by the kernel's standard
            deviations (pixel coordinates / spatial std, colours / colour std).

    Attributes:
        n, d: number of points and feature dimension.
        m: number of lattice vertices in use.
        index: (n, d+1) int64, the lattice vertex of each vertex of each point's simplex.
        weight: (n, d+1) float32, the barycentric weights (sum 1 per point).
        neighbours: (d+1, 2, m) int64, the +/- neighbour of every vertex along each lattice
            direction; ``m`` (a zero row) where the neighbour is not in use.
        norm: (n, 1) float32, the filter applied to ones (the normaliser).
    """

    def __init__(self, features: Tensor) -> None:
        _check_features(features, "PermutohedralLattice")
        pos = features.detach().to(torch.float32)
        n, d = pos.shape
        dev = pos.device
        self.n, self.d = n, d
        d1 = d + 1

        # Embed into the hyperplane sum(x) = 0 of R^(d+1), scaled so that the blur below is a unit
        # Gaussian (init_scaleFactor, first loop of createLattice).
        inv_std = d1 * math.sqrt(2.0 / 3.0)
        scale = torch.tensor([inv_std / math.sqrt((i + 1) * (i + 2)) for i in range(d)], dtype=torch.float32)
        cf = pos * scale.to(dev)  # (n, d)
        # suffix[:, i] = sum_{k >= i} cf[:, k], with suffix[:, d] = 0
        suffix = torch.cat([cf.flip(1).cumsum(1).flip(1), cf.new_zeros(n, 1)], dim=1)  # (n, d+1)
        coef = torch.arange(d1, device=dev, dtype=torch.float32)
        elevated = suffix - coef * torch.cat([cf.new_zeros(n, 1), cf], dim=1)  # (n, d+1)

        # The closest remainder-0 lattice point, coordinate by coordinate (multiples of d+1).
        v = (elevated.double() * (1.0 / d1)).float()
        up = torch.ceil(v) * d1
        down = torch.floor(v) * d1
        rem0 = torch.where(up - elevated < elevated - down, up, down).to(torch.int64)
        del v, up, down, cf, suffix
        shift = rem0.sum(1, keepdim=True) // d1  # how far off the hyperplane the rounding went

        # Rank of each coordinate of the residual (ties: the later coordinate ranks higher).
        diff = elevated - rem0.to(torch.float32)
        rank = torch.zeros(n, d1, dtype=torch.int64, device=dev)
        for i in range(d):
            for j in range(i + 1, d1):
                later_greater = diff[:, i] < diff[:, j]
                rank[:, i] += later_greater
                rank[:, j] += ~later_greater
        del diff
        rank = rank + shift
        low, high = rank < 0, rank > d
        rank = torch.where(low, rank + d1, torch.where(high, rank - d1, rank))
        rem0 = torch.where(low, rem0 + d1, torch.where(high, rem0 - d1, rem0))

        # Barycentric weights of the point in its simplex (p. 10 of Adams et al. 2010).
        delta = (elevated - rem0.to(torch.float32)) * (1.0 / d1)
        bary = torch.zeros(n, d + 2, device=dev, dtype=torch.float32)
        bary.scatter_add_(1, d - rank, delta)
        bary.scatter_add_(1, d + 1 - rank, -delta)
        bary[:, 0] += 1.0 + bary[:, d + 1]
        self.weight = bary[:, :d1].contiguous()
        del delta, bary, elevated

        # Vertex r of the simplex has key rem0[:d] + r, minus (d+1) where rank > d - r. Encode the d
        # stored coordinates (the last is redundant) in mixed radix, with a margin of d+1 on both
        # sides so that the neighbours' codes (+/-1 on every coordinate, -/+(d+1) on one) stay exact.
        key0 = rem0[:, :d]
        lo = key0.amin(0) - 2 * d1
        hi = key0.amax(0) + 2 * d1
        radix = (hi - lo + 1).tolist()
        if math.prod(radix) >= _MAX_CODE:
            raise ValueError(
                "PermutohedralLattice: the features span too wide a range to index the lattice "
                f"(key ranges {radix}); divide them by larger standard deviations"
            )
        place = [1] * d
        for i in range(d - 2, -1, -1):
            place[i] = place[i + 1] * radix[i + 1]
        place_t = torch.tensor(place, dtype=torch.int64, device=dev)
        base = ((key0 - lo) * place_t).sum(1)  # (n,)
        all_ones = int(sum(place))
        r = torch.arange(d1, device=dev)
        codes = base[:, None] + r * all_ones  # (n, d+1)
        for i in range(d):
            codes -= (d1 * place[i]) * (rank[:, i : i + 1] > (d - r)).to(torch.int64)

        del base, rank, rem0
        uniq, inverse = torch.unique(codes.reshape(-1), sorted=True, return_inverse=True)
        del codes
        m = uniq.numel()
        self.m = m
        self.index = inverse.reshape(n, d1)

        # Neighbours along direction c: +1 on every coordinate and -(d+1) on coordinate c (none for
        # c = d, whose coordinate is not stored), and the opposite for the minus neighbour.
        steps = [all_ones - d1 * place[c] if c < d else all_ones for c in range(d1)]
        step_t = torch.tensor(steps, dtype=torch.int64, device=dev)
        shifted = torch.stack([uniq[None, :] + step_t[:, None], uniq[None, :] - step_t[:, None]], dim=1)
        found = torch.searchsorted(uniq, shifted).clamp_(max=m - 1)
        self.neighbours = torch.where(uniq[found] == shifted, found, torch.full_like(found, m))

        self.norm = self._apply(torch.ones(n, 1, device=dev, dtype=torch.float32))

    def _apply(self, values: Tensor) -> Tensor:
        """Splat, blur and slice without normalisation: (n, c) float32 -> (n, c) float32."""
        c = values.shape[1]
        # splat (splatCache): accumulate the weighted values on the simplex vertices; row m stays 0
        contrib = (self.weight[:, :, None] * values[:, None, :]).reshape(-1, c)
        lat = values.new_zeros(self.m + 1, c).index_add_(0, self.index.reshape(-1), contrib)
        # blur (blur): [1/4, 1/2, 1/4] along each lattice direction, direction 0 first
        for c_dir in range(self.d + 1):
            plus, minus = self.neighbours[c_dir]
            out = lat * 0.5
            out[: self.m] += 0.25 * (lat[plus] + lat[minus])
            lat = out
        # slice (slice): barycentric interpolation back at the points
        return (lat[self.index] * self.weight[:, :, None]).sum(1)

    def filter(self, values: Tensor) -> Tensor:
        """The normalised Gaussian filter of ``values``: (n, c) -> (n, c) float32."""
        _check_values(values, self.n, "PermutohedralLattice.filter")
        values = values.to(device=self.weight.device, dtype=torch.float32)
        return self._apply(values) / self.norm


def permutohedral_filter(features: Tensor, values: Tensor) -> Tensor:
    """Normalised Gaussian filter by the permutohedral lattice (one-off; build the lattice to reuse it).

    Args:
        features: (n, d) float, divided by the kernel's standard deviations.
        values: (n, c) float.

    Returns:
        (n, c) float32, approximately ``dense_gaussian_filter(features, values)``.
    """
    _check_features(features, "permutohedral_filter")
    _check_values(values, features.shape[0], "permutohedral_filter")
    return PermutohedralLattice(features).filter(values)


def dense_gaussian_filter(features: Tensor, values: Tensor, *, chunk: int = 1024) -> Tensor:
    """The exact normalised Gaussian filter by brute force, O(n^2) time, O(chunk n) memory.

    Args:
        features: (n, d) float, divided by the kernel's standard deviations.
        values: (n, c) float.
        chunk: rows of the kernel matrix held at once.

    Returns:
        (n, c) in float64: ``out_i = sum_j exp(-|f_i - f_j|^2 / 2) v_j / sum_j exp(-|f_i - f_j|^2 / 2)``.
    """
    _check_features(features, "dense_gaussian_filter")
    _check_values(values, features.shape[0], "dense_gaussian_filter")
    f = features.to(torch.float64)
    v = values.to(device=f.device, dtype=torch.float64)
    out = []
    for start in range(0, f.shape[0], chunk):
        k = torch.exp(-0.5 * torch.cdist(f[start : start + chunk], f).square())
        out.append((k @ v) / k.sum(1, keepdim=True))
    return torch.cat(out)
