"""INSID3: a thin stateful façade over :func:`insid3lab.method.decode`.

The pipeline holds the state — the encoder, the positional basis, the encoded reference
shots, the hyper-parameters (a :class:`~insid3lab.params.Params`) — and the method itself
is :func:`insid3lab.method.decode`. Like SAM's predictor, the expensive part is paid once:
:meth:`INSID3.set_reference` encodes a shot immediately and keeps its features, and
:meth:`INSID3.segment` then only encodes the target and decodes.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor

from . import cache as _cache
from . import concepts as _concepts
from . import method
from .basis import PositionalBases
from .encoding import Encoded, SegmentManyError, describe
from .keypoints import match_points
from .params import Params
from .preprocess import black_image, denormalize, preprocess_image
from .references import ReferenceShots, record_inputs
from .stages import subspace as sub
from .stages.features import check_encoder, extract_features, l2_normalize
from .trace import Recorder, Trace
from .tracking import MEMORY, MIN_CONFIDENCE

__all__ = ["INSID3", "Encoded", "Params", "SegmentManyError"]


def _param(name: str, doc: str) -> property:
    """An attribute that reads ``self.params.<name>`` and, when set, replaces ``params`` (validated)."""

    def get(self):
        return getattr(self.params, name)

    def set_(self, value) -> None:
        self.params = self.params.replace(**{name: value})

    return property(get, set_, doc=doc)


class INSID3:
    """Training-free in-context segmentation with a frozen DINOv3 encoder.

    Args:
        encoder: an :class:`~insid3lab.stages.features.Encoder` (Meta's ``get_intermediate_layers``
            contract): a :class:`~insid3lab.DinoV3Backbone`, a model from Meta's DINOv3 code, ...
        image_size, svd_components, tau, merge_threshold, clustering, debias, refine: see
            :class:`~insid3lab.params.Params`; omitted ones come from ``params`` (else the defaults).
        params: a :class:`~insid3lab.params.Params` to start from.
        resize_to_orig_size: return the mask at the target's original size (else at S x S).
        basis_cache: keep positional bases on disk (see :mod:`insid3lab.cache`) so a new process skips
            the extra forward pass and SVD; ``False`` keeps them in memory only.
        autocast_dtype: run the encoder under autocast with this dtype (``torch.bfloat16`` for the fast
            GPU mode) for references and targets; the positional basis and the decode always run in float32.
        exif_transpose: apply JPEG EXIF orientation to images and masks given as files/PIL images.
        batch_size: targets per backbone pass in :meth:`segment_many` (default 1 on CPU, 8 on GPU).
        progress: show progress bars for many targets.

    The hyper-parameters are also attributes (``model.tau = 0.5``): setting one validates it and
    replaces ``model.params``. Nothing is recomputed eagerly; the reference state is keyed on the
    settings it depends on.

    Example:
        >>> model = INSID3.from_pretrained(src, image_size=1024)
        >>> model.set_reference("ref.jpg", "ref_mask.png")
        >>> mask = model.segment("target.jpg")            # (H, W) bool
        >>> mask, trace = model.segment("target.jpg", return_trace=True)

    Several concepts (see :mod:`insid3lab.concepts`): name each shot's concept with ``label=``,
    or pass a label map with ``labels={1: "cat", 2: "dog"}``; then :meth:`segment_labels` gives a
    label map and :meth:`segment_instances` separate objects, from one target encoding and one
    clustering.
    """

    image_size = _param("image_size", "Side S of the network input (a multiple of the patch size).")
    svd_components = _param("svd_components", "r, dimensions of the positional subspace removed.")
    tau = _param("tau", "τ: clusters merge while their average cosine distance is below 1 − τ.")
    merge_threshold = _param("merge_threshold", "Clusters whose score exceeds it join the mask.")
    debias = _param("debias", "Remove the positional subspace before matching.")
    clustering = _param("clustering", "The clusterer: a registered name, 'auto', or a callable.")
    refine = _param("refine", "The refiner after upsampling: a registered name or a callable.")

    def __init__(
        self,
        encoder,
        image_size: int | None = None,
        svd_components: int | None = None,
        tau: float | None = None,
        merge_threshold: float | None = None,
        *,
        clustering=None,
        debias: bool | None = None,
        refine=None,
        params: Params | None = None,
        resize_to_orig_size: bool = True,
        basis_cache: bool = True,
        autocast_dtype: torch.dtype | str | None = None,
        exif_transpose: bool = True,
        batch_size: int | None = None,
        progress: bool = True,
    ):
        self.encoder = check_encoder(encoder)
        if hasattr(encoder, "eval"):
            encoder.eval()
        ps = encoder.patch_size
        self.patch_size = int(ps[0] if isinstance(ps, (tuple, list)) else ps)
        self.embed_dim = int(encoder.embed_dim)
        given = {
            "image_size": image_size,
            "svd_components": svd_components,
            "tau": tau,
            "merge_threshold": merge_threshold,
            "clustering": clustering,
            "debias": debias,
            "refine": refine,
        }
        self.params = (params or Params()).replace(**{k: v for k, v in given.items() if v is not None})
        self.resize_to_orig_size = bool(resize_to_orig_size)
        if isinstance(autocast_dtype, str):
            from .backbone.loading import resolve_dtype

            autocast_dtype = resolve_dtype(autocast_dtype)
        self.autocast_dtype = None if autocast_dtype == torch.float32 else autocast_dtype
        self.exif_transpose = bool(exif_transpose)
        if batch_size is not None and (
            isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1
        ):
            raise ValueError(f"batch_size={batch_size!r}: must be a positive integer or None")
        self.batch_size = batch_size
        self.progress = bool(progress)
        self._bases = PositionalBases(encoder, disk=basis_cache)
        self._shots = ReferenceShots(self)
        self._pending_target: Any = None
        self._has_pending_target = False
        self.last_errors: list[tuple[int, str]] = []

    @classmethod
    def from_pretrained(cls, source, *, device="auto", dtype=None, arch=None, rope_periods="auto", **kwargs) -> INSID3:
        """An INSID3 on the backbone from ``source`` (anything :func:`~insid3lab.load_backbone` reads:
        a hub id, a transformers folder, a Meta ``.pth``/``.safetensors`` file, ``random:ARCH``).

        ``kwargs`` go to the constructor (``image_size=768``, ``tau=0.5``, ``params=...``, ...).
        """
        from .backbone import load_backbone

        return cls(load_backbone(source, device=device, dtype=dtype, arch=arch, rope_periods=rope_periods), **kwargs)

    # ------------------------------------------------------------ settings
    @property
    def params(self) -> Params:
        """The hyper-parameters in force (frozen; assign a new one, or set an attribute such as ``tau``)."""
        return self._params

    @params.setter
    def params(self, params: Params) -> None:
        if not isinstance(params, Params):
            raise TypeError(f"params must be an insid3lab.params.Params, got {type(params).__name__}")
        if params.image_size % self.patch_size:
            raise ValueError(
                f"image_size={params.image_size!r}: must be a positive multiple of the patch size "
                f"{self.patch_size} (e.g. 512, 768, 1024)"
            )
        self._params = params

    @property
    def basis_cache(self) -> bool:
        """Keep positional bases on disk too."""
        return self._bases.disk

    @basis_cache.setter
    def basis_cache(self, on: bool) -> None:
        self._bases.disk = bool(on)

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
        return self.image_size // self.patch_size, self.image_size // self.patch_size

    def settings(self) -> dict[str, Any]:
        """The hyper-parameters in force and the compute dtype, as a dictionary."""
        dtype = None if self.autocast_dtype is None else str(self.autocast_dtype).replace("torch.", "")
        return {**self.params.as_dict(), "autocast_dtype": dtype}

    # --------------------------------------------------------------- encoding
    def _encode_batch(self, images: Tensor) -> Tensor:
        """(B, 3, S, S) -> (B, C, h, w) float32 raw features."""
        return extract_features(self.encoder, images.to(self.device), autocast_dtype=self.autocast_dtype)

    def _encoded(self, x: Tensor, orig: tuple[int, int], feats: Tensor, source) -> Encoded:
        return Encoded(x, orig, feats, l2_normalize(feats, dim=0), self.image_size, describe(source), source=source)

    def encode(self, image, *, what: str = "image") -> Encoded:
        """Preprocess and encode one image at the current size (no state is changed): an :class:`Encoded`."""
        x, orig = preprocess_image(
            image, self.image_size, device=self.device, exif_transpose=self.exif_transpose, what=what
        )
        return self._encoded(x, orig, self._encode_batch(x)[0], image)

    # ------------------------------------------------------ positional basis
    def positional_svd(self) -> dict[str, Tensor]:
        """SVD of the black-image features at the current size: ``U`` (C, m), ``S`` (m,), ``mean`` (C,).

        Computed once per (weights, image size): kept in memory, and on disk unless ``basis_cache=False``.
        """
        return self._bases.svd(self.image_size, self.black_image_features, self.device)

    def black_image_features(self) -> Tensor:
        """Raw features of the normalised black image: (1, C, h, w), never under autocast.

        The basis is shared through the disk cache by every mode, so it is computed at the
        encoder's own precision; debiasing keeps only what lies outside the subspace, so a basis
        rotated by bfloat16 rounding would move the matches far more than rounding a target does.
        """
        return extract_features(self.encoder, black_image(self.image_size, device=self.device), autocast_dtype=None)

    def effective_components(self, components: int | None = None) -> int:
        """r actually used: ``components`` (default ``svd_components``) clamped to min(C, h*w), warning once."""
        r = self.svd_components if components is None else Params(svd_components=components).svd_components
        h, w = self.grid
        return self._bases.components(r, self.embed_dim, h * w, self.image_size)

    @property
    def basis(self) -> Tensor:
        """U: (C, r) the positional basis in use."""
        return self.positional_svd()["U"][:, : self.effective_components()].contiguous()

    def debias_features(self, features_norm: Tensor, *, components: int | None = None) -> Tensor:
        """Debias (B, C, h, w) or (C, h, w) normalised features (identity when ``debias`` is off or r = 0).

        ``components`` overrides ``svd_components`` for this call only.
        """
        r = self.effective_components(components) if self.debias else 0
        if r == 0:
            return features_norm
        P = self._bases.projector(self.image_size, r, self.positional_svd()["U"])
        out = sub.debias(features_norm.unsqueeze(0) if features_norm.ndim == 3 else features_norm, P)
        return out[0] if features_norm.ndim == 3 else out

    def clear_basis_cache(self) -> int:
        """Forget bases in memory and delete the on-disk cache; returns the number of files removed."""
        self._bases.clear()
        self._shots.invalidate()
        return _cache.clear_cache()

    # -------------------------------------------------------------- references
    @property
    def references(self) -> list[Encoded]:
        """The reference shots (:class:`~insid3lab.encoding.Encoded`), in the order given."""
        return self._shots.shots

    @references.setter
    def references(self, shots: list[Encoded]) -> None:
        self._shots.shots = shots
        self._shots.invalidate()

    def set_reference(self, image, mask=None, *, mask_value: int | None = None, label: str | None = None,
                      labels=None) -> None:
        """Add a reference shot (call again for k shots): encode it now and keep its features.

        ``image``: path, PIL image, numpy array or normalised tensor; ``mask``: path, PIL image, array or
        tensor, foreground ``> 0`` (or ``== mask_value`` in a label map); None for keypoint matching only.
        ``label``: the name of the shot's concept; shots with the same label pool as k-shot for it,
        whichever call they came from (shots without one form the concept ``"object"``).
        ``labels``: ``mask`` is a label map and each ``{value: name}`` adds one shot of concept ``name``
        from a single encoding of the image (``"all"`` or ``True``: every non-zero value, named by it).
        Raises :class:`~insid3lab.stages.EmptyMaskError` (a ValueError naming the shot) for an empty mask.
        """
        self._shots.add(image, mask, mask_value=mask_value, label=label, labels=labels)

    @property
    def labels(self) -> list[str]:
        """The concepts' names in label order (label i of :meth:`segment_labels` is ``labels[i - 1]``)."""
        return self._shots.labels

    def clear_reference(self) -> None:
        """Forget all reference shots (and a pending target)."""
        self._shots.clear()
        self._pending_target = None
        self._has_pending_target = False

    def reset_state(self) -> None:
        """Same as :meth:`clear_reference` (the name the authors' code uses)."""
        self.clear_reference()

    def set_target(self, image) -> None:
        """Remember a target for :meth:`segment` / :meth:`match` called without one (the authors' sequence)."""
        self._pending_target = image
        self._has_pending_target = True

    def references_at_current_size(self) -> list[Encoded]:
        """The shots, encoded at the current image size: the one place where a changed ``image_size``
        re-encodes (see :meth:`~insid3lab.references.ReferenceShots.at_current_size`)."""
        return self._shots.at_current_size()

    def reference_state(self) -> dict[str, Tensor]:
        """The stacked reference tensors and prototype for the current settings (computed once per settings).

        Returns:
            ``images`` (k, 3, S, S), ``masks`` (k, S, S), ``masks_low`` (k, h, w), ``features``,
            ``features_norm``, ``features_deb`` (k, C, h, w), ``shot_prototypes`` (k, C), ``prototype`` (C,).
        """
        return self._shots.state()

    def concept_states(self) -> list[dict[str, Tensor]]:
        """Per concept (in :attr:`labels` order), :meth:`reference_state`'s tensors over its shots, plus
        ``shots`` (their indices). Computed once per settings; one concept gives ``[reference_state()]``'s values.
        """
        return self._shots.concept_states()

    # ------------------------------------------------------------ segmentation
    def segment(self, target=None, *, return_trace: bool = False, timings: dict[str, float] | None = None):
        """Segment the reference concept in ``target``.

        Args:
            target: path, PIL image, numpy array or normalised tensor. When omitted, the image given
                to :meth:`set_target` is used and, as in the authors' implementation, the references
                are cleared afterwards (so ``set_reference``/``set_target``/``segment`` per episode works).
            return_trace: also return a :class:`~insid3lab.Trace` of every intermediate.
            timings: a dict to fill with wall-clock seconds per stage (``preprocess``, ``features``,
                then those of the decode), CUDA synchronised around each; the trace's ``timings`` hold the same.

        Returns:
            (H, W) bool mask on the encoder's device at the target's original size
            (S x S with ``resize_to_orig_size=False``); with ``return_trace``, ``(mask, trace)``.

        Raises:
            RuntimeError: when several concepts are set (``labels``): use :meth:`segment_labels`.
        """
        with self._target_of("segment", target) as image:
            if not self.references:
                raise RuntimeError("no reference yet: call set_reference(image, mask) before segment()")
            rec = self._recorder(return_trace, timings is not None or return_trace)
            return self._run(self._encode_target(image, rec), rec, timings=timings)

    def _encode_target(self, image, rec: Recorder) -> Encoded:
        """:meth:`encode` of a target, timed as the stages ``preprocess`` and ``features``."""
        with rec.stage("preprocess"):
            x, orig = preprocess_image(
                image, self.image_size, device=self.device, exif_transpose=self.exif_transpose, what="target image"
            )
        with rec.stage("features"):
            return self._encoded(x, orig, self._encode_batch(x)[0], image)

    @contextmanager
    def _target_of(self, caller: str, target):
        """The target given, else the one from :meth:`set_target`, after which the state is reset (the authors' sequence)."""
        if target is not None:
            yield target
            return
        if not self._has_pending_target:
            raise RuntimeError(f"{caller}() needs a target: pass it ({caller}(image)) or call set_target(image) first")
        try:
            yield self._pending_target
        finally:
            self.clear_reference()

    def decode(
        self,
        target: Encoded,
        *,
        return_trace: bool = False,
        labels: Tensor | None = None,
        timings: dict[str, float] | None = None,
    ):
        """Every step after the backbone, for a target from :meth:`encode` at the current image size.

        ``labels``: the target's (h, w) cluster labels for the current τ when already known
        (``trace.cluster_labels``; the clustering depends on neither r nor the merge threshold).
        ``return_trace`` and ``timings`` as in :meth:`segment`. Returns the mask, or ``(mask, trace)``.
        """
        return self._run(
            target, self._recorder(return_trace, timings is not None or return_trace), timings=timings, labels=labels
        )

    def _recorder(self, trace: bool, timed: bool) -> Recorder:
        return Recorder(
            Trace(settings=self.settings()) if trace else None, timings={} if timed else None, device=self.device
        )

    def _run(self, enc: Encoded, rec: Recorder, *, timings: dict | None = None, labels: Tensor | None = None):
        """The decode of one encoded target: reference state, debiasing, then :func:`method.decode`."""
        if enc.size != self.image_size:
            raise ValueError(
                f"the target was encoded at image_size={enc.size} but the model is at {self.image_size}: "
                "encode it again with model.encode(image)"
            )
        with rec.stage("references"):
            ref = self.reference_state()
        with rec.stage("debias"):
            target_deb = self.debias_features(enc.features_norm)
        record_inputs(rec, self, ref, enc)
        mask = method.decode(
            ref["features_deb"],
            ref["masks_low"],
            ref["prototype"],
            enc.features_norm,
            target_deb,
            self.params,
            image=denormalize(enc.image[0]),
            out_size=enc.orig_size if self.resize_to_orig_size else None,
            labels=labels,
            recorder=rec,
        )
        if timings is not None:
            timings.update(rec.timings)
        if rec.trace is None:
            return mask
        rec.trace.timings = rec.timings
        return mask, rec.trace

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

        ``batch_size`` targets per backbone pass (default ``self.batch_size``, else 1 on CPU, 8 on GPU);
        ``on_error="raise"`` stops with a :class:`SegmentManyError` that names the target and carries the
        masks so far, ``"skip"`` puts None and records the error in ``self.last_errors``. Returns one mask
        (``(mask, trace)`` with ``return_traces``, or None when skipped) per target, in order.
        """
        from .batch import segment_batches

        self.reference_state()  # fail early without a reference
        bs = batch_size or self.batch_size or (8 if self.device.type == "cuda" else 1)
        results, self.last_errors = segment_batches(
            list(targets),
            bs,
            prepare=lambda t, i: preprocess_image(
                t, self.image_size, device=self.device, exif_transpose=self.exif_transpose, what=f"target {i}"
            ),
            encode=self._encode_batch,
            decode=lambda x, orig, f, t: self._run(
                self._encoded(x, orig, f, t), self._recorder(return_traces, return_traces)
            ),
            on_error=on_error,
            progress=self.progress if progress is None else progress,
        )
        return results

    # ------------------------------------------------------------ many concepts
    def segment_labels(self, target=None, *, return_trace: bool = False, timings: dict[str, float] | None = None):
        """Segment every concept at once: one target encoding and one clustering shared by all.

        Returns:
            ``(label_map, scores)``: (H, W) int64 on the encoder's device (0 background, i the concept
            ``labels[i - 1]``; S x S with ``resize_to_orig_size=False``) and ``{name: score}``, the mean
            aggregation score of the cells each concept took (0 when none). With ``return_trace``,
            ``(label_map, scores, trace)`` with a :class:`~insid3lab.trace.ConceptsTrace`.
            A cluster claimed by several concepts goes to the higher score (see :mod:`insid3lab.concepts`).
        """
        result = self._segment_concepts("segment_labels", target, return_trace, timings)
        out = (result.label_map, dict(result.scores))
        return (*out, result) if return_trace else out

    def segment_instances(self, target=None, *, return_trace: bool = False):
        """Separate objects of every concept: a list of ``{label, label_id, mask, score, box}``.

        See :func:`insid3lab.concepts.split_instances` for the rule (connected components on the
        feature grid) and the score; with ``return_trace``, ``(instances, trace)``.
        """
        result = self._segment_concepts("segment_instances", target, return_trace, None)
        instances = _concepts.split_instances(result)
        return (instances, result) if return_trace else instances

    def _segment_concepts(self, caller: str, target, trace: bool, timings: dict | None):
        """Encode the target once, then :func:`insid3lab.concepts.run_concepts`."""
        with self._target_of(caller, target) as image:
            if not self.references:
                raise RuntimeError(f"no concept yet: call set_reference(image, mask, label=...) before {caller}()")
            shared = {} if (timings is not None or trace) else None
            enc = self._encode_target(image, Recorder(None, timings=shared, device=self.device))
            result = _concepts.run_concepts(self, enc, trace=trace, timings=shared)
        if timings is not None:
            timings.update(result.timings)
        return result

    # ------------------------------------------------------------------ video
    def track(self, frames, first_mask, *, memory: int = MEMORY, min_confidence: float = MIN_CONFIDENCE, labels=False,
              mask_value: int | None = None, progress: bool | None = None):
        """A generator of one (H, W) bool mask per frame (uint8 label maps with ``labels=True``), the first being
        ``first_mask``; each frame is encoded once and remembered as a shot when confident. The references of
        :meth:`set_reference` are left alone. See :func:`insid3lab.tracking.track` for the memory rule."""
        from .tracking import track

        return track(self, frames, first_mask, memory=memory, min_confidence=min_confidence, labels=labels,
                     mask_value=mask_value, progress=progress)

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
            svd_components: r for this call only (the paper uses 20 for correspondence with ViT-B);
                default the pipeline's setting. The model's settings are not changed.
            return_maps: also return the (N, h, w) similarity maps.

        Returns:
            (N, 2) float tensor of (x, y) in original target pixels (and the maps).
        """
        with self._target_of("match", target) as image:
            matches, maps = match_points(
                self, ref_points, image, reference_image, debiased=debiased, svd_components=svd_components
            )
        return (matches, maps) if return_maps else matches

    def __repr__(self) -> str:
        s = ", ".join(f"{k}={v}" for k, v in self.settings().items())
        return f"INSID3({s}, shots={len(self.references)}, device={self.device})"
