"""The positional bases of one model (``model.positional``): SVDs per (image size, basis images) and projectors per r, cached.

The basis is estimated from the images :func:`basis_images` makes from the
:class:`~insid3lab.method.params.Params` (``basis_image``: the black image of the authors' code, or the
paper's noise images). Computed once per (weights, image size, basis images) and kept in memory;
on disk too (see :mod:`insid3lab.model.basis_cache`) unless the disk cache is off, so a new process skips the
extra forward passes and the SVD.
"""

from __future__ import annotations

import torch
from torch import Tensor

from insid3lab.core.preprocess import black_image, noise_images
from insid3lab.core.warn import warn as _warn
from insid3lab.method.params import Params
from insid3lab.model import basis_cache as _cache
from insid3lab.stages import subspace as sub
from insid3lab.stages.features import extract_features, l2_normalize

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
    """The positional bases of one model (``model.positional``): SVDs per (image size, basis images),
    complement projectors per r, kept in memory and on disk.

    Every method reads the owner's current settings (``image_size``, ``params``, ``debias``, ``device``)
    and calls its encoder; nothing is computed before it is asked for.

    Args:
        model: the owner (an :class:`~insid3lab.INSID3`); its encoder's weights key the disk cache.
        disk: also keep the SVDs on disk (:mod:`insid3lab.model.basis_cache`).

    Attributes:
        disk: whether SVDs are read from and written to the disk cache.
    """

    def __init__(self, model, *, disk: bool = True):
        self.model = model
        self.disk = bool(disk)
        self._svd: dict[tuple[int, str], dict[str, Tensor]] = {}
        self._projectors: dict[tuple[int, str, int], Tensor] = {}
        self._components: dict[tuple[int, int], int] = {}
        self._version: tuple[int, ...] | None = None

    def svd(self) -> dict[str, Tensor]:
        """SVD of the basis images' features at the current size: ``U`` (C, m), ``S`` (m,), ``mean`` (C,).

        The images are the black one or noise (``basis_image``, see :func:`basis_images`); computed once
        per (weights, image size, basis images), kept in memory and on disk unless ``disk`` is off.
        Never under autocast, as :meth:`black_image_features`.
        """
        model = self.model
        version = self._weights_version()
        if version != self._version:
            # the weights changed in place (load_state_dict, an optimiser step, ...): nothing cached
            # for the old weights may be reused
            self._forget()
            self._version = version
        size, tag = model.image_size, basis_tag(model.params)
        if (size, tag) not in self._svd:
            data = self._load_or_compute(size, model.params)
            self._svd[(size, tag)] = {k: v.to(model.device) for k, v in data.items()}
        return self._svd[(size, tag)]

    def _load_or_compute(self, size: int, params: Params) -> dict[str, Tensor]:
        """The SVD from the disk cache, else from the basis images (then written to the cache)."""
        encoder, tag = self.model.encoder, basis_tag(params)
        fp = _cache.weights_fingerprint(encoder) if self.disk else None
        data = _cache.load_basis(fp, size, tag=tag, channels=getattr(encoder, "embed_dim", None)) if fp else None
        if data is not None:
            return data
        images = basis_images(params, size, self.model.device)
        # one image per forward pass: n noise images at full size would otherwise need n times the memory
        raw = torch.cat([self._features(images[i : i + 1]) for i in range(images.shape[0])])
        U, S, mean = sub.positional_svd(l2_normalize(raw, dim=1))
        if fp:
            try:
                _cache.save_basis(fp, size, U, S, mean, tag=tag)
            except OSError as e:  # a cache that cannot be written is no reason to stop the job
                _warn(f"could not write the basis cache ({e}); continuing without it")
        return {"U": U, "S": S, "mean": mean}

    def _features(self, images: Tensor) -> Tensor:
        """(n, 3, S, S) -> (n, C, h, w) raw features, never under autocast (the basis is shared by every
        mode through the disk cache, and bfloat16 rounding would rotate it)."""
        return extract_features(self.model.encoder, images, autocast_dtype=None)

    def black_image_features(self) -> Tensor:
        """Raw features of the normalised black image at the current size: (1, C, h, w), never under autocast."""
        return self._features(black_image(self.model.image_size, device=self.model.device))

    def _weights_version(self) -> tuple[int, ...]:
        """The version counters of every parameter and buffer: any in-place change of the weights through
        the tensors themselves (``load_state_dict``, ``param.copy_``) bumps one. Writes through ``.data``
        bypass the counters; call :meth:`clear_cache` after those."""
        tensors = []
        for getter in ("parameters", "buffers"):
            fn = getattr(self.model.encoder, getter, None)
            if fn is not None:
                tensors.extend(fn())
        return tuple(t._version for t in tensors)

    def effective_components(self, components: int | None = None) -> int:
        """r actually used: ``components`` (default ``svd_components``) clamped to min(C, h*w), warning once
        per (r, size) when an r other than the default had to be reduced (the default, the paper's r for
        ViT-L, means "as many as the model allows" on smaller models)."""
        model = self.model
        r = model.params.svd_components if components is None else Params(svd_components=components).svd_components
        key = (r, model.image_size)
        if key not in self._components:
            h, w = model.grid
            asked = r != Params.svd_components
            self._components[key] = (
                sub.clamp_components(r, model.embed_dim, h * w) if asked else min(r, model.embed_dim, h * w)
            )
        return self._components[key]

    @property
    def basis(self) -> Tensor:
        """U: (C, r) the positional basis in use."""
        return self.svd()["U"][:, : self.effective_components()].contiguous()

    def debias(self, features_norm: Tensor, *, components: int | None = None) -> Tensor:
        """(B, C, h, w) or (C, h, w) normalised features without their part in the first r directions of the
        basis (identity when the model's ``debias`` is off or r = 0); ``components`` overrides
        ``svd_components`` for this call only. The projector I − U Uᵀ is kept per (size, basis images, r)."""
        model = self.model
        r = self.effective_components(components) if model.params.debias else 0
        if not r:
            return features_norm
        U = self.svd()["U"]  # first: it forgets every projector when the weights changed in place
        key = (model.image_size, basis_tag(model.params), r)
        if key not in self._projectors:
            self._projectors[key] = sub.complement_projector(U[:, :r].contiguous())
        P = self._projectors[key]
        out = sub.debias(features_norm.unsqueeze(0) if features_norm.ndim == 3 else features_norm, P)
        return out[0] if features_norm.ndim == 3 else out

    def clear_cache(self) -> int:
        """Forget the bases in memory and delete the on-disk cache; returns the number of files removed."""
        self._forget()
        self.model.shots.invalidate()
        return _cache.clear_cache()

    def _forget(self) -> None:
        """Forget everything held in memory."""
        self._svd.clear()
        self._projectors.clear()
