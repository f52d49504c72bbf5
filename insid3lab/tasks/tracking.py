"""Video object segmentation over one model: propagate the first frame's mask through a sequence with a
memory of past frames (:class:`Tracker`; ``model.track`` is its short form, :mod:`insid3lab.tasks.shortcuts`).

Every frame is encoded once. It is first a *target*: its features are debiased once and decoded
(:func:`insid3lab.method.pipeline.decode`) against the current reference state of each object. A frame
whose prediction is kept then becomes a *memory shot* for the following frames: its shot is built
from the same normalised and debiased features and the predicted mask, so no frame is ever
encoded or debiased twice.

The reference state of an object at frame t is stacked from

* the first frame and its given mask (always), and
* the last ``memory`` frames whose prediction was *remembered*.

Confidence and the memory rule
------------------------------
Let p₀ be the prototype of the first frame alone (the L2-normalised mean of its debiased
foreground features) and M_t the predicted mask of frame t on the feature grid. The confidence
of frame t is the mean forward similarity inside its predicted mask, relative to the first frame's
own value::

    confidence(t) = mean_{x in M_t} <deb_t(x), p₀>  /  mean_{x in M_0} <deb_0(x), p₀>

The denominator is the first frame's self-similarity, ‖mean of its foreground features‖, so the
first frame has confidence 1. Measuring against p₀ (not the memory's prototype) keeps the memory
from vouching for itself as it drifts. A frame joins the memory when its mask is not empty and
its confidence is at least ``min_confidence`` (:attr:`Tracker.MIN_CONFIDENCE` by default); otherwise it
is skipped and the memory keeps its older frames. ``memory=0`` segments every frame against the
first frame alone (the same masks as ``set_reference(first); segment(frame)``).

Several objects
---------------
With ``labels=True`` the first mask is a label map (0 background, 255 void, every other value an
object). Each object has its own memory; a frame is encoded and debiased once and its clustering
computed once, then decoded per object. A pixel claimed by several objects goes to the one with
the highest confidence in that frame.

The model's own references (``model.set_reference``) are neither read nor changed: the
tracker keeps its own shot list and calls :func:`~insid3lab.method.pipeline.decode` with it.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from insid3lab.core.palette import VOID
from insid3lab.core.preprocess import denormalize, mask_to_numpy, preprocess_mask
from insid3lab.core.video import count_frames, iter_frames, list_frame_files
from insid3lab.method import pipeline as method
from insid3lab.method.trace import Recorder, Trace
from insid3lab.model.encoding import Encoded
from insid3lab.stages import prototype as proto
from insid3lab.stages.prototype import EmptyMaskError
from insid3lab.stages.upsampling import upsample_mask

__all__ = ["FrameRecord", "ObjectMemory", "Shot", "Tracker", "label_map_array"]


def _check_memory(memory, min_confidence) -> tuple[int, float]:
    """``memory`` (an int >= 0) and ``min_confidence`` (a finite float) checked; a ValueError naming the bad one."""
    if isinstance(memory, bool) or not isinstance(memory, int) or memory < 0:
        raise ValueError(f"memory={memory!r}: must be an integer >= 0 (past frames kept as extra shots)")
    try:
        c = float(min_confidence)
    except (TypeError, ValueError):
        c = float("nan")
    if not np.isfinite(c):
        raise ValueError(f"min_confidence={min_confidence!r}: must be a finite number (e.g. {Tracker.MIN_CONFIDENCE})")
    return memory, c


@dataclass
class Shot:
    """One reference shot of an object's memory.

    Attributes:
        encoded: the frame's :class:`Encoded` (the same features it was decoded with as a target),
            its ``mask`` (S, S) and ``mask_low`` (h, w) set to the mask the shot contributes.
        features_deb: (C, h, w) its debiased features, computed once when it was the target.
        frame: index of the frame in the sequence.
        confidence: its confidence (1 for the first frame).
    """

    encoded: Encoded
    features_deb: Tensor
    frame: int
    confidence: float


class ObjectMemory:
    """The shots of one object: the first frame (always) and the last ``memory`` remembered frames.

    Args:
        first: the first frame's shot (its ``encoded.mask_low`` non-empty).
        memory: how many remembered frames to keep (0: the first frame alone).
    """

    def __init__(self, first: Shot, memory: int):
        self.first = first
        self.recent: deque[Shot] = deque(maxlen=memory)
        deb, low = first.features_deb, first.encoded.mask_low
        # p₀ and the first frame's self-similarity, the yardstick of every later confidence
        self.first_prototype = proto.reference_prototype(deb[None], low[None])
        self.first_score = float(self._mean_similarity(deb, low))

    @property
    def shots(self) -> list[Shot]:
        """The shots of the reference state, the first frame first."""
        return [self.first, *self.recent]

    def reference(self) -> tuple[Tensor, Tensor, Tensor]:
        """(k, C, h, w) debiased features, (k, h, w) masks on the grid, (C,) prototype of the current shots."""
        shots = self.shots
        deb = torch.stack([s.features_deb for s in shots])
        low = torch.stack([s.encoded.mask_low for s in shots])
        return deb, low, proto.reference_prototype(deb, low)

    def _mean_similarity(self, target_deb: Tensor, mask_low: Tensor) -> Tensor:
        return (self.first_prototype @ target_deb[:, mask_low]).mean()

    def confidence(self, target_deb: Tensor, mask_low: Tensor | None) -> float:
        """Mean <deb(x), p₀> over the (h, w) mask, over the first frame's own value; 0 for an empty mask."""
        if mask_low is None or not bool(mask_low.any()):
            return 0.0
        return float(self._mean_similarity(target_deb, mask_low)) / self.first_score

    def remember(self, shot: Shot) -> None:
        """Add a shot; the oldest remembered one leaves when ``memory`` are held."""
        if self.recent.maxlen:
            self.recent.append(shot)


@dataclass
class FrameRecord:
    """What happened to one frame.

    Attributes:
        index: position in the sequence.
        name: the frame's name (file stem or ``00000``).
        confidence: per object id, the frame's confidence (1 for the first frame).
        remembered: per object id, whether the frame joined that object's memory.
        shots: per object id, the number of shots its prediction was decoded with (0 for the first frame).
    """

    index: int
    name: str
    confidence: dict[int, float] = field(default_factory=dict)
    remembered: dict[int, bool] = field(default_factory=dict)
    shots: dict[int, int] = field(default_factory=dict)


def label_map_array(mask, *, what: str = "first mask") -> np.ndarray:
    """An (H, W) integer array of object ids from a path, PIL image, array or tensor.

    Palette PNGs give their indices (the DAVIS convention); an RGB image is refused.
    """
    if isinstance(mask, (str, os.PathLike)):
        if not os.path.isfile(mask):
            raise FileNotFoundError(f"{what} {str(mask)!r}: no such file")
        try:
            with Image.open(mask) as img:
                img.load()
                mask = img.copy()
        except OSError as e:
            raise ValueError(f"{what} {str(mask)!r} cannot be read as an image ({type(e).__name__}: {e})") from e
    if isinstance(mask, Image.Image):
        if mask.mode not in ("P", "L", "1", "I", "I;16"):
            raise ValueError(
                f"{what} is a {mask.mode} image; a label map must be a palette (P) or grayscale image of object ids"
            )
        arr = np.asarray(mask)
    elif isinstance(mask, Tensor):
        arr = mask.detach().cpu().numpy()
    elif isinstance(mask, np.ndarray):
        arr = mask
    else:
        raise TypeError(
            f"{what}: expected a file path, PIL image, numpy array or torch tensor; got {type(mask).__name__}"
        )
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8)
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{what}: a label map must be an (H, W) integer array; got shape {arr.shape}, {arr.dtype}")
    return arr


class Tracker:
    """Video object segmentation over a model: segments the frames of a sequence one after the other,
    with a memory per object (the way SAM 2's video predictor sits over SAM's model).

    Args:
        model: an :class:`~insid3lab.INSID3` (its encoder, settings and positional basis are used;
            its references are left alone).
        memory: past frames kept as extra shots (>= 0).
        min_confidence: a prediction joins the memory when its confidence reaches this (see the module).

    Attributes (of the sequence begun by :meth:`track` or :meth:`start`):
        labels: whether the first mask was read as a label map.
        ids: the object ids (``[1]`` without ``labels``).
        memories: per object id, its :class:`ObjectMemory`.
        records: one :class:`FrameRecord` per frame so far.

    Example:
        >>> tracker = Tracker(model, memory=4)
        >>> masks = list(tracker.track("clip/", "first_mask.png"))  # one (H, W) bool mask per frame
        >>> tracker.records[-1].confidence  # {1: ...}
    """

    #: Past frames kept as extra shots by default.
    MEMORY = 4
    #: A prediction whose confidence (relative to the first frame's, see the module) is below this is not remembered.
    MIN_CONFIDENCE = 0.5

    def __init__(self, model, *, memory: int = MEMORY, min_confidence: float = MIN_CONFIDENCE):
        self.model = model
        self.memory, self.min_confidence = _check_memory(memory, min_confidence)
        self.labels = False
        self.ids: list[int] = []
        self.memories: dict[int, ObjectMemory] = {}
        self.records: list[FrameRecord] = []

    def track(
        self, frames, first_mask, *, labels: bool = False, mask_value: int | None = None, progress: bool | None = None
    ) -> Iterator[Tensor]:
        """Yield one mask per frame of ``frames``, the first frame's being ``first_mask`` itself.

        Args:
            frames: anything :func:`insid3lab.core.video.iter_frames` reads (a folder, a video file, a list of
                paths, a (T, H, W, 3) array, an iterable of images). Frames may differ in size: each gets
                its mask at its own size. A ``first_mask`` file inside a ``frames`` folder is not a frame.
            first_mask, labels, mask_value: see :meth:`start`.
            progress: a tqdm bar with frames per second (default: the model's ``progress``).

        Yields:
            (H, W) bool masks, or (H, W) uint8 label maps with ``labels=True``, on the model's device, at
            each frame's own size.
        """
        from tqdm.auto import tqdm

        folder = isinstance(frames, (str, os.PathLike)) and os.path.isdir(frames)
        if folder and isinstance(first_mask, (str, os.PathLike)):  # the first mask kept among the frames
            frames = list_frame_files(frames, exclude=[first_mask])
        show = self.model.progress if progress is None else bool(progress)
        total = count_frames(frames) if show else None
        with tqdm(total=total, disable=not show, unit="frame", desc="track", dynamic_ncols=True) as bar:
            started = False
            for name, frame in iter_frames(frames):
                if started:
                    out = self.step(frame, name)
                else:
                    out = self.start(frame, first_mask, labels=labels, mask_value=mask_value, name=name)
                    started = True
                bar.update(1)
                yield out

    def start(
        self, first_frame, first_mask, *, labels: bool = False, mask_value: int | None = None, name: str = "00000"
    ) -> Tensor:
        """Begin a sequence (forgetting the previous one) with its first frame and mask.

        Args:
            first_frame: the first frame (anything ``model.encode`` reads).
            first_mask: its mask: foreground ``> 0`` (or ``== mask_value``); with ``labels=True`` a label
                map whose every value but 0 and 255 is an object. It must have the frame's size.
            labels: read ``first_mask`` as a label map and track every object in it.
            mask_value: with ``labels=False``, the label selected from a label map.
            name: the first frame's name.

        Returns:
            the first frame's mask (H, W) bool, or its label map (H, W) uint8 with ``labels``.
        """
        model = self.model
        enc = model.encode(first_frame, what=f"frame {name}")
        self.labels = bool(labels)
        per_object = _first_masks(first_mask, self.labels, mask_value, model.exif_transpose, enc.orig_size)
        self.ids = ids = list(per_object)
        deb = model.positional.debias(enc.features_norm)
        h, w = enc.features.shape[-2:]
        self.memories, full = {}, {}
        for i, m in per_object.items():
            full[i] = preprocess_mask(m, model.image_size, device=model.device, what=f"first mask (object {i})")[0]
            shot_enc = replace(enc, mask=full[i], mask_low=proto.downsample_mask(full[i], h, w))
            self.memories[i] = ObjectMemory(Shot(shot_enc, deb, 0, 1.0), self.memory)
        if model.resize_to_orig_size:
            full = {i: torch.from_numpy(np.ascontiguousarray(m)) for i, m in per_object.items()}
        self.records = [FrameRecord(0, name, {i: 1.0 for i in ids}, {i: True for i in ids}, {i: 0 for i in ids})]
        return self._output(full)

    def _output(self, masks: dict[int, Tensor]) -> Tensor:
        """Per-object disjoint (H, W) masks -> (H, W) bool (one object) or uint8 label map (``labels``)."""
        if not self.labels:
            return masks[1].to(self.model.device, torch.bool)
        first = next(iter(masks.values()))
        out = torch.zeros(first.shape, dtype=torch.uint8, device=self.model.device)
        for i, m in masks.items():
            out[m.to(out.device, torch.bool)] = i
        return out

    def step(self, frame, name: str | None = None) -> Tensor:
        """Segment the next frame of the sequence begun by :meth:`start` and update the memories.

        Returns:
            (H, W) bool mask (``labels=False``) or (H, W) uint8 label map, at the frame's size
            (S x S with the model's ``resize_to_orig_size=False``), on the model's device.
        """
        if not self.records:
            raise RuntimeError("step() needs a sequence: call start(first_frame, first_mask) first")
        model, t = self.model, len(self.records)
        name = f"{t:05d}" if name is None else name
        enc = model.encode(frame, what=f"frame {name}")  # the frame's one encoding
        deb = model.positional.debias(enc.features_norm)  # its one debiasing
        preds, conf, shots = self._predict(enc, deb)
        h, w = enc.features.shape[-2:]
        remembered = {}
        for i, up in preds.items():
            keep = bool(up.any()) and conf[i] >= self.min_confidence and self.memory > 0
            if keep:
                shot_enc = replace(enc, mask=up, mask_low=proto.downsample_mask(up, h, w))
                self.memories[i].remember(Shot(shot_enc, deb, t, conf[i]))
            remembered[i] = keep
        self.records.append(FrameRecord(t, name, conf, remembered, shots))
        if model.resize_to_orig_size:
            preds = {i: upsample_mask(up, *enc.orig_size) for i, up in preds.items()}
        return self._output(preds)

    def _predict(self, enc: Encoded, deb: Tensor) -> tuple[dict, dict, dict]:
        """Per object: its (S, S) mask (disjoint: a pixel claimed by several goes to the most confident),
        its confidence and the number of shots it was decoded with."""
        image = denormalize(enc.image[0])
        h, w = enc.features.shape[-2:]
        labels = None  # the clustering depends on the target alone: computed once, shared by the objects
        preds, conf, shots = {}, {}, {}
        for i, mem in self.memories.items():
            ref_deb, ref_low, p = mem.reference()
            rec = Recorder(Trace()) if len(self.memories) > 1 and labels is None else method.NO_RECORD
            up = method.decode(
                ref_deb, ref_low, p, enc.features_norm, deb, self.model.params, image=image, labels=labels, recorder=rec
            )  # (S, S)
            if rec.trace is not None and rec.trace.cluster_labels is not None:
                labels = rec.trace.cluster_labels
            preds[i], shots[i] = up, ref_deb.shape[0]
            conf[i] = mem.confidence(deb, proto.downsample_mask(up, h, w) if bool(up.any()) else None)
        if len(preds) > 1:
            ids = list(preds)
            stack = torch.stack([preds[i] for i in ids])
            score = torch.tensor([conf[i] for i in ids], device=stack.device)[:, None, None]
            best = torch.where(stack, score, torch.full_like(score, -torch.inf)).argmax(dim=0)
            preds = {i: stack[k] & (best == k) for k, i in enumerate(ids)}
        return preds, conf, shots


def _first_masks(first_mask, labels: bool, mask_value, exif_transpose: bool, size: tuple[int, int]) -> dict:
    """``{object id: (H, W) bool array}`` of a first mask for a frame of ``size`` (H, W); every error named."""
    H, W = size
    if labels:
        lab = label_map_array(first_mask)
        lab = np.where(lab == VOID, 0, lab)
        per_object = {int(i): lab == i for i in np.unique(lab) if i != 0}
        shape = lab.shape
    else:
        arr = mask_to_numpy(first_mask, mask_value=mask_value, exif_transpose=exif_transpose, what="first mask")
        per_object, shape = {1: arr}, arr.shape
    if tuple(shape) != (H, W):
        raise ValueError(
            f"the first mask is {shape[0]}x{shape[1]} but the first frame is {H}x{W} (H x W); "
            "the mask must have the frame's size"
        )
    if not per_object or not any(bool(m.any()) for m in per_object.values()):
        sel = "no object id (values other than 0 and 255)" if labels else "no foreground pixel"
        raise EmptyMaskError(f"the first mask is empty: {sel}; tracking needs the object in the first frame")
    return per_object
