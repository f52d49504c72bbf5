"""INSID3: a thin stateful façade over :func:`insid3lab.method.pipeline.decode`.

The façade holds the state and delegates the work: the encoder, the positional bases
(:mod:`insid3lab.model.basis`), the reference shots (:mod:`insid3lab.model.references`), the
hyper-parameters (:class:`~insid3lab.method.params.Params`). The method is :func:`insid3lab.method.pipeline.decode`
(one concept) and :func:`insid3lab.tasks.concepts.run_concepts` (several); batching is
:mod:`insid3lab.model.batch`, tracking :mod:`insid3lab.tasks.tracking`, keypoints :mod:`insid3lab.tasks.matching`.
Like SAM's predictor, :meth:`INSID3.set_reference` pays for the encoder once and
:meth:`INSID3.segment` then only encodes the target and decodes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from functools import partial
from typing import Any

import torch
from torch import Tensor

from insid3lab.core.preprocess import black_image, preprocess_image
from insid3lab.core.weights import is_random
from insid3lab.method.params import Params
from insid3lab.method.trace import NO_RECORD, Recorder
from insid3lab.model import basis_cache as _cache
from insid3lab.model.basis import PositionalBases, basis_tag
from insid3lab.model.decoding import decode_target, new_recorder
from insid3lab.model.encoding import Encoded, SegmentManyError, describe
from insid3lab.model.references import ReferenceShots
from insid3lab.stages.features import check_encoder, extract_features, l2_normalize
from insid3lab.tasks import concepts as _concepts
from insid3lab.tasks.matching import match_points
from insid3lab.tasks.tracking import MEMORY, MIN_CONFIDENCE

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
        image_size, svd_components, tau, merge_threshold, clustering, debias, refine, basis_image,
            basis_noise_images, basis_seed: see
            :class:`~insid3lab.method.params.Params`; omitted ones come from ``params`` (else the defaults).
        params: a :class:`~insid3lab.method.params.Params` to start from.
        resize_to_orig_size: return the mask at the target's original size (else at S x S).
        basis_cache: keep positional bases on disk (see :mod:`insid3lab.model.basis_cache`) so a new process skips
            the extra forward pass and SVD; ``False`` keeps them in memory only.
        autocast_dtype: run the encoder under autocast with this dtype (``torch.bfloat16`` for the fast
            GPU mode) for references and targets; the positional basis and the decode always run in float32.
        exif_transpose: apply JPEG EXIF orientation to images and masks given as files/PIL images.
        batch_size: targets per backbone pass in :meth:`segment_many` (default 1 on CPU, 8 on GPU).
        progress: show progress bars for many targets.

    The hyper-parameters are also attributes (``model.tau = 0.5``): setting one validates it and
    replaces ``model.params``; nothing is recomputed eagerly. Several concepts: name each shot's
    concept (``label=``) or pass a label map (``labels=``), then :meth:`segment_labels`.

    Example:
        >>> model = INSID3.from_pretrained(src, image_size=1024)
        >>> model.set_reference("ref.jpg", "ref_mask.png")
        >>> mask, trace = model.segment("target.jpg", return_trace=True)  # (H, W) bool, Trace
    """

    image_size = _param("image_size", "Side S of the network input (a multiple of the patch size).")
    svd_components = _param("svd_components", "r, dimensions of the positional subspace removed.")
    tau = _param("tau", "τ: clusters merge while their average cosine distance is below 1 − τ.")
    merge_threshold = _param("merge_threshold", "Clusters whose score exceeds it join the mask.")
    debias = _param("debias", "Remove the positional subspace before matching.")
    clustering = _param("clustering", "The clusterer: a registered name, 'auto', or a callable.")
    refine = _param("refine", "The refiner after upsampling: a registered name or a callable.")
    basis_image = _param("basis_image", "What the positional basis is estimated from: 'black' or 'noise'.")
    basis_noise_images = _param("basis_noise_images", "How many noise images (basis_image='noise').")
    basis_seed = _param("basis_seed", "The seed of the noise images (basis_image='noise').")

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
        basis_image: str | None = None,
        basis_noise_images: int | None = None,
        basis_seed: int | None = None,
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
        args = locals()  # the hyper-parameters given here override ``params``
        given = {f.name: args[f.name] for f in dataclasses.fields(Params) if args[f.name] is not None}
        self.params = (params or Params()).replace(**given)
        self.resize_to_orig_size = bool(resize_to_orig_size)
        if isinstance(autocast_dtype, str):
            from insid3lab.backbone.loading import resolve_dtype

            autocast_dtype = resolve_dtype(autocast_dtype)  # "bfloat16", "bf16", ...
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
        self.last_errors: list[tuple[int, str]] = []

    @classmethod
    def from_pretrained(cls, source, *, device="auto", dtype=None, arch=None, rope_periods="auto", **kwargs) -> INSID3:
        """An INSID3 on the backbone from ``source`` (anything :func:`~insid3lab.load_backbone` reads);
        ``kwargs`` go to the constructor (``image_size=768``, ``tau=0.5``, ``params=...``, ...)."""
        from insid3lab.backbone import load_backbone

        return cls(load_backbone(source, device=device, dtype=dtype, arch=arch, rope_periods=rope_periods), **kwargs)

    # ------------------------------------------------------------ settings
    @property
    def params(self) -> Params:
        """The hyper-parameters in force (frozen; assign a new one, or set an attribute such as ``tau``)."""
        return self._params

    @params.setter
    def params(self, params: Params) -> None:
        if not isinstance(params, Params):
            raise TypeError(f"params must be an insid3lab.method.params.Params, got {type(params).__name__}")
        if params.image_size % self.patch_size:
            raise ValueError(
                f"image_size={params.image_size!r}: must be a positive multiple of the patch size "
                f"{self.patch_size} (e.g. 512, 768, 1024)"
            )
        if getattr(self, "_shots", None) is not None and basis_tag(params) != basis_tag(self._params):
            self._shots.invalidate()  # the shots' debiased features depend on the basis images
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
        """The encoder's device."""
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
        """The hyper-parameters in force, the r in use (``effective_components``: ``svd_components`` clamped to
        min(C, h*w) at the current size), the compute dtype and whether the weights are random, as a dictionary."""
        dtype = None if self.autocast_dtype is None else str(self.autocast_dtype).replace("torch.", "")
        h, w = self.grid
        return {**self.params.as_dict(), "effective_components": min(self.svd_components, self.embed_dim, h * w),
                "autocast_dtype": dtype, "random_weights": is_random(self.encoder)}  # fmt: skip

    # --------------------------------------------------------------- encoding
    def _prepare(self, image, what: str) -> tuple[Tensor, tuple[int, int]]:
        """The (1, 3, S, S) network input and the original (H, W)."""
        return preprocess_image(
            image, self.image_size, device=self.device, exif_transpose=self.exif_transpose, what=what
        )

    def _encode_batch(self, images: Tensor) -> Tensor:
        """(B, 3, S, S) -> (B, C, h, w) float32 raw features."""
        return extract_features(self.encoder, images.to(self.device), autocast_dtype=self.autocast_dtype)

    def _encoded(self, x: Tensor, orig: tuple[int, int], feats: Tensor, source) -> Encoded:
        return Encoded(x, orig, feats, l2_normalize(feats, dim=0), self.image_size, describe(source), source=source)

    def encode(self, image, *, what: str = "image", recorder: Recorder = NO_RECORD) -> Encoded:
        """Preprocess and encode one image at the current size (no state is changed): an :class:`Encoded`;
        ``recorder`` times the stages ``preprocess`` and ``features``."""
        with recorder.stage("preprocess"):
            x, orig = self._prepare(image, what)
        with recorder.stage("features"):
            return self._encoded(x, orig, self._encode_batch(x)[0], image)

    # ------------------------------------------------------ positional basis
    def positional_svd(self) -> dict[str, Tensor]:
        """SVD of the basis images' features at the current size: ``U`` (C, m), ``S`` (m,), ``mean`` (C,); the
        images are the black one or noise (``basis_image``, see :func:`insid3lab.model.basis.basis_images`);
        computed once per (weights, image size, basis images), kept in memory and on disk unless
        ``basis_cache=False``. Never under autocast, as :meth:`black_image_features`."""
        encode = partial(extract_features, self.encoder, autocast_dtype=None)
        return self._bases.svd(self.image_size, self.params, encode, self.device)

    def black_image_features(self) -> Tensor:
        """Raw features of the normalised black image: (1, C, h, w), never under autocast (the basis is
        shared by every mode through the disk cache, and bfloat16 rounding would rotate it)."""
        return extract_features(self.encoder, black_image(self.image_size, device=self.device), autocast_dtype=None)

    def effective_components(self, components: int | None = None) -> int:
        """r actually used: ``components`` (default ``svd_components``) clamped to min(C, h*w), warning once when
        an r other than the default had to be reduced (the default, the paper's r for ViT-L, means "as many as
        the model allows" on smaller models)."""
        r = self.svd_components if components is None else Params(svd_components=components).svd_components
        h, w = self.grid
        asked = r != Params.svd_components
        return self._bases.components(r, self.embed_dim, h * w, self.image_size, warn=asked)

    @property
    def basis(self) -> Tensor:
        """U: (C, r) the positional basis in use."""
        return self.positional_svd()["U"][:, : self.effective_components()].contiguous()

    def debias_features(self, features_norm: Tensor, *, components: int | None = None) -> Tensor:
        """Debias (B, C, h, w) or (C, h, w) normalised features (identity when ``debias`` is off or r = 0);
        ``components`` overrides ``svd_components`` for this call only."""
        r = self.effective_components(components) if self.debias else 0
        if not r:
            return features_norm
        return self._bases.debias(features_norm, self.image_size, r, self.positional_svd, self.params)

    def clear_basis_cache(self) -> int:
        """Forget bases in memory and delete the on-disk cache; returns the number of files removed."""
        self._bases.clear()
        self._shots.invalidate()
        return _cache.clear_cache()

    # -------------------------------------------------------------- references
    @property
    def references(self) -> list[Encoded]:
        """The reference shots (:class:`~insid3lab.model.encoding.Encoded`), in the order given."""
        return self._shots.shots

    @references.setter
    def references(self, shots: list[Encoded]) -> None:
        self._shots.shots = shots
        self._shots.invalidate()

    def set_reference(
        self, image, mask=None, *, mask_value: int | None = None, label: str | None = None, labels=None
    ) -> None:
        """Add a reference shot (call again for k shots): encode it now and keep its features.

        ``image``: path, PIL image, numpy array or normalised tensor; ``mask``: the same kinds, foreground
        ``> 0`` (or ``== mask_value``), None for keypoint matching only. ``label``: the shot's concept
        (same label, pooled as k-shot). ``labels``: ``mask`` is a label map, each ``{value: name}`` (or
        ``"all"``) adds a shot of concept ``name`` from one encoding. Raises
        :class:`~insid3lab.stages.EmptyMaskError` (a ValueError naming the shot) for an empty mask.
        """
        self._shots.add(image, mask, mask_value=mask_value, label=label, labels=labels)

    @property
    def labels(self) -> list[str]:
        """The concepts' names in label order (label i of :meth:`segment_labels` is ``labels[i - 1]``)."""
        return self._shots.labels

    def clear_reference(self) -> None:
        """Forget all reference shots (and a pending target)."""
        self._shots.clear()

    def reset_state(self) -> None:
        """Same as :meth:`clear_reference` (the name the authors' code uses)."""
        self.clear_reference()

    def set_target(self, image) -> None:
        """Remember a target for :meth:`segment` / :meth:`match` called without one (the authors' sequence)."""
        self._shots.set_target(image)

    def references_at_current_size(self) -> list[Encoded]:
        """The shots, encoded at the current image size: the one place where a changed ``image_size``
        re-encodes (see :meth:`~insid3lab.model.references.ReferenceShots.at_current_size`)."""
        return self._shots.at_current_size()

    def reference_state(self) -> dict[str, Tensor]:
        """The stacked reference tensors and prototype for the current settings, computed once per settings
        (:func:`~insid3lab.model.references.stack_shots`: ``features_deb`` (k, C, h, w), ``prototype`` (C,), ...)."""
        return self._shots.state()

    def concept_states(self) -> list[dict[str, Tensor]]:
        """Per concept (in :attr:`labels` order), :meth:`reference_state`'s tensors over its shots plus
        ``shots`` (their indices); one concept gives ``[reference_state()]``'s values."""
        return self._shots.concept_states()

    # ------------------------------------------------------------ segmentation
    def segment(self, target=None, *, return_trace: bool = False, timings: dict[str, float] | None = None):
        """Segment the reference concept in ``target``: an (H, W) bool mask at the target's original size
        (S x S with ``resize_to_orig_size=False``); ``(mask, trace)`` with ``return_trace``.

        ``target``: path, PIL image, numpy array or normalised tensor; when omitted, the one from
        :meth:`set_target`, after which the references are cleared (the authors' sequence). ``timings``:
        a dict to fill with seconds per stage (also ``trace.timings``). Several concepts set: a
        RuntimeError (use :meth:`segment_labels`).
        """
        with self._shots.target_of("segment", target) as image:
            if not self.references:
                raise RuntimeError("no reference yet: call set_reference(image, mask) before segment()")
            rec = self._recorder(return_trace, timings is not None or return_trace)
            return decode_target(self, self.encode(image, what="target image", recorder=rec), rec, timings=timings)

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
        (``trace.cluster_labels``; they depend on neither r nor the merge threshold). The rest as in :meth:`segment`.
        """
        rec = self._recorder(return_trace, timings is not None or return_trace)
        return decode_target(self, target, rec, labels=labels, timings=timings)

    def _recorder(self, trace: bool, timed: bool) -> Recorder:
        return new_recorder(self, trace, {} if timed else None)

    def segment_many(
        self,
        targets: Iterable,
        *,
        batch_size: int | None = None,
        return_traces: bool = False,
        on_error: str = "raise",
        progress: bool | None = None,
    ) -> list:
        """Segment many targets with batched backbone passes: one mask (``(mask, trace)``, or None when
        skipped) per target, in order. ``batch_size`` default ``self.batch_size``, else 1 on CPU, 8 on GPU;
        ``on_error``: ``"raise"`` or ``"skip"`` (see :func:`insid3lab.model.batch.segment_batches`)."""
        from insid3lab.model.batch import segment_batches

        self.reference_state()  # fail early without a reference
        bs = batch_size or self.batch_size or (8 if self.device.type == "cuda" else 1)
        results, self.last_errors = segment_batches(
            list(targets),
            bs,
            prepare=lambda t, i: self._prepare(t, f"target {i}"),
            encode=self._encode_batch,
            decode=lambda x, orig, f, t: decode_target(
                self, self._encoded(x, orig, f, t), self._recorder(return_traces, return_traces)
            ),
            on_error=on_error,
            progress=self.progress if progress is None else progress,
        )
        return results

    # ------------------------------------------------------------ many concepts
    def segment_labels(self, target=None, *, return_trace: bool = False, timings: dict[str, float] | None = None):
        """Segment every concept at once: one target encoding and one clustering shared by all.

        Returns ``(label_map, scores)``: (H, W) int64 (0 background, i the concept ``labels[i - 1]``) and
        ``{name: mean aggregation score of its cells}``; with ``return_trace`` also a
        :class:`~insid3lab.method.trace.ConceptsTrace`. The competition rule is in :mod:`insid3lab.tasks.concepts`.
        """
        result = self._segment_concepts("segment_labels", target, return_trace, timings)
        out = (result.label_map, dict(result.scores))
        return (*out, result) if return_trace else out

    def segment_instances(self, target=None, *, return_trace: bool = False):
        """Separate objects of every concept: a list of ``{label, label_id, mask, score, box}``.

        See :func:`insid3lab.tasks.concepts.split_instances` for the rule (connected components on the
        feature grid) and the score; with ``return_trace``, ``(instances, trace)``.
        """
        result = self._segment_concepts("segment_instances", target, return_trace, None)
        instances = _concepts.split_instances(result)
        return (instances, result) if return_trace else instances

    def _segment_concepts(self, caller: str, target, trace: bool, timings: dict | None):
        with self._shots.target_of(caller, target) as image:
            return _concepts.segment_concepts(self, caller, image, trace, timings)

    # ------------------------------------------------------------------ video
    def track(
        self,
        frames,
        first_mask,
        *,
        memory: int = MEMORY,
        min_confidence: float = MIN_CONFIDENCE,
        labels=False,
        mask_value: int | None = None,
        progress: bool | None = None,
    ):
        """A generator of one (H, W) bool mask per frame (uint8 label maps with ``labels=True``), the first being
        ``first_mask``; each frame is encoded once and remembered as a shot when confident. The references of
        :meth:`set_reference` are left alone. See :func:`insid3lab.tasks.tracking.track` for the memory rule."""
        from insid3lab.tasks.tracking import track

        return track(
            self,
            frames,
            first_mask,
            memory=memory,
            min_confidence=min_confidence,
            labels=labels,
            mask_value=mask_value,
            progress=progress,
        )

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

        ``ref_points`` (N, 2) (x, y) in original reference pixels -> (N, 2) float (x, y) in original target
        pixels (and the (N, h, w) similarity maps with ``return_maps``). ``target`` default: the one from
        :meth:`set_target`; ``reference_image`` default: the first shot; ``svd_components``: r for this
        call only. See :func:`insid3lab.tasks.matching.match_points`.
        """
        with self._shots.target_of("match", target) as image:
            matches, maps = match_points(
                self, ref_points, image, reference_image, debiased=debiased, svd_components=svd_components
            )
        return (matches, maps) if return_maps else matches

    def __repr__(self) -> str:
        s = ", ".join(f"{k}={v}" for k, v in self.settings().items())
        return f"INSID3({s}, shots={len(self.references)}, device={self.device})"
