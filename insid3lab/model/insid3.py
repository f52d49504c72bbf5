"""INSID3, the model: an encoder, the hyper-parameters, the positional bases and the reference shots.

The model holds the state and delegates the work: the encoder, the positional bases
(``model.positional``, :mod:`insid3lab.model.basis`), the reference shots (``model.shots``,
:mod:`insid3lab.model.references`), the hyper-parameters (:class:`~insid3lab.method.params.Params`).
The method is :func:`insid3lab.method.pipeline.decode`; batching is :mod:`insid3lab.model.batch`.
Like SAM's predictor, :meth:`INSID3.set_reference` pays for the encoder once and
:meth:`INSID3.segment` then only encodes the target and decodes.

Tasks over a model are objects of their own, in :mod:`insid3lab.tasks`: many concepts and
instances (``ConceptSegmenter``), video (``Tracker``), keypoints (``KeypointMatcher``). Their short
forms ``model.segment_labels``, ``model.segment_instances``, ``model.labels``, ``model.track`` and
``model.match`` are attached to this class by :mod:`insid3lab.tasks.shortcuts`, which
``insid3lab.INSID3`` (the class this module defines) imports first.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from insid3lab.core.preprocess import preprocess_image
from insid3lab.core.weights import is_random
from insid3lab.method.params import Params
from insid3lab.method.trace import NO_RECORD, Recorder
from insid3lab.model.basis import PositionalBases, basis_tag
from insid3lab.model.batch import segment_batches
from insid3lab.model.decoding import decode_target, new_recorder
from insid3lab.model.encoding import Encoded, SegmentManyError, describe
from insid3lab.model.references import ReferenceShots
from insid3lab.stages.features import check_encoder, extract_features, l2_normalize

__all__ = ["INSID3", "Encoded", "Params", "SegmentManyError"]

#: The hyper-parameters that are also attributes of the model (``model.tau``): every Params field, in order.
_PARAMS = tuple(f.name for f in dataclasses.fields(Params))


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
            the extra forward pass and SVD; ``False`` keeps them in memory only (``model.positional.disk``).
        autocast_dtype: run the encoder under autocast with this dtype (``torch.bfloat16`` for the fast
            GPU mode) for references and targets; the positional basis and the decode always run in float32.
        exif_transpose: apply JPEG EXIF orientation to images and masks given as files/PIL images.
        batch_size: targets per backbone pass in :meth:`segment_many` (default 1 on CPU, 8 on GPU).
        progress: show progress bars for many targets.

    Every field of :class:`~insid3lab.method.params.Params` is also an attribute (``model.tau``
    reads ``model.params.tau``): setting one (``model.tau = 0.5``) validates it and replaces
    ``model.params``; nothing is recomputed eagerly.

    Two views hold the rest of the state: :attr:`positional` (the positional bases) and :attr:`shots`
    (the reference shots and their stacked state).

    Example:
        >>> model = INSID3.from_pretrained(src, image_size=1024)
        >>> model.set_reference("ref.jpg", "ref_mask.png")
        >>> mask, trace = model.segment("target.jpg", return_trace=True)  # (H, W) bool, Trace
    """

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
        args = locals()  # the hyper-parameters given here override ``params``
        self.encoder = check_encoder(encoder)
        if hasattr(encoder, "eval"):
            encoder.eval()
        ps = encoder.patch_size
        self.patch_size = int(ps[0] if isinstance(ps, (tuple, list)) else ps)
        self.embed_dim = int(encoder.embed_dim)
        self.params = (params or Params()).replace(**{k: args[k] for k in _PARAMS if args[k] is not None})
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
        self._positional = PositionalBases(self, disk=basis_cache)
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
    def positional(self) -> PositionalBases:
        """The positional bases (:class:`~insid3lab.model.basis.PositionalBases`): ``svd()``, ``basis``,
        ``effective_components()``, ``debias(features)``, ``black_image_features()``, ``clear_cache()``."""
        return self._positional

    @property
    def shots(self) -> ReferenceShots:
        """The reference shots (:class:`~insid3lab.model.references.ReferenceShots`): ``labels``, ``state()``,
        ``concept_states()``, ``at_current_size()``; :meth:`set_reference` adds to them."""
        return self._shots

    def __getattr__(self, name: str):
        # only reached when the ordinary lookup fails: the hyper-parameters, read from ``params``
        if name in _PARAMS:
            return getattr(self.params, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __setattr__(self, name: str, value) -> None:
        if name in _PARAMS:
            self.params = self.params.replace(**{name: value})  # validated; a new record
        else:
            object.__setattr__(self, name, value)

    def __dir__(self) -> list[str]:
        return sorted({*super().__dir__(), *_PARAMS})

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

    # -------------------------------------------------------------- references
    @property
    def references(self) -> list[Encoded]:
        """The reference shots (:class:`~insid3lab.model.encoding.Encoded`), in the order given."""
        return self.shots.encoded

    @references.setter
    def references(self, shots: list[Encoded]) -> None:
        self.shots.encoded = shots
        self.shots.invalidate()

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
        self.shots.add(image, mask, mask_value=mask_value, label=label, labels=labels)

    def clear_reference(self) -> None:
        """Forget all reference shots (and a pending target)."""
        self.shots.clear()

    def set_target(self, image) -> None:
        """Remember a target for :meth:`segment` (and the short forms) called without one: the authors'
        sequence ``set_reference``, ``set_target``, ``segment()``, after which the shots are forgotten."""
        self.shots.set_target(image)

    # ------------------------------------------------------------ segmentation
    def segment(self, target=None, *, return_trace: bool = False, timings: dict[str, float] | None = None):
        """Segment the reference concept in ``target``: an (H, W) bool mask at the target's original size
        (S x S with ``resize_to_orig_size=False``); ``(mask, trace)`` with ``return_trace``.

        ``target``: path, PIL image, numpy array or normalised tensor; when omitted, the one from
        :meth:`set_target`, after which the references are cleared (the authors' sequence). ``timings``:
        a dict to fill with seconds per stage (also ``trace.timings``). Several concepts set: a
        RuntimeError (use ``segment_labels``).
        """
        with self.shots.target_of("segment", target) as image:
            if not self.references:
                raise RuntimeError("no reference yet: call set_reference(image, mask) before segment()")
            rec = new_recorder(self, return_trace, {} if timings is not None or return_trace else None)
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
        rec = new_recorder(self, return_trace, {} if timings is not None or return_trace else None)
        return decode_target(self, target, rec, labels=labels, timings=timings)

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
        ``on_error``: ``"raise"`` or ``"skip"`` (see :func:`insid3lab.model.batch.segment_batches`); the
        skipped targets' errors are kept in ``last_errors``."""
        self.shots.state()  # fail early without a reference
        bs = batch_size or self.batch_size or (8 if self.device.type == "cuda" else 1)
        results, self.last_errors = segment_batches(
            list(targets),
            bs,
            prepare=lambda t, i: self._prepare(t, f"target {i}"),
            encode=self._encode_batch,
            decode=lambda x, orig, f, t: decode_target(
                self, self._encoded(x, orig, f, t), new_recorder(self, return_traces, {} if return_traces else None)
            ),
            on_error=on_error,
            progress=self.progress if progress is None else progress,
        )
        return results

    def __repr__(self) -> str:
        s = ", ".join(f"{k}={v}" for k, v in self.settings().items())
        return f"INSID3({s}, shots={len(self.references)}, device={self.device})"
