"""One encoded target against a model's reference state: what ``INSID3.segment`` runs after the backbone.

The steps around :func:`insid3lab.method.pipeline.decode` that need the model's state: the check that
the target was encoded at the model's image size, the stacked reference state, the target's
debiasing, and the inputs a trace keeps (:func:`record_inputs`, shared with the many-concept
decode :meth:`insid3lab.tasks.concepts.ConceptSegmenter.decode`). Nothing is re-encoded here: a target encoded
at another size is an error, and the shots follow the image size in
:meth:`insid3lab.model.references.ReferenceShots.at_current_size`.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from insid3lab.core.preprocess import denormalize
from insid3lab.method import pipeline as method
from insid3lab.method.trace import Recorder, Trace
from insid3lab.model.encoding import Encoded

__all__ = ["check_target_size", "decode_target", "new_recorder", "record_inputs"]


def new_recorder(model, trace: bool, timings: dict | None) -> Recorder:
    """A :class:`~insid3lab.method.trace.Recorder` on ``model``'s device: a :class:`~insid3lab.method.trace.Trace` with the
    model's settings when ``trace``, stage times into ``timings`` (a dict, or None for none)."""
    return Recorder(Trace(settings=model.settings()) if trace else None, timings=timings, device=model.device)


def check_target_size(model, target: Encoded) -> None:
    """Raise a ValueError when ``target`` was encoded at another image size than ``model``'s."""
    if target.size != model.image_size:
        raise ValueError(
            f"the target was encoded at image_size={target.size} but the model is at {model.image_size}: "
            "encode it again with model.encode(image)"
        )


def record_inputs(rec, model, state: dict[str, Tensor], target: Encoded, *, shots: Sequence[int] | None = None) -> None:
    """Give ``rec`` the inputs of one decode: the shots of ``state`` (the model's ``references``
    numbered ``shots``, default all), the encoded ``target`` and the positional basis in use."""
    r = model.positional.effective_components() if model.debias else 0
    svd = model.positional.svd() if r else None
    refs = model.references if shots is None else [model.references[i] for i in shots]
    rec.record(
        reference_images=state["images"],
        reference_masks=state["masks"],
        target_image=target.image[0],
        reference_sizes=[s.orig_size for s in refs],
        target_size=target.orig_size,
        reference_features=state["features"],
        reference_features_norm=state["features_norm"],
        target_features=target.features,
        shot_prototypes=state["shot_prototypes"],
        basis=None if svd is None else svd["U"][:, :r],
        singular_values=None if svd is None else svd["S"],
    )


def decode_target(
    model, target: Encoded, rec: Recorder, *, labels: Tensor | None = None, timings: dict | None = None
) -> Tensor | tuple[Tensor, Trace]:
    """The mask of ``model``'s one concept in ``target`` (from ``model.encode`` at the model's size).

    The reference state and the target's debiasing are timed as the stages ``references`` and
    ``debias``; the rest is :func:`insid3lab.method.pipeline.decode` with the model's ``params``.

    Args:
        labels: the target's (h, w) cluster labels for the current τ when already known.
        timings: a dict that receives ``rec``'s stage times at the end, or None.

    Returns:
        (H, W) bool mask at the target's original size (S x S with ``resize_to_orig_size=False``);
        ``(mask, trace)`` when ``rec`` keeps a trace (its ``timings`` set to the stage times).
    """
    check_target_size(model, target)
    with rec.stage("references"):
        ref = model.shots.state()
    with rec.stage("debias"):
        target_deb = model.positional.debias(target.features_norm)
    record_inputs(rec, model, ref, target)
    mask = method.decode(
        ref["features_deb"],
        ref["masks_low"],
        ref["prototype"],
        target.features_norm,
        target_deb,
        model.params,
        image=denormalize(target.image[0]),
        out_size=target.orig_size if model.resize_to_orig_size else None,
        labels=labels,
        recorder=rec,
    )
    if timings is not None:
        timings.update(rec.timings)
    if rec.trace is None:
        return mask
    rec.trace.timings = rec.timings
    return mask, rec.trace
