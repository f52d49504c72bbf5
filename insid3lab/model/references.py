"""The reference shots of an :class:`~insid3lab.INSID3` and the stacked state the decode reads.

A shot is an :class:`~insid3lab.model.encoding.Encoded` record: the image encoded once when it is
given, its mask on the input grid and on the feature grid, and the name of its concept. This
module keeps the list of shots and everything derived from it:

- the concepts' names: a shot's ``label`` (:func:`check_label`; none is :data:`DEFAULT_LABEL`),
  the shots of each concept (:func:`concept_shots`), the names a label map gives (:func:`label_values`);
- adding shots: one image and mask, or a label map whose values each add a shot of their own
  concept from a single encoding of the image (:func:`label_map_shots`);
- the one place where a changed image size re-encodes (:meth:`ReferenceShots.at_current_size`):
  a shot encoded at another size is encoded again from the image (and mask) it was given with;
- the stacked tensors and the prototype per concept (:meth:`ReferenceShots.state`,
  :meth:`ReferenceShots.concept_states`), computed once per (image size, r, shots) and kept;
- the authors' episode sequence (``set_target``, then ``segment()`` without a target, after
  which the shots are forgotten): :meth:`ReferenceShots.target_of`.

The owner (the model, whose ``shots`` view :class:`ReferenceShots` is) encodes, debiases and holds
the settings; this module only calls its public parts (``encode``, ``positional.debias``,
``positional.effective_components``) and reads its settings (``image_size``, ``debias``, ``device``,
``exif_transpose``).
"""

from __future__ import annotations

import dataclasses
import numbers
import os
from collections.abc import Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import Tensor

from insid3lab.core.palette import VOID
from insid3lab.core.preprocess import preprocess_mask
from insid3lab.model.encoding import Encoded, describe
from insid3lab.stages import prototype as proto

__all__ = [
    "DEFAULT_LABEL",
    "ReferenceShots",
    "attach_mask",
    "check_label",
    "concept_shots",
    "images_given",
    "label_map_shots",
    "label_values",
    "stack_shots",
]

#: The name of the concept formed by shots given without a label.
DEFAULT_LABEL = "object"


def check_label(label, what: str = "label") -> str | None:
    """A concept name: None or a non-empty string (surrounding spaces removed)."""
    if label is None:
        return None
    if not isinstance(label, str) or not label.strip():
        raise ValueError(f"{what}={label!r}: a concept name must be a non-empty string (or None)")
    return label.strip()


def _raw_label_map(mask, exif_transpose: bool, what: str) -> np.ndarray:
    """The label map's values as an (H, W) array (first channel of a colour image, as ``mask_value`` reads it)."""
    from PIL import Image, ImageOps

    from insid3lab.core.preprocess import open_image

    if isinstance(mask, torch.Tensor):
        arr = mask.detach().cpu().float().numpy() if mask.is_floating_point() else mask.detach().cpu().numpy()
    elif isinstance(mask, (str, os.PathLike, Image.Image)):
        img = open_image(mask, what=what) if not isinstance(mask, Image.Image) else mask
        arr = np.asarray(ImageOps.exif_transpose(img) if exif_transpose else img)
    elif isinstance(mask, np.ndarray):
        arr = mask
    else:
        raise TypeError(
            f"{what}: expected a file path, PIL image, numpy array or torch tensor; got {type(mask).__name__}"
        )
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim == 3 and arr.shape[2] in (1, 3, 4):
        arr = arr[..., 0]
    if arr.ndim != 2:
        raise ValueError(f"{what}: a label map must be HxW (or 1xHxW, HxWx3); got shape {arr.shape}")
    if np.issubdtype(arr.dtype, np.inexact) and arr.size and not np.isfinite(arr).all():
        raise ValueError(f"{what}: the label map holds NaN or infinite values")
    return arr


def label_values(
    mask, labels, *, exif_transpose: bool = True, what: str = "reference mask", option: str = "labels"
) -> list[tuple[int, str]]:
    """The (value, name) pairs a label map adds, in increasing value order.

    In a label map 0 is background and :data:`~insid3lab.core.palette.VOID` (255) is void, as the
    tracker and DAVIS read them: ``"all"`` takes every other value; 255 is a concept only when named.

    Args:
        mask: the label map (anything :func:`~insid3lab.core.preprocess.preprocess_mask` reads).
        labels: ``{value: name}`` (values non-zero integers present in the map, names distinct
            non-empty strings), or ``"all"``/``True`` for every value present but 0 and 255, named
            by its value (``"3"``).
        what: the map in messages; option: the argument ``labels`` is called in messages.

    Raises:
        ValueError: a label map without a value to take, a value that is not a non-zero integer
            or is absent from the map (named with its concept), one name given for two values, a
            bad name, NaN or infinite values.
    """
    if not (labels is True or labels == "all") and (not isinstance(labels, dict) or not labels):
        raise ValueError(
            f"labels={labels!r}: pass a non-empty dict {{value: name}}, or 'all' (or True) for every value"
        )
    arr = _raw_label_map(mask, exif_transpose, what)
    present = [v for v in np.unique(arr) if v != 0]
    if labels is True or labels == "all":
        values = [v for v in present if v != VOID]
        if not values:
            raise ValueError(
                f"{what} has no value other than 0 (background) and {VOID} (void): a label map needs at least one "
                "labelled region"
            )
        bad = [v for v in values if float(v) != int(v)]
        if bad:
            raise ValueError(f"{what}: {option}='all' needs integer values; found {bad[0]!r}")
        return [(int(v), str(int(v))) for v in values]
    out, seen = [], {}
    for value, name in labels.items():
        if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value == 0:
            raise ValueError(
                f"{option}: key {value!r} must be a non-zero integer value of the label map (0 is background)"
            )
        name = check_label(name, f"{option}[{value}]")
        if name is None:
            raise ValueError(f"{option}[{value}]: a concept name must be a non-empty string")
        if name in seen:
            raise ValueError(
                f"{option}: the name {name!r} is given for values {seen[name]} and {int(value)}; "
                "one name per value in a label map (to pool two regions, pass the map twice with mask_value)"
            )
        if not any(v == value for v in present):
            listed = [str(int(v)) if float(v) == int(v) else repr(v) for v in present[:12] if v != VOID]
            more = ", ..." if len(present) > 12 else ""
            raise ValueError(
                f"{what}: {option} value {int(value)} ({name!r}) is absent from the label map (its values: "
                f"{', '.join(listed) or 'none'}{more}; 0 is background, {VOID} void)"
            )
        seen[name] = int(value)
        out.append((int(value), name))
    return sorted(out)


def images_given(references: Sequence) -> int:
    """How many images the shots come from (the shots of one label map share one encoding)."""
    return len({id(ref.features) for ref in references})


def concept_shots(references: Sequence) -> dict[str, list[int]]:
    """The concepts of a list of shots: ``{name: [shot indices]}`` in order of first appearance."""
    out: dict[str, list[int]] = {}
    for i, ref in enumerate(references):
        out.setdefault(ref.label or DEFAULT_LABEL, []).append(i)
    return out


# ------------------------------------------------------------------ shots


def attach_mask(model, enc: Encoded, mask, mask_value: int | None, shot: int) -> None:
    """Read ``mask`` for shot number ``shot`` at ``model.image_size`` and set ``enc``'s mask fields.

    ``enc.mask`` becomes the (S, S) bool mask (foreground ``> 0``, or ``== mask_value``),
    ``enc.mask_low`` its (h, w) version on the feature grid.

    Raises:
        EmptyMaskError: (a ValueError naming the shot) when no pixel is foreground.
    """
    what = f"reference mask {shot} ({describe(mask)})"
    m = preprocess_mask(
        mask,
        model.image_size,
        mask_value=mask_value,
        device=model.device,
        exif_transpose=model.exif_transpose,
        image_size_hw=enc.orig_size,
        what=what,
    )[0]
    if not bool(m.any()):
        sel = f"== {mask_value}" if mask_value is not None else "> 0"
        raise proto.EmptyMaskError(
            f"{what} is empty: no pixel is foreground ({sel}); every shot needs a non-empty mask"
        )
    enc.mask, enc.mask_source, enc.mask_value = m, mask, mask_value
    enc.mask_low = proto.downsample_mask(m, *enc.features.shape[-2:])


def label_map_shots(model, image, mask, labels, *, label=None, mask_value=None, first: int | None = None) -> list:
    """The shots a label map adds, not yet in the model: one per ``{value: name}`` of ``labels``
    (see :func:`label_values`), all sharing one encoding of ``image``.

    ``first``: the number of the image and map in messages (default: the images the model holds,
    :func:`images_given`), whatever the number of concepts they added.
    """
    first = images_given(model.references) if first is None else first
    if mask is None or label is not None or mask_value is not None:
        raise ValueError(
            "labels= reads the concepts from a label map: pass the map as mask, "
            "and neither label= nor mask_value= with it"
        )
    pairs = label_values(
        mask, labels, exif_transpose=model.exif_transpose, what=f"reference mask {first} ({describe(mask)})"
    )
    enc = model.encode(image, what=f"reference image {first}")
    shots = [dataclasses.replace(enc, label=name) for _, name in pairs]  # features shared, not copied
    for shot, (value, _) in zip(shots, pairs):
        attach_mask(model, shot, mask, value, first)
    return shots


def stack_shots(refs: list[Encoded], debias) -> dict[str, Tensor]:
    """The stacked tensors of k shots (each with a mask) and their prototype.

    Args:
        refs: the shots, all encoded at one size S.
        debias: (k, C, h, w) -> (k, C, h, w), the debiasing of normalised features.

    Returns:
        ``images`` (k, 3, S, S), ``masks`` (k, S, S), ``masks_low`` (k, h, w), ``features``,
        ``features_norm``, ``features_deb`` (k, C, h, w), ``shot_prototypes`` (k, C), ``prototype`` (C,).
    """
    norm = torch.stack([r.features_norm for r in refs])
    deb = debias(norm)
    masks_low = torch.stack([r.mask_low for r in refs])
    return {
        "images": torch.cat([r.image for r in refs]),
        "masks": torch.stack([r.mask for r in refs]),
        "masks_low": masks_low,
        "features": torch.stack([r.features for r in refs]),
        "features_norm": norm,
        "features_deb": deb,
        "shot_prototypes": proto.shot_prototypes(deb, masks_low),
        "prototype": proto.reference_prototype(deb, masks_low),
    }


class ReferenceShots:
    """The shots of one model (``model.shots``) and their cached stacked state.

    Args:
        model: the owner (an :class:`~insid3lab.INSID3`).

    Attributes:
        encoded: the :class:`~insid3lab.model.encoding.Encoded` shots in the order given (the model's
            ``references``).
    """

    def __init__(self, model):
        self.model = model
        self.encoded: list[Encoded] = []
        self._cached: tuple[tuple, Any] | None = None
        self._pending: tuple[Any] | None = None  # the target of set_target, in a 1-tuple

    def add(self, image, mask=None, *, mask_value: int | None = None, label=None, labels=None) -> None:
        """Encode ``image`` and add its shot(s): one, or one per value of a label map with ``labels``."""
        first = images_given(self.encoded)  # messages number the images (and masks) given, not the concepts
        if labels is not None and labels is not False:
            shots = label_map_shots(self.model, image, mask, labels, label=label, mask_value=mask_value, first=first)
        else:
            label = check_label(label)
            shots = [self.model.encode(image, what=f"reference image {first}")]
            shots[0].label = label
            if mask is not None:
                attach_mask(self.model, shots[0], mask, mask_value, first)
        self.encoded.extend(shots)
        self.invalidate()

    @property
    def labels(self) -> list[str]:
        """The concepts' names in order of first appearance."""
        return list(concept_shots(self.encoded))

    def clear(self) -> None:
        """Forget every shot and a pending target."""
        self.encoded = []
        self._pending = None
        self.invalidate()

    def set_target(self, image) -> None:
        """Remember ``image`` for :meth:`target_of` (the authors' ``set_target``)."""
        self._pending = (image,)

    @contextmanager
    def target_of(self, caller: str, target):
        """The authors' sequence: ``target`` when given; else the one from :meth:`set_target`, after
        which every shot is forgotten (so ``set_reference``/``set_target``/``segment`` per episode works)."""
        if target is not None:
            yield target
            return
        if self._pending is None:
            raise RuntimeError(f"{caller}() needs a target: pass it ({caller}(image)) or call set_target(image) first")
        try:
            yield self._pending[0]
        finally:
            self.model.clear_reference()

    def invalidate(self) -> None:
        """Forget the stacked state (the next :meth:`state` recomputes it)."""
        self._cached = None

    def at_current_size(self) -> list[Encoded]:
        """The shots, encoded at the model's current image size.

        The one place where a changed ``image_size`` re-encodes: a shot encoded at another size is
        encoded again from the image (and mask) it was given with, and replaces the old record.
        Shots of one label map share one encoding, before and after.
        """
        model, size = self.model, self.model.image_size
        fresh: dict[int, Encoded] = {}
        for i, ref in enumerate(self.encoded):
            if ref.size != size:
                if id(ref.features) not in fresh:
                    fresh[id(ref.features)] = model.encode(ref.source, what=f"reference image {i}")
                enc = dataclasses.replace(fresh[id(ref.features)], label=ref.label)
                if ref.mask_source is not None:
                    attach_mask(model, enc, ref.mask_source, ref.mask_value, i)
                self.encoded[i] = enc
                self.invalidate()
        return self.encoded

    def _key(self, refs: list[Encoded], *extra) -> tuple:
        """What the stacked state depends on: image size, r in use, the shots themselves."""
        m = self.model
        return (m.image_size, m.positional.effective_components() if m.debias else 0, tuple(map(id, refs)), *extra)

    def _stack(self, refs: list[Encoded]) -> dict[str, Tensor]:
        missing = [i for i, r in enumerate(self.encoded) if r.mask is None]
        if missing:
            raise RuntimeError(f"reference shot(s) {missing} have no mask: pass a mask to set_reference() to segment")
        return stack_shots(refs, self.model.positional.debias)

    def state(self) -> dict[str, Tensor]:
        """:func:`stack_shots` of every shot at the current settings, computed once per settings.

        Raises:
            RuntimeError: no shot, a shot without a mask, or several concepts.
        """
        refs = self.at_current_size()
        if not refs:
            raise RuntimeError("no reference yet: call set_reference(image, mask) before segment()")
        names = self.labels
        if len(names) > 1:
            raise RuntimeError(
                f"{len(names)} concepts are set ({', '.join(names)}) but segment() gives one mask: "
                "call segment_labels(target) for a label map, or segment_instances(target)"
            )
        key = self._key(refs)
        if self._cached is None or self._cached[0] != key:
            self._cached = (key, self._stack(refs))
        return self._cached[1]

    def concept_states(self) -> list[dict[str, Tensor]]:
        """Per concept (in :attr:`labels` order), :func:`stack_shots` over its shots plus ``shots``
        (their indices); computed once per settings. One concept gives :meth:`state`'s own dict."""
        refs = self.at_current_size()
        if not refs:
            raise RuntimeError("no concept yet: call set_reference(image, mask, label=...) before segment_labels()")
        groups = list(concept_shots(refs).values())
        if len(groups) == 1:  # the single-concept state itself (one cache for segment and segment_labels)
            return [{**self.state(), "shots": groups[0]}]
        key = self._key(refs, "concepts")
        if self._cached is None or self._cached[0] != key:
            self._cached = (key, [{**self._stack([refs[i] for i in g]), "shots": g} for g in groups])
        return self._cached[1]
