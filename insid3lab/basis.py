"""The positional bases of one encoder: SVDs per image size and projectors per (size, r), cached.

Computed once per (weights, image size) and kept in memory; on disk too (see
:mod:`insid3lab.cache`) unless the disk cache is off, so a new process skips the extra
forward pass and the SVD.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from . import cache as _cache
from ._warn import warn as _warn
from .stages import subspace as sub
from .stages.features import l2_normalize

__all__ = ["PositionalBases"]


class PositionalBases:
    """Cached positional SVDs and complement projectors of one encoder.

    Args:
        encoder: the encoder (its weights' fingerprint keys the disk cache).
        disk: also keep the SVDs on disk.
    """

    def __init__(self, encoder, *, disk: bool = True):
        self.encoder = encoder
        self.disk = bool(disk)
        self._svd: dict[int, dict[str, Tensor]] = {}
        self._projectors: dict[tuple[int, int], Tensor] = {}
        self._components: dict[tuple[int, int], int] = {}
        self._version: tuple[int, ...] | None = None

    def svd(self, size: int, black_features: Callable[[], Tensor], device: torch.device) -> dict[str, Tensor]:
        """``U`` (C, m), ``S`` (m,), ``mean`` (C,) at input side ``size``; ``black_features()`` gives the
        (1, C, h, w) raw features of the black image when neither memory nor disk holds them."""
        version = self._weights_version()
        if version != self._version:
            # the weights changed in place (load_state_dict, an optimiser step, ...): nothing cached
            # for the old weights may be reused
            self.clear()
            self._version = version
        if size in self._svd:
            return self._svd[size]
        fp = _cache.weights_fingerprint(self.encoder) if self.disk else None
        data = _cache.load_basis(fp, size, channels=getattr(self.encoder, "embed_dim", None)) if fp else None
        if data is None:
            U, S, mean = sub.positional_svd(l2_normalize(black_features(), dim=1))
            data = {"U": U, "S": S, "mean": mean}
            if fp:
                try:
                    _cache.save_basis(fp, size, U, S, mean)
                except OSError as e:
                    _warn(f"could not write the basis cache ({e}); continuing without it")
        self._svd[size] = {k: v.to(device) for k, v in data.items()}
        return self._svd[size]

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

    def components(self, r: int, channels: int, positions: int, size: int) -> int:
        """r clamped to min(C, h*w), with one warning per (r, size) when it had to be reduced."""
        key = (r, size)
        if key not in self._components:
            self._components[key] = sub.clamp_components(r, channels, positions)
        return self._components[key]

    def projector(self, size: int, r: int, U: Tensor) -> Tensor:
        """I − U[:, :r] U[:, :r]ᵀ, (C, C), kept per (size, r)."""
        key = (size, r)
        if key not in self._projectors:
            self._projectors[key] = sub.complement_projector(U[:, :r].contiguous())
        return self._projectors[key]

    def debias(self, features_norm: Tensor, size: int, r: int, svd: Callable[[], dict[str, Tensor]]) -> Tensor:
        """(B, C, h, w) or (C, h, w) normalised features without their part in the first r directions of
        ``svd()["U"]`` (the SVD at input side ``size``), through the projector kept per (size, r)."""
        P = self.projector(size, r, svd()["U"])
        out = sub.debias(features_norm.unsqueeze(0) if features_norm.ndim == 3 else features_norm, P)
        return out[0] if features_norm.ndim == 3 else out

    def clear(self) -> None:
        """Forget everything held in memory."""
        self._svd.clear()
        self._projectors.clear()
