"""Every setting of a grid for many concepts: label maps and instances from one encoding per image size.

:func:`segment_labels_grid` is :meth:`~insid3lab.INSID3.segment_labels` for many settings at once,
:func:`segment_instances_grid` :meth:`~insid3lab.INSID3.segment_instances`. The loops are those of
:func:`insid3lab.model.grid.segment_grid` (one encoding per image size, one debiasing at a time,
one tree cut per τ); per (debiasing, τ) the concepts' scores are computed once
(:func:`~insid3lab.tasks.concepts.concept_scores`), per setting the competition at its merge
threshold (:func:`~insid3lab.tasks.concepts.compete`). Each result equals the one of the single
setting.
"""

from __future__ import annotations

from functools import partial

import torch

from insid3lab.method.grid_decode import group_by
from insid3lab.method.trace import NO_RECORD, ConceptsTrace
from insid3lab.model.grid import check_grid, debiasings, encodings, grid_settings, restored_params, shared_work
from insid3lab.stages.refine import bilinear, get_refiner
from insid3lab.tasks.concepts import compete, concept_scores, localise_concepts, split_instances, upsample_labels

__all__ = ["segment_instances_grid", "segment_labels_grid"]


def _settings_record(model, p) -> dict:
    dtype = None if model.autocast_dtype is None else str(model.autocast_dtype).replace("torch.", "")
    return {**p.as_dict(), "autocast_dtype": dtype}


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
    out: list = [None] * len(settings)
    with restored_params(model):
        for enc, idxs in encodings(model, target, settings):
            cuts, upsampled = shared_work(model, enc)
            taus = len({settings[i].tau for i in idxs})
            for g, group in enumerate(debiasings(model, settings, idxs)):
                for i, res in zip(group, _decode_group(model, enc, [settings[i] for i in group], g, cuts, upsampled,
                                                       taus)):  # fmt: skip
                    out[i] = res
    return out


def _decode_group(model, enc, settings, g: int, cuts, upsampled, taus: int) -> list[ConceptsTrace]:
    """Every setting of one debiasing (the model's ``params`` are the first of them): the concepts localised
    once, their scores once per τ, the competition per setting."""
    states, names = model.concept_states(), model.labels
    N = len(states)
    target_deb = model.debias_features(enc.features_norm)
    found = localise_concepts(states, target_deb, [NO_RECORD] * N)
    has = torch.stack([f["candidates"].any() for f in found])
    cut_groups = {(): list(range(len(settings)))}
    if bool(has.any()):
        cut_groups = group_by(range(len(settings)), lambda i: (settings[i].tau, settings[i].clustering))
    out: list = [None] * len(settings)
    for cut, members in cut_groups.items():
        scores = labels = K = None
        if cut:
            labels = cuts.labels(settings[members[0]], taus=taus).to(target_deb.device)
            K = int(labels.max()) + 1
            scores = concept_scores(states, found, has, enc.features_norm, target_deb, labels, K, [NO_RECORD] * N)
        for i in members:
            p = settings[i]
            # overlaps (only a refiner makes them) are resolved by the scores of this (debiasing, τ)
            extra = None if get_refiner(p.refine) is bilinear else (g, cut)
            finish = partial(upsample_labels, num_concepts=N, scores=scores, labels=labels, params=p,
                             image=upsampled.image, out_size=upsampled.out_size)  # fmt: skip
            res = compete(found, has, scores, labels, K, p.merge_threshold, p, names=names,
                          upsample=partial(upsampled, params=p, finish=finish, extra=extra))  # fmt: skip
            res.settings, res.target_image, res.target_size = _settings_record(model, p), enc.image[0], enc.orig_size
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
