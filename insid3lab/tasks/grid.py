"""Every setting of a grid for many concepts: label maps and instances from one encoding per image size.

:func:`segment_labels_grid` is :meth:`~insid3lab.INSID3.segment_labels` for many settings at once,
:func:`segment_instances_grid` :meth:`~insid3lab.INSID3.segment_instances`. The loops are those of
:func:`insid3lab.model.grid.segment_grid` (one encoding per image size, one debiasing at a time,
one tree cut per τ), the decode :func:`insid3lab.method.grid_decode.decode_concepts_shared` (per
(debiasing, τ) the concepts' scores once, per setting the competition at its merge threshold).
Each result equals the one of the single setting.
"""

from __future__ import annotations

from insid3lab.method.concepts import split_instances
from insid3lab.method.grid_decode import decode_concepts_shared
from insid3lab.method.trace import ConceptsTrace
from insid3lab.model.grid import check_grid, debiasings, encodings, grid_settings, restored_params, shared_work

__all__ = ["segment_instances_grid", "segment_labels_grid"]


def segment_labels_grid(model, target, grid) -> list[ConceptsTrace]:
    """The many-concept prediction of ``target`` for every setting of ``grid``.

    Args:
        model: an :class:`~insid3lab.INSID3` with its concepts set.
        target: the target image.
        grid: as in :func:`insid3lab.model.grid.segment_grid`.

    Returns:
        one :class:`~insid3lab.method.trace.ConceptsTrace` per setting (``label_map``, ``scores``, ...), as
        ``segment_labels(target, return_trace=True)`` gives it with that setting (without per-concept traces).
    """
    settings = grid_settings(model, grid)
    check_grid(model, settings)
    if not model.references:
        raise RuntimeError("no concept yet: call set_reference(image, mask, label=...) before segment_labels_grid()")
    dtype = None if model.autocast_dtype is None else str(model.autocast_dtype).replace("torch.", "")
    out: list = [None] * len(settings)
    with restored_params(model):
        for enc, idxs in encodings(model, target, settings):
            cuts, upsampled = shared_work(model, enc)
            taus = len({settings[i].tau for i in idxs})
            for g, group in enumerate(debiasings(model, settings, idxs)):
                states = model.shots.concept_states()
                target_deb = model.positional.debias(enc.features_norm)
                results = decode_concepts_shared(states, model.shots.labels, enc.features_norm, target_deb,
                                                 [settings[i] for i in group], cuts, upsampled, taus=taus, key=g)  # fmt: skip
                for i, res in zip(group, results):
                    res.settings = {**settings[i].as_dict(), "autocast_dtype": dtype}
                    res.target_image, res.target_size = enc.image[0], enc.orig_size
                    out[i] = res
    return out


def segment_instances_grid(model, target, grid) -> list[list[dict]]:
    """The instances of every concept in ``target`` for every setting of ``grid``: per setting, the list
    :meth:`~insid3lab.INSID3.segment_instances` gives with that setting (see
    :func:`~insid3lab.tasks.concepts.split_instances`)."""
    done: dict[tuple, list[dict]] = {}
    out = []
    for res in segment_labels_grid(model, target, grid):
        key = (id(res.label_map), res.similarity.cpu().numpy().tobytes())
        if key not in done:
            done[key] = split_instances(res)
        out.append(done[key])
    return out
