"""INSID3, the method: from encoded references and target to a mask, top to bottom like the paper.

:func:`decode` runs every step after the backbone and the positional debiasing, in the
order and the words of the method's description (candidate localisation, clustering,
seed selection and aggregation, finalisation). It is a function of tensors and
:class:`Params`; the state (encoder, positional basis, reference shots) lives in
:class:`~insid3lab.INSID3`, which calls it. The authors' code follows the same steps in
``INSID3.predict_mask`` of their ``models/insid3.py``.

Work that depends only on the target is an input, so that a caller computes it once and
shares it: the target's normalised and debiased features, and its cluster labels
(:func:`cluster_target`; the clustering does not depend on the reference, the number of
SVD components or the merge threshold). :func:`finalize` is the last step on its own: a
caller that changes only the merge threshold or the refiner reruns just that.

The per-concept part of the decode is written as its own functions so that several
concepts can share one target encoding and one clustering (:mod:`insid3lab.method.concepts`):
:func:`localise` (stage 4), :func:`cluster_prototypes` (target only) and
:func:`score_clusters` (stage 6). :func:`decode` is these, in order.
"""

from __future__ import annotations

import torch
from torch import Tensor

from insid3lab.method.params import Params
from insid3lab.method.trace import NO_RECORD, Recorder
from insid3lab.stages import aggregation, matching
from insid3lab.stages.clustering import agglomerative_clustering
from insid3lab.stages.refine import bilinear, get_refiner
from insid3lab.stages.upsampling import upsample_mask

__all__ = [
    "BACKWARD_CHUNK",
    "Params",
    "Recorder",
    "cluster_prototypes",
    "cluster_target",
    "decode",
    "finalize",
    "localise",
    "score_clusters",
    "upsample",
]

#: Target cells per similarity product of the backward matching on the CPU (bounds its
#: memory at 4 * hr*wr * BACKWARD_CHUNK bytes per shot; one product at S = 1024, patch 16).
BACKWARD_CHUNK = 4096


def cluster_target(target_norm: Tensor, params: Params) -> Tensor:
    """The target's cells grouped by average-linkage clustering (stage 5): (C, h, w) -> (h, w) long.

    Uses the original (not debiased) normalised features, ``params.tau`` and ``params.clustering``.
    """
    C, h, w = target_norm.shape
    labels = agglomerative_clustering(target_norm.reshape(C, -1).T, params.tau, method=params.clustering)
    return labels.reshape(h, w).to(target_norm.device)


def decode(
    references_deb: Tensor,
    masks_low: Tensor,
    prototype: Tensor,
    target_norm: Tensor,
    target_deb: Tensor,
    params: Params,
    *,
    image: Tensor | None = None,
    out_size: tuple[int, int] | None = None,
    labels: Tensor | None = None,
    recorder: Recorder = NO_RECORD,
) -> Tensor:
    """The mask of the reference concept in the target, from encoded and debiased features.

    Args:
        references_deb: (k, C, hr, wr) debiased reference features.
        masks_low: (k, hr, wr) bool reference masks on the feature grid (each non-empty).
        prototype: (C,) the reference prototype p (L2-normalised mean of the per-shot prototypes).
        target_norm: (C, h, w) L2-normalised target features.
        target_deb: (C, h, w) debiased target features (``target_norm`` itself when debiasing is off).
        params: the hyper-parameters (``tau``, ``merge_threshold``, ``clustering``, ``refine``,
            ``image_size`` = S).
        image: (3, S, S) float target image in [0, 1] (before ImageNet normalisation), handed
            to the refiner; only needed when ``params.refine`` is not ``"bilinear"``.
        out_size: (H, W) to resize the mask to at the end; None keeps S x S.
        labels: the target's (h, w) cluster labels for ``params.tau`` when already known
            (:func:`cluster_target`); computed here otherwise (only when there are candidates).
        recorder: receives the intermediates and stage times (:class:`~insid3lab.method.trace.Recorder`);
            the default keeps nothing. What is computed does not depend on it.

    Returns:
        (H, W) bool mask (S x S when ``out_size`` is None), on the features' device.

    The backward votes are counted at the forward cells only (0 elsewhere, and so in a
    trace): the other cells can never become candidates.
    """
    h, w = target_norm.shape[-2:]
    rec = recorder
    rec.record(target_features_norm=target_norm)

    # ---- 4. Candidate localisation (forward and backward matching).
    found = localise(references_deb, masks_low, prototype, target_deb, recorder=rec)
    candidates = found["candidates"]

    # No candidate: the prediction is the empty mask.
    if not bool(candidates.any()):
        low = torch.zeros(h, w, dtype=torch.bool, device=candidates.device)
        rec.record(mask_low=low)
        return upsample(low, params, image=image, out_size=out_size, recorder=rec)

    # ---- 5. Clustering of the target's original features: average linkage on the cosine
    # distance, merging while the linkage distance is below 1 - τ.
    with rec.stage("clustering"):
        if labels is None:
            labels = cluster_target(target_norm, params)
        labels = labels.reshape(h, w).to(candidates.device)
        K = int(labels.max()) + 1

    # ---- 6. Seed selection and aggregation.
    P_deb, P_orig = cluster_prototypes(target_norm, target_deb, labels, K, recorder=rec)
    sc = score_clusters(candidates, labels, K, P_deb, P_orig, prototype, found["similarity"], recorder=rec)

    # ---- 7. Finalisation: clusters scoring above the merge threshold, upsampled, refined.
    return finalize(labels, sc["score"], params.merge_threshold, params, image=image, out_size=out_size, recorder=rec)


def localise(
    references_deb: Tensor,
    masks_low: Tensor,
    prototype: Tensor,
    target_deb: Tensor,
    *,
    similarity: Tensor | None = None,
    recorder: Recorder = NO_RECORD,
) -> dict[str, Tensor]:
    """Candidate localisation of one concept (stage 4): forward and backward matching.

    Args:
        references_deb: (k, C, hr, wr) debiased reference features of the concept's shots.
        masks_low: (k, hr, wr) bool reference masks on the feature grid.
        prototype: (C,) the concept's prototype p.
        target_deb: (C, h, w) debiased target features.
        similarity: (h, w) s(x) = <tgt_deb(x), p> when already computed; else computed here.
        recorder: receives the inputs and ``forward_similarity`` ... ``candidates``.

    Returns:
        dict of (h, w) tensors: ``similarity`` (float), ``forward``, ``votes`` (int32),
        ``backward``, ``candidates`` (bool). The backward votes are counted at the forward
        cells only (0 elsewhere): the other cells can never become candidates.
    """
    k = references_deb.shape[0]
    h, w = target_deb.shape[-2:]
    rec = recorder
    rec.record(
        grid=(h, w),
        reference_features_deb=references_deb,
        reference_masks_low=masks_low,
        prototype=prototype,
        target_features_deb=target_deb,
    )

    # Forward: cells similar to the prototype, s(x) = <tgt_deb(x), p>.
    with rec.stage("forward"):
        if similarity is None:
            similarity = matching.forward_similarity(target_deb, prototype)
        # forward = s > 0; if no cell passes, s above its 0.9 quantile.
        forward = matching.forward_mask(similarity)

    # Backward: a shot votes for a target cell whose most similar reference cell lies in that
    # shot's mask; backward = votes >= ceil(k / 2).
    with rec.stage("backward"):
        if target_deb.device.type == "cpu":
            # only the forward cells, in chunks: the same argmax as the whole matrix, less work
            cells = forward.reshape(-1).nonzero()[:, 0]
            votes = matching.backward_votes(
                references_deb, target_deb, masks_low, cells=cells, chunk_size=BACKWARD_CHUNK
            )
        else:
            # every cell at once (no host synchronisation), then the same restriction
            votes = matching.backward_votes(references_deb, target_deb, masks_low) * forward
        backward = matching.backward_mask(votes, k)
        # candidates = forward ∧ backward
        candidates = matching.candidates(forward, backward)
    rec.record(
        forward_similarity=similarity, forward_mask=forward, votes=votes, backward_mask=backward, candidates=candidates
    )
    return {
        "similarity": similarity,
        "forward": forward,
        "votes": votes,
        "backward": backward,
        "candidates": candidates,
    }


def cluster_prototypes(
    target_norm: Tensor, target_deb: Tensor, labels: Tensor, num_clusters: int, *, recorder: Recorder = NO_RECORD
) -> tuple[Tensor, Tensor]:
    """The clusters' prototypes (stage 6, target only): P_deb and P_orig, each (K, C) unit rows.

    Args:
        target_norm, target_deb: (C, h, w) normalised and debiased target features.
        labels: (h, w) long cluster labels in [0, K).
        num_clusters: K.
    """
    C = target_norm.shape[0]
    with recorder.stage("aggregation"):
        P_deb = aggregation.cluster_prototypes(target_deb.reshape(C, -1).T, labels, num_clusters)
        P_orig = aggregation.cluster_prototypes(target_norm.reshape(C, -1).T, labels, num_clusters)
    return P_deb, P_orig


def score_clusters(
    candidates: Tensor,
    labels: Tensor,
    num_clusters: int,
    P_deb: Tensor,
    P_orig: Tensor,
    prototype: Tensor,
    similarity: Tensor,
    *,
    recorder: Recorder = NO_RECORD,
) -> dict[str, Tensor]:
    """Seed selection and aggregation scores of one concept (stage 6).

    Args:
        candidates: (h, w) bool candidate cells (at least one).
        labels: (h, w) long cluster labels; num_clusters: K.
        P_deb, P_orig: (K, C) cluster prototypes (:func:`cluster_prototypes`).
        prototype: (C,) the concept's prototype p; similarity: (h, w) its s(x).

    Returns:
        :func:`insid3lab.stages.aggregation.seed_and_scores`'s dict (``score`` (K,), ``seed`` (), ...).
    """
    with recorder.stage("aggregation"):
        # seed = the cluster overlapping the candidates with the largest <p, P_deb[k]>;
        # score[k] = cross[k] · intra[k] · a_k, a_seed = 1
        sc = aggregation.seed_and_scores(candidates, labels, num_clusters, P_deb, P_orig, prototype, similarity)
    recorder.record(
        cluster_labels=labels,
        num_clusters=num_clusters,
        cluster_prototypes_deb=P_deb,
        cluster_prototypes_orig=P_orig,
        cluster_overlap=sc["overlap"],
        cluster_seed_similarity=sc["seed_similarity"],
        cluster_cross=sc["cross"],
        cluster_intra=sc["intra"],
        cluster_area=sc["area"],
        cluster_score=sc["score"],
        seed=int(sc["seed"]),
    )
    return sc


def finalize(
    labels: Tensor,
    scores: Tensor,
    merge_threshold: float,
    params: Params,
    *,
    image: Tensor | None = None,
    out_size: tuple[int, int] | None = None,
    recorder: Recorder = NO_RECORD,
) -> Tensor:
    """Aggregation, upsampling and refinement: the clusters' scores to the final mask.

    Args:
        labels: (h, w) long cluster labels.
        scores: (K,) cluster scores (``Trace.cluster_score``).
        merge_threshold: cell x is foreground when ``scores[labels[x]] > merge_threshold``.
        params: ``image_size`` (S) and ``refine`` are used.
        image, out_size, recorder: as in :func:`decode`.

    Returns:
        (H, W) bool mask (S x S when ``out_size`` is None).
    """
    with recorder.stage("aggregation"):
        low = aggregation.aggregate(labels, scores, merge_threshold)
    recorder.record(mask_low=low)
    return upsample(low, params, image=image, out_size=out_size, recorder=recorder)


def upsample(
    low: Tensor,
    params: Params,
    *,
    image: Tensor | None = None,
    out_size: tuple[int, int] | None = None,
    recorder: Recorder = NO_RECORD,
) -> Tensor:
    """The (h, w) mask to S x S (bilinear, > 0.5), refined by ``params.refine``, then to ``out_size``.

    Returns:
        (H, W) bool mask (S x S when ``out_size`` is None).
    """
    S = params.image_size
    with recorder.stage("upsampling"):
        up = upsample_mask(low, S, S)
    recorder.record(mask_upsampled=up)
    refiner = get_refiner(params.refine)
    if refiner is not bilinear:
        if image is None:
            raise ValueError(f"refine={params.refine!r} needs the target image: pass image=(3, S, S) in [0, 1]")
        before = up
        with recorder.stage("refinement"):
            up = refiner(before, image.to(before.device)).to(torch.bool)
        if recorder.keeps:
            # a refiner may say which pixels it is allowed to change (the CRF's band)
            band = getattr(refiner, "band", None)
            recorder.record(mask_refined=up, refine_band=None if band is None else band(before))
    with recorder.stage("upsampling"):
        out = up if out_size is None else upsample_mask(up, *out_size)
    recorder.record(mask=out)
    return out
