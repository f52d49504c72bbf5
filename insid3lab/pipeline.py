"""INSID3: in-context segmentation with a frozen DINOv3 encoder, composed from pure stages.

The pipeline holds the state — the encoder, the positional basis, the encoded
references — and composes the stage functions of :mod:`insid3lab.stages`. Like
SAM's predictor, the expensive part is paid once: :meth:`INSID3.set_reference`
encodes a shot immediately and keeps its features, and :meth:`INSID3.segment`
then only encodes the target and decodes.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from . import cache as _cache
from ._warn import warn as _warn
from .preprocess import black_image, preprocess_image, preprocess_mask
from .stages import aggregation as agg
from .stages import clustering as clu
from .stages import correspondence as corr
from .stages import matching as mat
from .stages import prototype as proto
from .stages import subspace as sub
from .stages.features import extract_features, l2_normalize
from .stages.upsampling import upsample_mask
from .trace import Trace

__all__ = ["INSID3", "Encoded", "SegmentManyError"]

#: Target cells per similarity product of the backward matching on the CPU (bounds its
#: memory at 4 * hr*wr * 4096 bytes per shot; one product at S = 1024 with patch 16).
_BACKWARD_CHUNK = 4096


class SegmentManyError(RuntimeError):
    """One target of :meth:`INSID3.segment_many` failed.

    Attributes:
        index: position of the failing target.
        target: the target as given.
        masks: the masks computed before it (nothing is lost).
    """

    def __init__(self, message: str, index: int, target: Any, masks: list):
        super().__init__(message)
        self.index = index
        self.target = target
        self.masks = masks


@dataclass
class Encoded:
    """One encoded image (a reference shot or a target).

    Attributes:
        image: (1, 3, S, S) normalised network input.
        orig_size: (H, W) of the image as given.
        features: (C, h, w) float32 raw features.
        features_norm: (C, h, w) L2-normalised features.
        size: the input side S it was encoded at.
        name: a printable description of where it came from.
        source: the object the user passed (kept to re-encode at another size).
        mask: (S, S) bool reference mask, or None.
        mask_low: (h, w) bool reference mask on the feature grid, or None.
        mask_source: the mask object the user passed.
        mask_value: the label selected from a label map, or None.
    """

    image: Tensor
    orig_size: tuple[int, int]
    features: Tensor
    features_norm: Tensor
    size: int
    name: str
    source: Any = None
    mask: Tensor | None = None
    mask_low: Tensor | None = None
    mask_source: Any = None
    mask_value: int | None = None


def _describe(x: Any) -> str:
    if isinstance(x, (str, os.PathLike)):
        return str(x)
    if isinstance(x, Tensor):
        return f"tensor{tuple(x.shape)}"
    if isinstance(x, np.ndarray):
        return f"array{x.shape}"
    fn = getattr(x, "filename", None)
    if fn:
        return str(fn)
    return type(x).__name__


class INSID3:
    """Training-free in-context segmentation with a frozen DINOv3 encoder.

    Args:
        encoder: a module with Meta's ``get_intermediate_layers(x, n, reshape=True)`` contract and
            ``patch_size`` / ``embed_dim`` attributes: a :class:`~insid3lab.DinoV3Backbone`, a model
            from Meta's DINOv3 code, or any encoder honouring that contract.
        image_size: side S of the square network input; a multiple of the patch size.
        svd_components: r, dimensions of the positional subspace removed (clamped to min(C, h*w)).
        tau: τ in (0, 1]; clusters merge while their average cosine distance is below 1 − τ.
        merge_threshold: in [−1, 1]; clusters whose score exceeds it join the mask.
        clustering: ``"auto"`` (scipy on CPU, the torch path on GPU), ``"sklearn"`` (the authors' call),
            ``"scipy"`` (the same computation without scikit-learn's overheads) or ``"torch"``;
            all give the same partition.
        debias: remove the positional subspace (the method); ``False`` shows what happens without it.
        resize_to_orig_size: return the mask at the target's original size (else at S x S).
        basis_cache: keep positional bases on disk (see :mod:`insid3lab.cache`) so a new process skips
            the extra forward pass and SVD; ``False`` keeps them in memory only.
        autocast_dtype: run the encoder under autocast with this dtype (``torch.bfloat16`` for the fast
            GPU mode) for references and targets; the positional basis and the decode stages always
            run in float32.
        exif_transpose: apply JPEG EXIF orientation to images and masks given as files/PIL images.
        batch_size: targets per backbone pass in :meth:`segment_many` (default 1 on CPU, 8 on GPU).
        progress: show progress bars for many targets.

    Example:
        >>> model = INSID3(load_backbone(src), image_size=1024)
        >>> model.set_reference("ref.jpg", "ref_mask.png")
        >>> mask = model.segment("target.jpg")            # (H, W) bool
        >>> mask, trace = model.segment("target.jpg", return_trace=True)
    """

    def __init__(
        self,
        encoder,
        image_size: int = 1024,
        svd_components: int = 500,
        tau: float = 0.6,
        merge_threshold: float = 0.2,
        *,
        clustering: str = "auto",
        debias: bool = True,
        resize_to_orig_size: bool = True,
        basis_cache: bool = True,
        autocast_dtype: torch.dtype | str | None = None,
        exif_transpose: bool = True,
        batch_size: int | None = None,
        progress: bool = True,
    ):
        for attr in ("get_intermediate_layers", "patch_size", "embed_dim"):
            if not hasattr(encoder, attr):
                raise TypeError(
                    f"encoder has no '{attr}': INSID3 needs an encoder with Meta's get_intermediate_layers(x, n, "
                    "reshape=True) contract and patch_size/embed_dim attributes (e.g. insid3lab.load_backbone(...))"
                )
        self.encoder = encoder
        if hasattr(encoder, "eval"):
            encoder.eval()
        self.patch_size = int(encoder.patch_size if not isinstance(encoder.patch_size, (tuple, list)) else encoder.patch_size[0])
        self.embed_dim = int(encoder.embed_dim)
        self._image_size = self._check_image_size(image_size)
        self._svd_components = self._check_components(svd_components)
        self._tau = self._check_tau(tau)
        self._merge_threshold = self._check_merge(merge_threshold)
        if not callable(clustering) and clustering not in clu.CLUSTERERS:
            raise ValueError(f"clustering={clustering!r}: allowed {', '.join(map(repr, clu.CLUSTERERS))} or a callable")
        self.clustering = clustering
        self._debias = bool(debias)
        self.resize_to_orig_size = bool(resize_to_orig_size)
        self.basis_cache = bool(basis_cache)
        if isinstance(autocast_dtype, str):
            from .backbone.loading import resolve_dtype

            autocast_dtype = resolve_dtype(autocast_dtype)
        if autocast_dtype == torch.float32:
            autocast_dtype = None
        self.autocast_dtype = autocast_dtype
        self.exif_transpose = bool(exif_transpose)
        if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
            raise ValueError(f"batch_size={batch_size!r}: must be a positive integer or None")
        self.batch_size = batch_size
        self.progress = bool(progress)
        self._svd: dict[int, dict[str, Tensor]] = {}
        self._projectors: dict[tuple[int, int], Tensor] = {}
        self._ref_cache: dict[str, Any] = {}
        self._warned: set[tuple[int, int]] = set()
        self.references: list[Encoded] = []
        self._pending_target: Any = None
        self._has_pending_target = False
        self.last_errors: list[tuple[int, str]] = []

    # ------------------------------------------------------------ validation
    def _check_image_size(self, s) -> int:
        if not isinstance(s, (int, np.integer)) or isinstance(s, bool) or s <= 0 or s % self.patch_size:
            raise ValueError(
                f"image_size={s!r}: must be a positive multiple of the patch size {self.patch_size} (e.g. 512, 768, 1024)"
            )
        return int(s)

    @staticmethod
    def _check_components(r) -> int:
        if not isinstance(r, (int, np.integer)) or isinstance(r, bool) or r < 0:
            raise ValueError(f"svd_components={r!r}: must be an integer >= 0 (0 removes nothing)")
        return int(r)

    @staticmethod
    def _check_tau(t) -> float:
        if not isinstance(t, (int, float)) or isinstance(t, bool) or not 0 < float(t) <= 1:
            raise ValueError(f"tau={t!r}: must be in (0, 1]")
        return float(t)

    @staticmethod
    def _check_merge(m) -> float:
        if not isinstance(m, (int, float)) or isinstance(m, bool) or not -1 <= float(m) <= 1:
            raise ValueError(f"merge_threshold={m!r}: must be in [-1, 1]")
        return float(m)

    @property
    def image_size(self) -> int:
        """Side S of the network input. Changing it re-encodes the references on next use."""
        return self._image_size

    @image_size.setter
    def image_size(self, s: int) -> None:
        self._image_size = self._check_image_size(s)
        self._ref_cache.clear()

    @property
    def svd_components(self) -> int:
        return self._svd_components

    @svd_components.setter
    def svd_components(self, r: int) -> None:
        self._svd_components = self._check_components(r)
        self._ref_cache.clear()

    @property
    def debias(self) -> bool:
        """Remove the positional subspace before matching (switching it re-derives the reference prototype)."""
        return self._debias

    @debias.setter
    def debias(self, on: bool) -> None:
        self._debias = bool(on)
        self._ref_cache.clear()

    @property
    def tau(self) -> float:
        return self._tau

    @tau.setter
    def tau(self, t: float) -> None:
        self._tau = self._check_tau(t)

    @property
    def merge_threshold(self) -> float:
        return self._merge_threshold

    @merge_threshold.setter
    def merge_threshold(self, m: float) -> None:
        self._merge_threshold = self._check_merge(m)

    @property
    def device(self) -> torch.device:
        dev = getattr(self.encoder, "device", None)
        if isinstance(dev, torch.device):
            return dev
        try:
            return next(self.encoder.parameters()).device
        except (AttributeError, StopIteration):
            return torch.device("cpu")

    @property
    def grid(self) -> tuple[int, int]:
        """(h, w) feature grid at the current image size."""
        return self._image_size // self.patch_size, self._image_size // self.patch_size

    def settings(self) -> dict[str, Any]:
        """The hyper-parameters in force, as a dictionary."""
        return {
            "image_size": self._image_size, "svd_components": self._svd_components, "tau": self._tau,
            "merge_threshold": self._merge_threshold, "debias": self.debias, "clustering": self.clustering,
            "autocast_dtype": None if self.autocast_dtype is None else str(self.autocast_dtype).replace("torch.", ""),
        }

    # --------------------------------------------------------------- encoding
    def _encode_batch(self, images: Tensor) -> Tensor:
        """(B, 3, S, S) -> (B, C, h, w) float32 raw features."""
        return extract_features(self.encoder, images.to(self.device), autocast_dtype=self.autocast_dtype)

    def encode(self, image, *, what: str = "image") -> Encoded:
        """Preprocess and encode one image at the current size (no state is changed).

        Returns:
            An :class:`Encoded` with (C, h, w) raw and normalised features.
        """
        x, orig = preprocess_image(image, self._image_size, device=self.device, exif_transpose=self.exif_transpose, what=what)
        feats = self._encode_batch(x)[0]
        return Encoded(x, orig, feats, l2_normalize(feats, dim=0), self._image_size, _describe(image), source=image)

    # ------------------------------------------------------ positional basis
    def positional_svd(self) -> dict[str, Tensor]:
        """SVD of the black-image features at the current size: ``U`` (C, m), ``S`` (m,), ``mean`` (C,).

        Computed once per (weights, image size): kept in memory, and on disk unless
        ``basis_cache=False``.
        """
        s = self._image_size
        if s in self._svd:
            return self._svd[s]
        fp = _cache.weights_fingerprint(self.encoder) if self.basis_cache else None
        data = _cache.load_basis(fp, s) if fp else None
        if data is None:
            feats = self.black_image_features()
            U, S, mean = sub.positional_svd(l2_normalize(feats, dim=1))
            data = {"U": U, "S": S, "mean": mean}
            if fp:
                try:
                    _cache.save_basis(fp, s, U, S, mean)
                except OSError as e:
                    _warn(f"could not write the basis cache ({e}); continuing without it")
        data = {k: v.to(self.device) for k, v in data.items()}
        self._svd[s] = data
        return data

    def black_image_features(self) -> Tensor:
        """Raw features of the normalised black image: (1, C, h, w), never under autocast.

        The positional basis is computed once per weights and size and shared through the
        disk cache by every mode, so it is always computed at the encoder's own precision.
        Its accuracy also matters more than that of the images' features: debiasing keeps
        only what lies outside the subspace, so a basis rotated by bfloat16 rounding moves
        the forward and backward matches far more than the same rounding of a target does.
        """
        black = black_image(self._image_size, device=self.device)
        return extract_features(self.encoder, black, autocast_dtype=None)

    def effective_components(self) -> int:
        """r actually used: ``svd_components`` clamped to min(C, h*w) (a warning once when clamped)."""
        h, w = self.grid
        limit = min(self.embed_dim, h * w)
        r = self._svd_components
        if r > limit:
            key = (r, self._image_size)
            if key not in self._warned:
                self._warned.add(key)
                _warn(f"svd_components={r} exceeds min(C, h*w) = min({self.embed_dim}, {h * w}) = {limit}; using {limit}")
            return limit
        return r

    @property
    def basis(self) -> Tensor:
        """U: (C, r) the positional basis in use."""
        r = self.effective_components()
        return self.positional_svd()["U"][:, :r].contiguous()

    def _projector(self) -> Tensor | None:
        if not self.debias:
            return None
        r = self.effective_components()
        if r == 0:
            return None
        key = (self._image_size, r)
        if key not in self._projectors:
            self._projectors[key] = sub.complement_projector(self.basis)
        return self._projectors[key]

    def debias_features(self, features_norm: Tensor) -> Tensor:
        """Debias (B, C, h, w) or (C, h, w) normalised features with the current basis (identity when off)."""
        squeeze = features_norm.ndim == 3
        x = features_norm.unsqueeze(0) if squeeze else features_norm
        P = self._projector()
        out = x if P is None else sub.debias(x, P)
        return out[0] if squeeze else out

    def clear_basis_cache(self) -> int:
        """Forget bases in memory and delete the on-disk cache; returns the number of files removed."""
        self._svd.clear()
        self._projectors.clear()
        self._ref_cache.clear()
        return _cache.clear_cache()

    # -------------------------------------------------------------- references
    def set_reference(self, image, mask=None, *, mask_value: int | None = None) -> None:
        """Add a reference shot: encode it now and keep its features.

        Call again to add shots (k-shot). ``mask`` may be None for keypoint matching only.

        Args:
            image: path, PIL image, numpy array or normalised tensor.
            mask: path, PIL image, numpy array or tensor; foreground is ``> 0``.
            mask_value: select the pixels equal to this label of a label map instead.

        Raises:
            ValueError: the mask has no foreground pixel (the message names the shot).
        """
        shot = len(self.references)
        enc = self.encode(image, what=f"reference image {shot}")
        if mask is not None:
            self._attach_mask(enc, mask, mask_value, shot)
        self.references.append(enc)
        self._ref_cache.clear()

    def _attach_mask(self, enc: Encoded, mask, mask_value, shot: int) -> None:
        what = f"reference mask {shot} ({_describe(mask)})"
        m = preprocess_mask(mask, self._image_size, mask_value=mask_value, device=self.device,
                            exif_transpose=self.exif_transpose, image_size_hw=enc.orig_size, what=what)[0]
        if not bool(m.any()):
            sel = f"== {mask_value}" if mask_value is not None else "> 0"
            raise ValueError(f"{what} is empty: no pixel is foreground ({sel}); every shot needs a non-empty mask")
        h, w = enc.features.shape[-2:]
        enc.mask = m
        enc.mask_low = proto.downsample_mask(m, h, w)
        enc.mask_source = mask
        enc.mask_value = mask_value

    def clear_reference(self) -> None:
        """Forget all reference shots (and a pending target)."""
        self.references = []
        self._ref_cache.clear()
        self._pending_target = None
        self._has_pending_target = False

    def reset_state(self) -> None:
        """Same as :meth:`clear_reference` (the name the authors' code uses)."""
        self.clear_reference()

    def set_target(self, image) -> None:
        """Remember a target for :meth:`segment` / :meth:`match` called without one (the authors' sequence)."""
        self._pending_target = image
        self._has_pending_target = True

    def _current_references(self) -> list[Encoded]:
        """References encoded at the current image size (re-encoded from their inputs if it changed)."""
        for i, ref in enumerate(self.references):
            if ref.size != self._image_size:
                enc = self.encode(ref.source, what=f"reference image {i}")
                if ref.mask_source is not None:
                    self._attach_mask(enc, ref.mask_source, ref.mask_value, i)
                self.references[i] = enc
        return self.references

    def _reference_state(self) -> dict[str, Any]:
        """Stacked reference tensors and the prototype for the current settings (cached)."""
        if self._ref_cache:
            return self._ref_cache
        refs = self._current_references()
        if not refs:
            raise RuntimeError("no reference yet: call set_reference(image, mask) before segment()")
        missing = [i for i, r in enumerate(refs) if r.mask is None]
        if missing:
            raise RuntimeError(f"reference shot(s) {missing} have no mask: pass a mask to set_reference() to segment")
        feats = torch.stack([r.features for r in refs])
        norm = torch.stack([r.features_norm for r in refs])
        deb = self.debias_features(norm)
        masks_low = torch.stack([r.mask_low for r in refs])
        self._ref_cache.update(
            features=feats, features_norm=norm, features_deb=deb, masks_low=masks_low,
            masks=torch.stack([r.mask for r in refs]),
            shot_prototypes=proto.shot_prototypes(deb, masks_low),
            prototype=proto.reference_prototype(deb, masks_low),
        )
        return self._ref_cache

    # ------------------------------------------------------------ segmentation
    def segment(self, target=None, *, return_trace: bool = False, timings: dict[str, float] | None = None):
        """Segment the reference concept in ``target``.

        Args:
            target: path, PIL image, numpy array or normalised tensor. When omitted, the image given
                to :meth:`set_target` is used and, as in the authors' implementation, the references
                are cleared afterwards (so ``set_reference``/``set_target``/``segment`` per episode works).
            return_trace: also return a :class:`~insid3lab.Trace` of every intermediate.
            timings: a dict to fill with wall-clock seconds per stage (``preprocess``, ``features``,
                then those of :meth:`decode`), CUDA synchronised around each stage; the trace's
                ``timings`` hold the same.

        Returns:
            (H, W) bool mask on the encoder's device at the target's original size
            (S x S with ``resize_to_orig_size=False``); with ``return_trace``, ``(mask, trace)``.
        """
        consume = target is None
        if consume:
            if not self._has_pending_target:
                raise RuntimeError("segment() needs a target: pass it (segment(image)) or call set_target(image) first")
            target = self._pending_target
        if not self.references:
            raise RuntimeError("no reference yet: call set_reference(image, mask) before segment()")
        try:
            if not return_trace and timings is None:
                return self.decode(self.encode(target, what="target image"))
            timer = _Timer(self.device, enabled=True)
            with timer("preprocess"):
                x, orig = preprocess_image(target, self._image_size, device=self.device,
                                           exif_transpose=self.exif_transpose, what="target image")
            with timer("features"):
                feats = self._encode_batch(x)[0]
                enc = Encoded(x, orig, feats, l2_normalize(feats, dim=0), self._image_size, _describe(target), source=target)
            stage_times: dict[str, float] = {}
            result = self.decode(enc, return_trace=return_trace, timings=stage_times)
            times = {**timer.times, **stage_times}
            if timings is not None:
                timings.update(times)
            if not return_trace:
                return result
            mask, trace = result
            trace.timings = times
            return mask, trace
        finally:
            if consume:
                self.clear_reference()

    def decode(
        self,
        target: Encoded,
        *,
        return_trace: bool = False,
        labels: Tensor | None = None,
        timings: dict[str, float] | None = None,
    ):
        """Run every stage after the backbone for an encoded target.

        Args:
            target: from :meth:`encode`.
            return_trace: also return the :class:`~insid3lab.Trace`.
            labels: optional precomputed (h, w) cluster labels for this target and τ
                (lets an explorer skip re-clustering when only later knobs change).
            timings: a dict to fill with wall-clock seconds per stage (CUDA synchronised).

        Returns:
            The mask, or ``(mask, trace)``.

        Without a trace, the backward votes on the CPU are counted only at the forward cells
        (the only cells that can become candidates); the trace holds the votes of every cell.
        The mask is the same either way.
        """
        trace = Trace(settings=self.settings()) if return_trace else None
        timer = _Timer(self.device, enabled=return_trace or timings is not None)
        if target.size != self._image_size:
            target = self.encode(target.source, what="target image")
        with timer("references"):
            ref = self._reference_state()
        k = ref["features_deb"].shape[0]
        C, h, w = target.features_norm.shape
        with timer("debias"):
            tgt_deb = self.debias_features(target.features_norm)
        with timer("forward"):
            p = ref["prototype"]
            sim = mat.forward_similarity(tgt_deb, p)
            fwd = mat.forward_mask(sim)
        with timer("backward"):
            if trace is None and tgt_deb.device.type == "cpu":
                cells = fwd.reshape(-1).nonzero()[:, 0]
                votes = mat.backward_votes(ref["features_deb"], tgt_deb, ref["masks_low"],
                                           cells=cells, chunk_size=_BACKWARD_CHUNK)
            else:
                votes = mat.backward_votes(ref["features_deb"], tgt_deb, ref["masks_low"])
            bwd = mat.backward_mask(votes, k)
            cand = mat.candidates(fwd, bwd)
        if trace is not None:
            svd = self.positional_svd() if (self.debias and self.effective_components() > 0) else None
            trace.grid = (h, w)
            trace.reference_images = torch.cat([r.image for r in self.references])
            trace.reference_masks = ref["masks"]
            trace.reference_masks_low = ref["masks_low"]
            trace.reference_sizes = [r.orig_size for r in self.references]
            trace.target_image = target.image[0]
            trace.target_size = target.orig_size
            trace.reference_features = ref["features"]
            trace.reference_features_norm = ref["features_norm"]
            trace.reference_features_deb = ref["features_deb"]
            trace.target_features = target.features
            trace.target_features_norm = target.features_norm
            trace.target_features_deb = tgt_deb
            if svd is not None:
                trace.basis = self.basis
                trace.singular_values = svd["S"]
            trace.prototype = p
            trace.shot_prototypes = ref["shot_prototypes"]
            trace.forward_similarity = sim
            trace.forward_mask = fwd
            trace.votes = votes
            trace.backward_mask = bwd
            trace.candidates = cand
        if not bool(cand.any()):
            low = torch.zeros(h, w, dtype=torch.bool, device=cand.device)
        else:
            with timer("clustering"):
                flat = target.features_norm.reshape(C, -1).T
                if labels is None:
                    labels = clu.agglomerative_clustering(flat, self._tau, method=self.clustering)
                labels = labels.reshape(h, w).to(cand.device)
                K = int(labels.max()) + 1
            with timer("aggregation"):
                P_deb = agg.cluster_prototypes(tgt_deb.reshape(C, -1).T, labels, K)
                P_orig = agg.cluster_prototypes(flat, labels, K)
                sc = agg.seed_and_scores(cand, labels, K, P_deb, P_orig, p, sim)
                low = agg.aggregate(labels, sc["score"], self._merge_threshold)
            if trace is not None:
                trace.cluster_labels = labels
                trace.num_clusters = K
                trace.cluster_prototypes_deb = P_deb
                trace.cluster_prototypes_orig = P_orig
                trace.cluster_overlap = sc["overlap"]
                trace.cluster_seed_similarity = sc["seed_similarity"]
                trace.cluster_cross = sc["cross"]
                trace.cluster_intra = sc["intra"]
                trace.cluster_area = sc["area"]
                trace.cluster_score = sc["score"]
                trace.seed = int(sc["seed"])
        with timer("upsampling"):
            S = self._image_size
            up = upsample_mask(low, S, S)
            out = upsample_mask(up, *target.orig_size) if self.resize_to_orig_size else up
        if timings is not None:
            timings.update(timer.times)
        if trace is None:
            return out
        trace.mask_low = low
        trace.mask_upsampled = up
        trace.mask = out
        trace.timings = timer.times
        return out, trace

    def segment_many(
        self,
        targets: Iterable,
        *,
        batch_size: int | None = None,
        return_traces: bool = False,
        on_error: str = "raise",
        progress: bool | None = None,
    ) -> list:
        """Segment many targets against the cached reference, with batched backbone passes.

        Args:
            targets: paths, PIL images, arrays or tensors.
            batch_size: targets per backbone pass (default: ``self.batch_size``, else 1 on CPU, 8 on GPU).
            return_traces: return ``(mask, trace)`` pairs.
            on_error: ``"raise"``: stop with :class:`SegmentManyError` naming the target and carrying
                the masks computed so far; ``"skip"``: put None for that target, record the error in
                ``self.last_errors`` and go on.
            progress: show a progress bar (default: ``self.progress``).

        Returns:
            One mask (or (mask, trace), or None when skipped) per target, in order.
        """
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error={on_error!r}: allowed 'raise', 'skip'")
        targets = list(targets)
        self._reference_state()  # fail early without a reference
        bs = batch_size or self.batch_size or (8 if self.device.type == "cuda" else 1)
        show = self.progress if progress is None else progress
        from tqdm.auto import tqdm

        results: list = []
        self.last_errors = []
        bar = tqdm(total=len(targets), desc="segment", unit="img", disable=not show)
        try:
            for start in range(0, len(targets), bs):
                chunk = targets[start : start + bs]
                prepared: list[tuple[int, Tensor, tuple[int, int]] | None] = []
                for j, t in enumerate(chunk):
                    i = start + j
                    try:
                        x, orig = preprocess_image(t, self._image_size, device=self.device,
                                                   exif_transpose=self.exif_transpose, what=f"target {i}")
                        prepared.append((i, x, orig))
                    except Exception as e:  # noqa: BLE001 - reported with the target's name
                        prepared.append(None)
                        self._fail(i, t, e, results, on_error)
                ok = [p for p in prepared if p is not None]
                feats = self._encode_batch(torch.cat([p[1] for p in ok])) if ok else None
                fi = 0
                for j, item in enumerate(prepared):
                    if item is None:
                        results.append(None)
                        bar.update(1)
                        continue
                    i, x, orig = item
                    f = feats[fi]
                    fi += 1
                    enc = Encoded(x, orig, f, l2_normalize(f, dim=0), self._image_size, _describe(chunk[j]), source=chunk[j])
                    try:
                        results.append(self.decode(enc, return_trace=return_traces))
                    except Exception as e:  # noqa: BLE001
                        self._fail(i, chunk[j], e, results, on_error)
                        results.append(None)
                    bar.update(1)
        finally:
            bar.close()
        return results

    def _fail(self, i: int, target, err: Exception, results: list, on_error: str) -> None:
        msg = f"target {i} ({_describe(target)}) failed: {type(err).__name__}: {err}"
        if on_error == "raise":
            raise SegmentManyError(msg + f" ({len(results)} mask(s) computed before it are in .masks)", i, target, list(results)) from err
        self.last_errors.append((i, msg))

    # ---------------------------------------------------------- correspondence
    def match(
        self,
        ref_points,
        target=None,
        reference_image=None,
        debiased: bool = True,
        *,
        svd_components: int | None = None,
        return_maps: bool = False,
    ):
        """Keypoint correspondence: where do the reference keypoints land in the target?

        Args:
            ref_points: (N, 2) (x, y) keypoints in original reference pixels (tensor, array or list).
            target: the target image; when omitted, the one from :meth:`set_target` (the authors'
                sequence; references are cleared afterwards).
            reference_image: the reference; default the first shot given to :meth:`set_reference`.
            debiased: match with debiased features (the paper's choice) or the original ones.
            svd_components: r for this call (the paper uses 20 for correspondence with ViT-B);
                default the pipeline's setting.
            return_maps: also return the (N, h, w) similarity maps.

        Returns:
            (N, 2) float tensor of (x, y) in original target pixels (and the maps).
        """
        consume = target is None
        if consume:
            if not self._has_pending_target:
                raise RuntimeError("match() needs a target: pass it or call set_target(image) first")
            target = self._pending_target
        try:
            if reference_image is not None:
                ref = self.encode(reference_image, what="reference image")
            else:
                refs = self._current_references()
                if not refs:
                    raise RuntimeError("match() needs a reference: pass reference_image= or call set_reference(image) first")
                ref = refs[0]
            tgt = self.encode(target, what="target image")
            pts = torch.as_tensor(np.asarray(ref_points, dtype=np.float32) if not isinstance(ref_points, Tensor) else ref_points)
            pts = pts.to(self.device).float().reshape(-1, 2)
            fr, ft = ref.features_norm, tgt.features_norm
            if debiased:
                old = self._svd_components
                if svd_components is not None:
                    self._svd_components = self._check_components(svd_components)
                try:
                    fr, ft = self.debias_features(fr), self.debias_features(ft)
                finally:
                    self._svd_components = old
            matches, maps = corr.match_keypoints(fr, ft, pts, ref.orig_size, tgt.orig_size)
        finally:
            if consume:
                self.clear_reference()
        return (matches, maps) if return_maps else matches

    def __repr__(self) -> str:
        s = ", ".join(f"{k}={v}" for k, v in self.settings().items())
        return f"INSID3({s}, shots={len(self.references)}, device={self.device})"


class _Timer:
    """Per-stage wall-clock times; synchronises CUDA around each stage only when enabled."""

    def __init__(self, device: torch.device, enabled: bool):
        self.device = device
        self.enabled = enabled
        self.times: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str):
        if not self.enabled:
            yield
            return
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        t0 = time.perf_counter()
        yield
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.times[name] = self.times.get(name, 0.0) + time.perf_counter() - t0
