"""The positional bases of one encoder: SVDs per (image size, basis images) and projectors per r, cached.

The basis is estimated from the images :func:`basis_images` makes from the
:class:`~insid3lab.method.params.Params` (``basis_image``: the black image of the authors' code, or the
paper's noise images). Computed once per (weights, image size, basis images) and kept in memory;
on disk too (see :mod:`insid3lab.model.basis_cache`) unless the disk cache is off, so a new process skips the
extra forward passes and the SVD.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from insid3lab.core.preprocess import black_image, noise_images
from insid3lab.core.warn import warn as _warn
from insid3lab.method.params import Params
from insid3lab.model import basis_cache as _cache
from insid3lab.stages import subspace as sub
from insid3lab.stages.features import l2_normalize

__all__ = ["PositionalBases", "basis_images", "basis_tag"]


def basis_tag(params: Params) -> str:
    """What the basis of ``params`` is estimated from, as the cache keys it (:func:`insid3lab.model.basis_cache.basis_tag`):
    ``"black"``, or ``"noise<count>s<seed>"``."""
    return _cache.basis_tag(params.basis_image, params.basis_noise_images, params.basis_seed)


def basis_images(params: Params, size: int, device=None) -> Tensor:
    """The normalised images the positional basis is estimated from, at side ``size``: (n, 3, size, size).

    ``basis_image="black"``: the one black image (n = 1), as the authors' code. ``"noise"``:
    ``basis_noise_images`` seeded Gaussian noise images (:func:`insid3lab.core.preprocess.noise_images`); the
    paper's text estimates the positional subspace from noise images but gives neither their number
    nor their distribution, so both are choices recorded in the Params.
    """
    if params.basis_image == "black":
        return black_image(size, device=device)
    return noise_images(params.basis_noise_images, size, params.basis_seed, device=device)


class PositionalBases:
    """Cached positional SVDs and complement projectors of one encoder.

    Args:
        encoder: the encoder (its weights' fingerprint keys the disk cache).
        disk: also keep the SVDs on disk.
    """

    def __init__(self, encoder, *, disk: bool = True):
        self.encoder = encoder
        self.disk = bool(disk)
        self._svd: dict[tuple[int, str], dict[str, Tensor]] = {}
        self._projectors: dict[tuple[int, str, int], Tensor] = {}
        self._components: dict[tuple[int, int], int] = {}
        self._version: tuple[int, ...] | None = None

    def svd(
        self, size: int, params: Params, features: Callable[[Tensor], Tensor], device: torch.device
    ) -> dict[str, Tensor]:
        """``U`` (C, m), ``S`` (m,), ``mean`` (C,) at input side ``size`` from the basis images of ``params``
        (:func:`basis_images`); ``features`` maps (1, 3, S, S) images to (1, C, h, w) raw features and is
        called once per image when neither memory nor disk holds the SVD."""
        version = self._weights_version()
        if version != self._version:
            # the weights changed in place (load_state_dict, an optimiser step, ...): nothing cached
            # for the old weights may be reused
            self.clear()
            self._version = version
        tag = basis_tag(params)
        key = (size, tag)
        if key in self._svd:
            return self._svd[key]
        fp = _cache.weights_fingerprint(self.encoder) if self.disk else None
        channels = getattr(self.encoder, "embed_dim", None)
        data = _cache.load_basis(fp, size, tag=tag, channels=channels) if fp else None
        if data is None:
            images = basis_images(params, size, device)
            # one image per forward pass: n noise images at full size would otherwise need n times the memory
            raw = torch.cat([features(images[i : i + 1]) for i in range(images.shape[0])])
            U, S, mean = sub.positional_svd(l2_normalize(raw, dim=1))
            data = {"U": U, "S": S, "mean": mean}
            if fp:
                try:
                    _cache.save_basis(fp, size, U, S, mean, tag=tag)
                except OSError as e:
                    _warn(f"could not write the basis cache ({e}); continuing without it")
        self._svd[key] = {k: v.to(device) for k, v in data.items()}
        return self._svd[key]

    def _weights_version(self) -> tuple[int, ...]:
        """The version counters of every parameter and buffer: any in-place change of the weights through
        the tensors themselves (``load_state_dict``, ``param.copy_``) bumps one. Writes through ``.data``
        bypass the counters; call :meth:`clear` after those."""
        tensors = []
        for getter in ("parameters", "buffers"):
            fn = getattr(self.encoder, getter, None)
            if fn is not None:
                tensors.extend(fn())
        return tuple(t._version for t in tensors)

    def components(self, r: int, channels: int, positions: int, size: int, *, warn: bool = True) -> int:
        """r clamped to min(C, h*w), with one warning per (r, size) when it had to be reduced (and ``warn``)."""
        key = (r, size)
        if key not in self._components:
            self._components[key] = (
                sub.clamp_components(r, channels, positions) if warn else min(r, channels, positions)
            )
        return self._components[key]

    def projector(self, size: int, r: int, U: Tensor, tag: str = "black") -> Tensor:
        """I − U[:, :r] U[:, :r]ᵀ, (C, C), kept per (size, tag, r); ``U`` is the basis of (size, tag)."""
        key = (size, tag, r)
        if key not in self._projectors:
            self._projectors[key] = sub.complement_projector(U[:, :r].contiguous())
        return self._projectors[key]

    def debias(
        self,
        features_norm: Tensor,
        size: int,
        r: int,
        svd: Callable[[], dict[str, Tensor]],
        params: Params | None = None,
    ) -> Tensor:
        """(B, C, h, w) or (C, h, w) normalised features without their part in the first r directions of
        ``svd()["U"]`` (the SVD at input side ``size`` from the basis images of ``params``, default the
        black image), through the projector kept per (size, basis images, r)."""
        P = self.projector(size, r, svd()["U"], basis_tag(params or Params()))
        out = sub.debias(features_norm.unsqueeze(0) if features_norm.ndim == 3 else features_norm, P)
        return out[0] if features_norm.ndim == 3 else out

    def clear(self) -> None:
        """Forget everything held in memory."""
        self._svd.clear()
        self._projectors.clear()
