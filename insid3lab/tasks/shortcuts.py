"""The short forms: the task objects' methods as methods of :class:`~insid3lab.model.insid3.INSID3`, in one table.

A task object is built over a model (``ConceptSegmenter(model)``, ``Tracker(model)``,
``KeypointMatcher(model)``); each short form below builds it and calls it, in one line, with the
same signature, defaults and results:

=========================================  ===================================================================
``model.segment_labels(target, ...)``      ``ConceptSegmenter(model).segment_labels(target, ...)``
``model.segment_instances(target, ...)``   ``ConceptSegmenter(model).segment_instances(target, ...)``
``model.labels``                           ``ConceptSegmenter(model).labels``
``model.track(frames, first_mask, ...)``   ``Tracker(model, memory=, min_confidence=).track(frames, first_mask, ...)``
``model.match(ref_points, target, ...)``   ``KeypointMatcher(model).match(ref_points, target, ...)``
=========================================  ===================================================================

The model lies below the tasks (it never imports them), so the short forms are attached to the
class here, when :mod:`insid3lab.tasks` is imported; ``insid3lab.INSID3`` is the class with them
(the root resolves it through :mod:`insid3lab.tasks`). :data:`SHORT_FORMS` is the table.
"""

from __future__ import annotations

from insid3lab.model.insid3 import INSID3
from insid3lab.tasks.concepts import ConceptSegmenter
from insid3lab.tasks.matching import KeypointMatcher
from insid3lab.tasks.tracking import Tracker

__all__ = ["SHORT_FORMS"]


def segment_labels(self, target=None, *, return_trace: bool = False, timings: dict[str, float] | None = None):
    """Short form of :meth:`ConceptSegmenter(model).segment_labels <insid3lab.tasks.concepts.ConceptSegmenter.segment_labels>`:
    ``(label_map, scores)`` of every concept in ``target`` ((H, W) int64, 0 background, i = ``labels[i - 1]``)."""
    return ConceptSegmenter(self).segment_labels(target, return_trace=return_trace, timings=timings)


def segment_instances(self, target=None, *, return_trace: bool = False):
    """Short form of :meth:`ConceptSegmenter(model).segment_instances <insid3lab.tasks.concepts.ConceptSegmenter.segment_instances>`:
    a list of ``{label, label_id, mask, score, box}``, one per object of every concept."""
    return ConceptSegmenter(self).segment_instances(target, return_trace=return_trace)


def labels(self) -> list[str]:
    """Short form of :attr:`ConceptSegmenter(model).labels <insid3lab.tasks.concepts.ConceptSegmenter.labels>`:
    the concepts' names in label order (label i of ``segment_labels`` is ``labels[i - 1]``)."""
    return ConceptSegmenter(self).labels


def track(
    self,
    frames,
    first_mask,
    *,
    memory: int = Tracker.MEMORY,
    min_confidence: float = Tracker.MIN_CONFIDENCE,
    labels=False,
    mask_value: int | None = None,
    progress: bool | None = None,
):
    """Short form of :meth:`Tracker(model, memory=, min_confidence=).track <insid3lab.tasks.tracking.Tracker.track>`:
    a generator of one (H, W) bool mask per frame (uint8 label maps with ``labels=True``), the first being
    ``first_mask``; the references of ``set_reference`` are left alone."""
    return Tracker(self, memory=memory, min_confidence=min_confidence).track(
        frames, first_mask, labels=labels, mask_value=mask_value, progress=progress
    )


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
    """Short form of :meth:`KeypointMatcher(model).match <insid3lab.tasks.matching.KeypointMatcher.match>`:
    the (N, 2) (x, y) target pixels where the reference keypoints ``ref_points`` land."""
    return KeypointMatcher(self).match(
        ref_points, target, reference_image, debiased, svd_components=svd_components, return_maps=return_maps
    )


#: name on the model -> the short form (a function of the model, or a property).
SHORT_FORMS = {
    "segment_labels": segment_labels,
    "segment_instances": segment_instances,
    "labels": property(labels),
    "track": track,
    "match": match,
}

for _name, _form in SHORT_FORMS.items():
    _fn = _form.fget if isinstance(_form, property) else _form
    _fn.__qualname__ = f"INSID3.{_name}"
    setattr(INSID3, _name, _form)
