"""Many concepts over one model: a label map and separate instances from one target encoding and one clustering.

:class:`ConceptSegmenter` runs the many-concept decode (:func:`insid3lab.method.concepts.decode_concepts`:
the shared clustering, the competition for the clusters, the instances) over a model's concepts.

Concepts (the model's reference shots, :mod:`insid3lab.model.references`)
    A reference shot belongs to the concept named by its ``label`` (shots without a label
    form the concept :data:`~insid3lab.model.references.DEFAULT_LABEL`). Shots with the same
    label pool as k-shot for that concept, whichever call they came from. A label map with
    ``labels={value: name}`` adds one shot per value from a single encoding of the image.

The model's short forms ``model.segment_labels``, ``model.segment_instances`` and ``model.labels``
(:mod:`insid3lab.tasks.shortcuts`) are this object's methods.
"""

from __future__ import annotations

from torch import Tensor

from insid3lab.core.preprocess import denormalize
from insid3lab.method.concepts import decode_concepts, split_instances
from insid3lab.method.trace import ConceptsTrace
from insid3lab.model.decoding import check_target_size, new_recorder, record_inputs
from insid3lab.model.encoding import Encoded

__all__ = ["ConceptSegmenter"]


class ConceptSegmenter:
    """Label maps and instances of every concept of ``model`` (its reference shots, by ``label``).

    Args:
        model: an :class:`~insid3lab.INSID3`; its concepts are read at every call (set them with
            ``model.set_reference(image, mask, label=...)`` or a label map and ``labels=``).

    Example:
        >>> concepts = ConceptSegmenter(model)
        >>> label_map, scores = concepts.segment_labels("target.jpg")  # 0 background, i = labels[i - 1]
    """

    def __init__(self, model):
        self.model = model

    @property
    def labels(self) -> list[str]:
        """The concepts' names in label order (label i of :meth:`segment_labels` is ``labels[i - 1]``)."""
        return self.model.shots.labels

    def segment_labels(self, target=None, *, return_trace: bool = False, timings: dict[str, float] | None = None):
        """Segment every concept at once: one target encoding and one clustering shared by all.

        Returns ``(label_map, scores)``: (H, W) int64 (0 background, i the concept ``labels[i - 1]``) and
        ``{name: mean aggregation score of its cells}``; with ``return_trace`` also a
        :class:`~insid3lab.method.trace.ConceptsTrace`. ``target`` and ``timings`` as in ``model.segment``.
        The competition rule is in :mod:`insid3lab.method.concepts`.
        """
        result = self._segment("segment_labels", target, return_trace, timings)
        out = (result.label_map, dict(result.scores))
        return (*out, result) if return_trace else out

    def segment_instances(self, target=None, *, return_trace: bool = False):
        """Separate objects of every concept: a list of ``{label, label_id, mask, score, box}``.

        See :func:`insid3lab.method.concepts.split_instances` for the rule (connected components on the
        feature grid) and the score; with ``return_trace``, ``(instances, trace)``.
        """
        result = self._segment("segment_instances", target, return_trace, None)
        instances = split_instances(result)
        return (instances, result) if return_trace else instances

    def labels_and_instances(self, target) -> tuple[Tensor, dict[str, float], list[dict]]:
        """:meth:`segment_labels` and :meth:`segment_instances` of one target from one pass (one encoding,
        one clustering): ``(label_map, scores, instances)`` as they return them."""
        result = self._segment("segment_instances", target, False, None)
        return result.label_map, dict(result.scores), split_instances(result)

    def decode(
        self, target: Encoded, *, trace: bool = False, timings: dict | None = None, labels: Tensor | None = None
    ) -> ConceptsTrace:
        """Every step after the backbone for all concepts, for a target from ``model.encode`` at the model's size.

        Args:
            target: the encoded target.
            trace: keep one :class:`~insid3lab.method.trace.Trace` per concept in the result's ``concepts``.
            timings: a dict the stage times are added to (also the result's ``timings``), or None.
            labels: the target's (h, w) cluster labels for the current τ, when already known.
        """
        model = self.model
        check_target_size(model, target)
        shared = timings if timings is not None else ({} if trace else None)
        main = new_recorder(model, False, shared)
        with main.stage("references"):
            states = model.shots.concept_states()
        with main.stage("debias"):
            target_deb = model.positional.debias(target.features_norm)
        recorders = []
        for st in states:
            rec = new_recorder(model, trace, shared)
            record_inputs(rec, model, st, target, shots=st["shots"])
            recorders.append(rec)
        out = decode_concepts(
            states,
            target.features_norm,
            target_deb,
            model.params,
            names=self.labels,
            image=denormalize(target.image[0]),
            out_size=target.orig_size if model.resize_to_orig_size else None,
            labels=labels,
            recorders=recorders,
            recorder=main,
        )
        out.settings, out.target_image, out.target_size = model.settings(), target.image[0], target.orig_size
        out.concepts = [rec.trace for rec in recorders] if trace else []
        out.timings = dict(shared or {})
        return out

    def _segment(self, caller: str, target, trace: bool, timings: dict | None) -> ConceptsTrace:
        """Encode the target once (the one from ``model.set_target`` when None), then :meth:`decode`.

        ``caller`` names the method in the error raised when the model has no shot; ``timings`` (a dict,
        or None) receives the stage times, ``preprocess`` and ``features`` first.
        """
        model = self.model
        with model.shots.target_of(caller, target) as image:
            if not model.references:
                raise RuntimeError(f"no concept yet: call set_reference(image, mask, label=...) before {caller}()")
            shared = {} if (timings is not None or trace) else None
            enc = model.encode(image, what="target image", recorder=new_recorder(model, False, shared))
            result = self.decode(enc, trace=trace, timings=shared)
        if timings is not None:
            timings.update(result.timings)
        return result
