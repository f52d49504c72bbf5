"""Many concepts in one pass: a label map and separate instances from one target encoding and one clustering.

The clustering of the target (stage 5) and the clusters' prototypes depend on the target
alone, so one encoding, one debiasing and one clustering serve every concept; only the
prototype, the forward/backward matching, the seed and the cluster scores are per concept
(:func:`insid3lab.method.pipeline.localise` and :func:`insid3lab.method.pipeline.score_clusters`, the same
functions :func:`insid3lab.method.pipeline.decode` runs for one concept).

Concepts (:mod:`insid3lab.model.references`, whose names this module re-exports)
    A reference shot belongs to the concept named by its ``label`` (shots without a label
    form the concept :data:`DEFAULT_LABEL`). Shots with the same label pool as k-shot for
    that concept, whichever call they came from. A label map with ``labels={value: name}``
    adds one shot per value from a single encoding of the image.

Competition (:func:`decode_concepts`)
    Concept c *claims* cluster k when it has candidates and its aggregation score
    ``score_c[k]`` exceeds the merge threshold (so a concept alone claims exactly the clusters
    of its single-concept mask). A cluster claimed by several concepts goes to the one with
    the highest score; ties go to the earlier concept (lower label). The decision is made per
    cluster on the feature grid; each concept's cells are then upsampled on their own with the
    method's upsampling (bilinear, ``> 0.5``, refiner, resize). Disjoint cells give disjoint
    bilinear masks (the interpolated indicators sum to at most 1), so only a refiner can make
    two masks overlap; such a pixel goes to the concept with the higher score at the pixel's
    feature cell, ties to the earlier concept.

Instances (:func:`split_instances`)
    Each concept's cells on the feature grid are split into 8-connected components; every
    pixel of the concept's full-resolution mask joins the component of the nearest component
    cell. Known limit: touching objects of one concept (8-adjacent cells) stay one instance.
    An instance's score is the mean forward similarity s_c(x) over its cells (see
    :func:`instance_score` for why, and for the alternative it was compared with).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from insid3lab.method import pipeline as method
from insid3lab.method.params import Params
from insid3lab.method.trace import NO_RECORD, ConceptsTrace, Recorder
from insid3lab.model.decoding import check_target_size, new_recorder, record_inputs
from insid3lab.model.references import DEFAULT_LABEL, check_label, concept_shots, label_map_shots, label_values
from insid3lab.tasks.concept_files import write_label_outputs

__all__ = [
    "DEFAULT_LABEL",
    "check_label",
    "concept_shots",
    "compete",
    "concept_scores",
    "decode_concepts",
    "instance_score",
    "label_map_shots",
    "label_values",
    "labels_and_instances",
    "localise_concepts",
    "run_concepts",
    "segment_concepts",
    "split_instances",
    "upsample_labels",
    "write_label_outputs",
]


# ------------------------------------------------------------------ the decode
def decode_concepts(
    states: Sequence[dict[str, Tensor]],
    target_norm: Tensor,
    target_deb: Tensor,
    params: Params,
    *,
    names: Sequence[str] | None = None,
    image: Tensor | None = None,
    out_size: tuple[int, int] | None = None,
    labels: Tensor | None = None,
    recorders: Sequence[Recorder] | None = None,
    recorder: Recorder = NO_RECORD,
) -> ConceptsTrace:
    """The label map of N concepts in one target: one clustering, per-concept matching and scores.

    Args:
        states: per concept, ``features_deb`` (k, C, hr, wr), ``masks_low`` (k, hr, wr) bool and
            ``prototype`` (C,) (what :meth:`~insid3lab.INSID3.concept_states` gives).
        target_norm, target_deb: (C, h, w) normalised and debiased target features.
        params: the hyper-parameters (as in :func:`insid3lab.method.pipeline.decode`).
        names: the concepts' names (default "1", "2", ...).
        image, out_size, labels: as in :func:`insid3lab.method.pipeline.decode`.
        recorders: one :class:`~insid3lab.method.trace.Recorder` per concept for its intermediates.
        recorder: times the shared stages (clustering, cluster prototypes, competition).

    Returns:
        a :class:`~insid3lab.method.trace.ConceptsTrace`; ``label_map`` is the (H, W) int64 prediction
        (S x S when ``out_size`` is None): 0 background, i the i-th concept.
    """
    N = len(states)
    if N == 0:
        raise ValueError("decode_concepts needs at least one concept")
    recorders = [NO_RECORD] * N if recorders is None else list(recorders)
    h, w = target_norm.shape[-2:]
    for rec in recorders:
        rec.record(target_features_norm=target_norm)

    # ---- 4. per concept: forward similarity (the same product as a single concept's, so that a
    # concept's cells do not depend on the others) and backward matching at its forward cells.
    found = localise_concepts(states, target_deb, recorders)
    has = torch.stack([f["candidates"].any() for f in found])

    # ---- 5. one clustering of the target, shared by every concept (only when one has candidates).
    scores = K = None
    if bool(has.any()):
        with recorder.stage("clustering"):
            if labels is None:
                labels = method.cluster_target(target_norm, params)
            labels = labels.reshape(h, w).to(target_deb.device)
            K = int(labels.max()) + 1
        # ---- 6. per concept: seed and scores.
        scores = concept_scores(states, found, has, target_norm, target_deb, labels, K, recorders, recorder)
    # ---- competition and 7. upsampling
    return compete(found, has, scores, labels, K, params.merge_threshold, params, names=names, image=image,
                   out_size=out_size, recorders=recorders, recorder=recorder)  # fmt: skip


def localise_concepts(states: Sequence[dict[str, Tensor]], target_deb: Tensor,
                      recorders: Sequence[Recorder]) -> list[dict[str, Tensor]]:  # fmt: skip
    """Stage 4 per concept: :func:`insid3lab.method.pipeline.localise` of each state (see :func:`decode_concepts`)."""
    return [
        method.localise(st["features_deb"], st["masks_low"], st["prototype"], target_deb, recorder=rec)
        for st, rec in zip(states, recorders)
    ]


def concept_scores(
    states: Sequence[dict[str, Tensor]],
    found: Sequence[dict[str, Tensor]],
    has: Tensor,
    target_norm: Tensor,
    target_deb: Tensor,
    labels: Tensor,
    num_clusters: int,
    recorders: Sequence[Recorder],
    recorder: Recorder = NO_RECORD,
) -> Tensor:
    """(N, K) aggregation scores of every concept (0 for a concept without candidates), one clustering shared.

    Args:
        states, found, has: the concepts' states, their :func:`localise_concepts` and whether each has candidates.
        target_norm, target_deb: (C, h, w) normalised and debiased target features.
        labels: (h, w) long cluster labels; num_clusters: K.
    """
    P_deb, P_orig = method.cluster_prototypes(target_norm, target_deb, labels, num_clusters, recorder=recorder)
    scores = torch.zeros(len(states), num_clusters, dtype=target_deb.dtype, device=target_deb.device)
    for c, (st, f, rec) in enumerate(zip(states, found, recorders)):
        if bool(has[c]):
            sc = method.score_clusters(
                f["candidates"], labels, num_clusters, P_deb, P_orig, st["prototype"], f["similarity"], recorder=rec
            )
            scores[c] = sc["score"]
    return scores


def compete(
    found: Sequence[dict[str, Tensor]],
    has: Tensor,
    scores: Tensor | None,
    labels: Tensor | None,
    num_clusters: int | None,
    merge_threshold: float,
    params: Params,
    *,
    names: Sequence[str] | None = None,
    image: Tensor | None = None,
    out_size: tuple[int, int] | None = None,
    recorders: Sequence[Recorder] | None = None,
    recorder: Recorder = NO_RECORD,
    upsample=None,
) -> ConceptsTrace:
    """The competition for the clusters at ``merge_threshold`` and the label map (see the module docstring).

    Args:
        found, has: :func:`localise_concepts` and whether each concept has candidates.
        scores: (N, K) :func:`concept_scores`, or None when no concept has candidates; labels: (h, w); K.
        params: ``image_size`` and ``refine`` (the upsampling).
        upsample: ``(low label map (h, w) long) -> (H, W) label map`` replacing the per-concept upsampling
            and overlap rule (a cache of it); None computes it.
        names, image, out_size, recorders, recorder: as in :func:`decode_concepts`.

    Returns:
        a :class:`~insid3lab.method.trace.ConceptsTrace`.
    """
    N = len(found)
    names = [str(i + 1) for i in range(N)] if names is None else list(names)
    recorders = [NO_RECORD] * N if recorders is None else list(recorders)
    h, w = found[0]["candidates"].shape
    device = found[0]["candidates"].device
    out = ConceptsTrace(names=names, similarity=torch.stack([f["similarity"] for f in found]), has_candidates=has)
    if scores is not None:
        with recorder.stage("competition"):
            claims = (scores > merge_threshold) & has[:, None]
            ranked = torch.where(claims, scores, torch.full_like(scores, -torch.inf))
            owner = torch.where(claims.any(dim=0), ranked.argmax(dim=0), torch.full((num_clusters,), -1, device=device))
            low = (owner + 1)[labels]
        out.cluster_labels, out.num_clusters, out.cluster_scores = labels, num_clusters, scores
        out.claims, out.owner = claims, owner
    else:
        low = torch.zeros(h, w, dtype=torch.long, device=device)
    out.label_map_low = low

    # ---- 7. per concept: its cells upsampled and refined on their own; overlaps resolved.
    if upsample is not None:
        out.label_map = upsample(low)
    else:
        out.label_map = upsample_labels(low, N, scores, labels, params, image=image, out_size=out_size,
                                        recorders=recorders, recorder=recorder)  # fmt: skip
    for c, name in enumerate(names):
        cells = low == c + 1
        out.scores[name] = float(scores[c][labels][cells].mean()) if bool(cells.any()) else 0.0
    return out


def upsample_labels(
    low: Tensor,
    num_concepts: int,
    scores: Tensor | None,
    labels: Tensor | None,
    params: Params,
    *,
    image: Tensor | None = None,
    out_size: tuple[int, int] | None = None,
    recorders: Sequence[Recorder] | None = None,
    recorder: Recorder = NO_RECORD,
) -> Tensor:
    """The (h, w) low label map to the (H, W) label map: each concept's cells upsampled and refined on their own
    (:func:`insid3lab.method.pipeline.upsample`), overlaps resolved by score (the module docstring's rule)."""
    recorders = [NO_RECORD] * num_concepts if recorders is None else list(recorders)
    masks = []
    for c, rec in enumerate(recorders):
        mask_low = low == c + 1
        rec.record(mask_low=mask_low)
        masks.append(method.upsample(mask_low, params, image=image, out_size=out_size, recorder=rec))
    with recorder.stage("competition"):
        return _resolve(torch.stack(masks), scores, labels, tuple(low.shape))


def _resolve(masks: Tensor, scores: Tensor | None, labels: Tensor | None, grid: tuple[int, int]) -> Tensor:
    """(N, H, W) bool concept masks -> (H, W) long label map; a pixel in several masks goes to the
    concept with the highest score at its feature cell (ties to the earlier)."""
    N, H, W = masks.shape
    label_map = torch.zeros(H, W, dtype=torch.long, device=masks.device)
    for c in range(N):
        label_map.masked_fill_(masks[c], c + 1)
    overlap = masks.sum(dim=0, dtype=torch.uint8) > 1
    if scores is None or not bool(overlap.any()):
        return label_map
    h, w = grid
    ys, xs = overlap.nonzero(as_tuple=True)
    cells = labels[(ys * h) // H, (xs * w) // W]  # the cluster at each pixel's feature cell
    at = scores[:, cells].masked_fill(~masks[:, ys, xs], -torch.inf)  # (N, M)
    label_map[ys, xs] = at.argmax(dim=0) + 1
    return label_map


# ------------------------------------------------------------------ instances
def instance_score(similarity: Tensor, cells: Tensor) -> float:
    """The score of an instance: the mean forward similarity s_c(x) = <tgt_deb(x), p_c> over its cells.

    Compared with the alternative, the mean aggregation score of its cells' clusters, on
    hand-made scenes with two true objects and a look-alike (tests/tasks/test_concepts.py): both
    rank the true objects first, but the cluster score of a true object falls with its
    distance to the seed (intra uses the original, position-carrying features: 1.0 and 0.52
    for two true objects, 0.40 for the look-alike) and objects in one cluster share one
    value, while the mean similarity gives 1.0, 1.0 and 0.70 — a margin twice as wide.

    Args:
        similarity: (h, w) the concept's s(x); cells: (h, w) bool, the instance's cells.
    """
    return float(similarity[cells].mean())


def split_instances(result: ConceptsTrace) -> list[dict]:
    """Separate objects of every concept of a many-concept prediction.

    Rule: the concept's cells on the feature grid (``label_map_low == i``) split into
    8-connected components; every pixel of the concept in ``label_map`` joins the component
    of the nearest component cell (Euclidean on the grid), so the instances partition the
    concept's mask exactly. Touching objects of one concept stay one instance.

    Returns:
        a list, concept by concept and within a concept by decreasing score, of dicts:
        ``label`` (name), ``label_id`` (i in the label map), ``mask`` (H, W) bool CPU tensor,
        ``score`` (float, :func:`instance_score`), ``box`` (x0, y0, x1, y1) in pixels of the
        mask, x1/y1 exclusive (width = x1 - x0).
    """
    from scipy import ndimage

    label_map = result.label_map.detach().cpu().numpy()
    low = result.label_map_low.detach().cpu().numpy()
    H, W = label_map.shape
    h, w = low.shape
    rows, cols = (np.arange(H) * h) // H, (np.arange(W) * w) // W
    out = []
    for c, name in enumerate(result.names):
        cells = low == c + 1
        if not cells.any():
            continue
        comp, n = ndimage.label(cells, structure=np.ones((3, 3), dtype=int))
        nearest = ndimage.distance_transform_edt(comp == 0, return_distances=False, return_indices=True)
        filled = comp[nearest[0], nearest[1]]
        pixel_comp = filled[rows][:, cols]
        concept = label_map == c + 1
        sim = result.similarity[c].detach().cpu()
        found = []
        for j in range(1, n + 1):
            m = concept & (pixel_comp == j)
            if not m.any():
                continue
            ys, xs = np.nonzero(m)
            box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
            score = instance_score(sim, torch.from_numpy(comp == j))
            found.append({"label": name, "label_id": c + 1, "mask": torch.from_numpy(m), "score": score, "box": box})
        out += sorted(found, key=lambda d: -d["score"])
    return out


def labels_and_instances(model, target) -> tuple[Tensor, dict[str, float], list[dict]]:
    """``segment_labels`` and ``segment_instances`` of one target from one pass (one encoding, one clustering).

    Returns:
        ``(label_map, scores, instances)`` as :meth:`~insid3lab.INSID3.segment_labels` and
        :meth:`~insid3lab.INSID3.segment_instances` return them.
    """
    result = segment_concepts(model, "segment_instances", target, False, None)
    return result.label_map, dict(result.scores), split_instances(result)


# ------------------------------------------------------------------ the façade's part
def run_concepts(model, enc, *, trace: bool = False, timings: dict | None = None, labels: Tensor | None = None):
    """Every step after the backbone for all of ``model``'s concepts (what ``segment_labels`` runs).

    Args:
        model: an :class:`~insid3lab.INSID3` with its concepts set.
        enc: the target from ``model.encode`` at the model's image size.
        trace: keep one :class:`~insid3lab.method.trace.Trace` per concept in the result's ``concepts``.
        timings: a dict the stage times are added to (also the result's ``timings``), or None.
        labels: the target's (h, w) cluster labels for the current τ, when already known.

    Returns:
        a :class:`~insid3lab.method.trace.ConceptsTrace`.
    """
    from insid3lab.core.preprocess import denormalize

    check_target_size(model, enc)
    shared = timings if timings is not None else ({} if trace else None)
    main = new_recorder(model, False, shared)
    with main.stage("references"):
        states = model.concept_states()
    names = model.labels
    with main.stage("debias"):
        target_deb = model.debias_features(enc.features_norm)
    recorders = []
    for st in states:
        rec = new_recorder(model, trace, shared)
        record_inputs(rec, model, st, enc, shots=st["shots"])
        recorders.append(rec)
    out = decode_concepts(
        states,
        enc.features_norm,
        target_deb,
        model.params,
        names=names,
        image=denormalize(enc.image[0]),
        out_size=enc.orig_size if model.resize_to_orig_size else None,
        labels=labels,
        recorders=recorders,
        recorder=main,
    )
    out.settings, out.target_image, out.target_size = model.settings(), enc.image[0], enc.orig_size
    out.concepts = [rec.trace for rec in recorders] if trace else []
    out.timings = dict(shared or {})
    return out


def segment_concepts(model, caller: str, target, trace: bool, timings: dict | None) -> ConceptsTrace:
    """Encode ``target`` once, then :func:`run_concepts` (what ``segment_labels``/``segment_instances`` run).

    ``caller`` names the method in the error raised when ``model`` has no shot; ``timings`` (a dict,
    or None) receives the stage times, ``preprocess`` and ``features`` first.
    """
    if not model.references:
        raise RuntimeError(f"no concept yet: call set_reference(image, mask, label=...) before {caller}()")
    shared = {} if (timings is not None or trace) else None
    enc = model.encode(target, what="target image", recorder=new_recorder(model, False, shared))
    result = run_concepts(model, enc, trace=trace, timings=shared)
    if timings is not None:
        timings.update(result.timings)
    return result
