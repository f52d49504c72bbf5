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

__all__ = ["decode_concepts", "instance_score", "split_instances"]


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
    found = [
        method.localise(st["features_deb"], st["masks_low"], st["prototype"], target_deb, recorder=rec)
        for st, rec in zip(states, recorders)
    ]
    has = torch.stack([f["candidates"].any() for f in found])
    out = ConceptsTrace(names=names, similarity=torch.stack([f["similarity"] for f in found]), has_candidates=has)

    # ---- 5. and 6. one clustering shared by every concept (only when one has candidates), the scores.
    if bool(has.any()):
        _compete(out, states, found, target_norm, target_deb, params, labels, recorders, recorder)
    else:
        out.label_map_low = torch.zeros(target_norm.shape[-2:], dtype=torch.long, device=target_deb.device)

    # ---- 7. per concept: its cells upsampled and refined on their own; overlaps resolved.
    low, masks = out.label_map_low, []
    for c, rec in enumerate(recorders):
        mask_low = low == c + 1
        rec.record(mask_low=mask_low)
        masks.append(method.upsample(mask_low, params, image=image, out_size=out_size, recorder=rec))
    with recorder.stage("competition"):
        out.label_map = _resolve(torch.stack(masks), out.cluster_scores, out.cluster_labels, tuple(low.shape))
    scores, labels = out.cluster_scores, out.cluster_labels
    for c, name in enumerate(names):
        cells = low == c + 1
        out.scores[name] = float(scores[c][labels][cells].mean()) if bool(cells.any()) else 0.0
    return out


def _compete(out, states, found, target_norm, target_deb, params, labels, recorders, recorder) -> None:
    """Cluster the target once, score every concept's clusters and give each claimed cluster to the
    highest score (ties to the earlier concept); fills ``out``'s cluster fields and ``label_map_low``."""
    h, w = target_norm.shape[-2:]
    device = target_deb.device
    with recorder.stage("clustering"):
        if labels is None:
            labels = method.cluster_target(target_norm, params)
        labels = labels.reshape(h, w).to(device)
        K = int(labels.max()) + 1
    P_deb, P_orig = method.cluster_prototypes(target_norm, target_deb, labels, K, recorder=recorder)
    scores = torch.zeros(len(states), K, dtype=target_deb.dtype, device=device)
    for c, (st, f, rec) in enumerate(zip(states, found, recorders)):
        if bool(out.has_candidates[c]):
            sc = method.score_clusters(
                f["candidates"], labels, K, P_deb, P_orig, st["prototype"], f["similarity"], recorder=rec
            )
            scores[c] = sc["score"]
    with recorder.stage("competition"):
        claims = (scores > params.merge_threshold) & out.has_candidates[:, None]
        ranked = torch.where(claims, scores, torch.full_like(scores, -torch.inf))
        owner = torch.where(claims.any(dim=0), ranked.argmax(dim=0), torch.full((K,), -1, device=device))
        out.label_map_low = (owner + 1)[labels]
    out.cluster_labels, out.num_clusters, out.cluster_scores = labels, K, scores
    out.claims, out.owner = claims, owner


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
