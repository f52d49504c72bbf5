"""Many concepts in one target: one clustering shared by every concept, a competition for the clusters, instances.

The clustering of the target (stage 5) and the clusters' prototypes depend on the target
alone, so one clustering serves every concept; only the prototype, the forward/backward
matching, the seed and the cluster scores are per concept (:func:`insid3lab.method.pipeline.localise`
and :func:`insid3lab.method.pipeline.score_clusters`, the same functions
:func:`insid3lab.method.pipeline.decode` runs for one concept). Everything here is a function of
tensors and :class:`~insid3lab.method.params.Params`; the task object that feeds it a model's
concepts is :class:`insid3lab.tasks.concepts.ConceptSegmenter`.

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

__all__ = [
    "claim",
    "concept_scores",
    "decode_concepts",
    "finish",
    "instance_score",
    "localise_concepts",
    "new_result",
    "split_instances",
    "upsample_labels",
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
            ``prototype`` (C,) (what ``model.shots.concept_states()`` gives).
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
    names = [str(i + 1) for i in range(N)] if names is None else list(names)
    recorders = [NO_RECORD] * N if recorders is None else list(recorders)
    for rec in recorders:
        rec.record(target_features_norm=target_norm)

    # ---- 4. per concept: forward similarity (the same product as a single concept's, so that a
    # concept's cells do not depend on the others) and backward matching at its forward cells.
    found = localise_concepts(states, target_deb, recorders)
    out = new_result(names, found)

    # ---- 5. and 6. one clustering shared by every concept (only when one has candidates), the scores.
    if bool(out.has_candidates.any()):
        h, w = target_norm.shape[-2:]
        with recorder.stage("clustering"):
            if labels is None:
                labels = method.cluster_target(target_norm, params)
            labels = labels.reshape(h, w).to(target_deb.device)
            K = int(labels.max()) + 1
        scores = concept_scores(states, found, out.has_candidates, target_norm, target_deb, labels, K, recorders,
                                recorder)  # fmt: skip
        claim(out, scores, labels, params.merge_threshold, recorder)
    else:
        out.label_map_low = torch.zeros(target_norm.shape[-2:], dtype=torch.long, device=target_deb.device)

    # ---- 7. per concept: its cells upsampled and refined on their own; overlaps resolved.
    return finish(out, params, image=image, out_size=out_size, recorders=recorders, recorder=recorder)


def localise_concepts(states: Sequence[dict[str, Tensor]], target_deb: Tensor,
                      recorders: Sequence[Recorder] | None = None) -> list[dict[str, Tensor]]:  # fmt: skip
    """Stage 4 of every concept: :func:`insid3lab.method.pipeline.localise` of each state (as in :func:`decode_concepts`)."""
    recorders = [NO_RECORD] * len(states) if recorders is None else recorders
    return [
        method.localise(st["features_deb"], st["masks_low"], st["prototype"], target_deb, recorder=rec)
        for st, rec in zip(states, recorders)
    ]


def new_result(names: Sequence[str], found: Sequence[dict[str, Tensor]]) -> ConceptsTrace:
    """The :class:`~insid3lab.method.trace.ConceptsTrace` of :func:`localise_concepts`' results (similarities and
    whether each concept has candidates), before the competition."""
    has = torch.stack([f["candidates"].any() for f in found])
    return ConceptsTrace(
        names=list(names), similarity=torch.stack([f["similarity"] for f in found]), has_candidates=has
    )


def concept_scores(
    states: Sequence[dict[str, Tensor]],
    found: Sequence[dict[str, Tensor]],
    has: Tensor,
    target_norm: Tensor,
    target_deb: Tensor,
    labels: Tensor,
    num_clusters: int,
    recorders: Sequence[Recorder] | None = None,
    recorder: Recorder = NO_RECORD,
) -> Tensor:
    """(N, K) aggregation scores of every concept for one clustering (0 for a concept without candidates).

    Args:
        states, found, has: the concepts' states, their :func:`localise_concepts` and whether each has candidates.
        target_norm, target_deb: (C, h, w) normalised and debiased target features.
        labels: (h, w) long cluster labels; num_clusters: K.
    """
    recorders = [NO_RECORD] * len(states) if recorders is None else recorders
    P_deb, P_orig = method.cluster_prototypes(target_norm, target_deb, labels, num_clusters, recorder=recorder)
    scores = torch.zeros(len(states), num_clusters, dtype=target_deb.dtype, device=target_deb.device)
    for c, (st, f, rec) in enumerate(zip(states, found, recorders)):
        if bool(has[c]):
            sc = method.score_clusters(
                f["candidates"], labels, num_clusters, P_deb, P_orig, st["prototype"], f["similarity"], recorder=rec
            )
            scores[c] = sc["score"]
    return scores


def claim(out: ConceptsTrace, scores: Tensor, labels: Tensor, merge_threshold: float,
          recorder: Recorder = NO_RECORD) -> None:  # fmt: skip
    """The competition: every claimed cluster to the highest score (ties to the earlier concept); fills ``out``'s
    cluster fields and ``label_map_low`` from the (N, K) ``scores`` and the (h, w) ``labels``."""
    K = scores.shape[1]
    with recorder.stage("competition"):
        claims = (scores > merge_threshold) & out.has_candidates[:, None]
        ranked = torch.where(claims, scores, torch.full_like(scores, -torch.inf))
        owner = torch.where(claims.any(dim=0), ranked.argmax(dim=0), torch.full((K,), -1, device=scores.device))
        out.label_map_low = (owner + 1)[labels]
    out.cluster_labels, out.num_clusters, out.cluster_scores = labels, K, scores
    out.claims, out.owner = claims, owner


def finish(
    out: ConceptsTrace,
    params: Params,
    *,
    image: Tensor | None = None,
    out_size: tuple[int, int] | None = None,
    recorders: Sequence[Recorder] | None = None,
    recorder: Recorder = NO_RECORD,
    upsample=None,
) -> ConceptsTrace:
    """Stage 7 of every concept: ``out.label_map`` from ``out.label_map_low`` (:func:`upsample_labels`, or
    ``upsample(low)`` when given, e.g. a cache of it) and each concept's mean score ``out.scores``; returns ``out``."""
    low = out.label_map_low
    if upsample is not None:
        out.label_map = upsample(low)
    else:
        out.label_map = upsample_labels(low, out.cluster_scores, out.cluster_labels, params, concepts=len(out.names),
                                        image=image, out_size=out_size, recorders=recorders, recorder=recorder)  # fmt: skip
    scores, labels = out.cluster_scores, out.cluster_labels
    for c, name in enumerate(out.names):
        cells = low == c + 1
        out.scores[name] = float(scores[c][labels][cells].mean()) if bool(cells.any()) else 0.0
    return out


def upsample_labels(
    low: Tensor,
    scores: Tensor | None,
    labels: Tensor | None,
    params: Params,
    *,
    concepts: int | None = None,
    image: Tensor | None = None,
    out_size: tuple[int, int] | None = None,
    recorders: Sequence[Recorder] | None = None,
    recorder: Recorder = NO_RECORD,
) -> Tensor:
    """The (h, w) low label map to the (H, W) one: each concept's cells upsampled and refined on their own
    (:func:`insid3lab.method.pipeline.upsample`), a pixel in two masks to the higher score at its cell.

    ``concepts``: N (default ``len(recorders)``); ``scores`` (N, K) and ``labels`` (h, w) decide overlaps.
    """
    recorders = [NO_RECORD] * concepts if recorders is None else list(recorders)
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
    label_map = result.label_map.detach().cpu().numpy()
    low = result.label_map_low.detach().cpu().numpy()
    H, W = label_map.shape
    h, w = low.shape
    rows, cols = (np.arange(H) * h) // H, (np.arange(W) * w) // W
    out = []
    for c, name in enumerate(result.names):
        cells = low == c + 1
        if cells.any():
            found = _concept_instances(cells, label_map == c + 1, rows, cols, result.similarity[c], name, c + 1)
            out += sorted(found, key=lambda d: -d["score"])
    return out


def _concept_instances(cells, concept, rows, cols, similarity: Tensor, name: str, label_id: int) -> list[dict]:
    """The instances of one concept: its (h, w) ``cells`` split into 8-connected components, every pixel
    of its (H, W) ``concept`` mask given to the nearest component (``rows``/``cols``: pixel -> cell)."""
    from scipy import ndimage

    comp, n = ndimage.label(cells, structure=np.ones((3, 3), dtype=int))
    nearest = ndimage.distance_transform_edt(comp == 0, return_distances=False, return_indices=True)
    filled = comp[nearest[0], nearest[1]]
    pixel_comp = filled[rows][:, cols]
    sim = similarity.detach().cpu()
    found = []
    for j in range(1, n + 1):
        m = concept & (pixel_comp == j)
        if not m.any():
            continue
        ys, xs = np.nonzero(m)
        box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
        score = instance_score(sim, torch.from_numpy(comp == j))
        found.append({"label": name, "label_id": label_id, "mask": torch.from_numpy(m), "score": score, "box": box})
    return found
