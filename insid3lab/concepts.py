"""Many concepts in one pass: a label map and separate instances from one target encoding and one clustering.

The clustering of the target (stage 5) and the clusters' prototypes depend on the target
alone, so one encoding, one debiasing and one clustering serve every concept; only the
prototype, the forward/backward matching, the seed and the cluster scores are per concept
(:func:`insid3lab.method.localise` and :func:`insid3lab.method.score_clusters`, the same
functions :func:`insid3lab.method.decode` runs for one concept).

Concepts
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

import dataclasses
import numbers
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from . import method
from .encoding import describe
from .params import Params
from .trace import NO_RECORD, ConceptsTrace, Recorder, Trace

__all__ = [
    "DEFAULT_LABEL",
    "check_label",
    "concept_shots",
    "decode_concepts",
    "instance_score",
    "label_map_shots",
    "label_values",
    "labels_and_instances",
    "run_concepts",
    "segment_concepts",
    "split_instances",
    "write_label_outputs",
]

#: The name of the concept formed by shots given without a label.
DEFAULT_LABEL = "object"


# ------------------------------------------------------------------ references
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

    from .preprocess import open_image

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
    return arr


def label_values(mask, labels, *, exif_transpose: bool = True, what: str = "reference mask") -> list[tuple[int, str]]:
    """The (value, name) pairs a label map adds, in increasing value order.

    Args:
        mask: the label map (anything :func:`~insid3lab.preprocess.preprocess_mask` reads).
        labels: ``{value: name}`` (values non-zero integers, names distinct non-empty strings),
            or ``"all"``/``True`` for every non-zero value present, named by its value (``"3"``).

    Raises:
        ValueError: a label map without a non-zero value, a value that is not a non-zero integer,
            one name given for two values, a bad name.
    """
    if labels is True or labels == "all":
        arr = _raw_label_map(mask, exif_transpose, what)
        values = [v for v in np.unique(arr) if v != 0]
        if not values:
            raise ValueError(f"{what} has no non-zero value: a label map needs at least one labelled region")
        bad = [v for v in values if float(v) != int(v)]
        if bad:
            raise ValueError(f"{what}: labels='all' needs integer values; found {bad[0]!r}")
        return [(int(v), str(int(v))) for v in values]
    if not isinstance(labels, dict) or not labels:
        raise ValueError(
            f"labels={labels!r}: pass a non-empty dict {{value: name}}, or 'all' (or True) for every value"
        )
    out, seen = [], {}
    for value, name in labels.items():
        if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value == 0:
            raise ValueError(
                f"labels: key {value!r} must be a non-zero integer value of the label map (0 is background)"
            )
        name = check_label(name, f"labels[{value}]")
        if name is None:
            raise ValueError(f"labels[{value}]: a concept name must be a non-empty string")
        if name in seen:
            raise ValueError(
                f"labels: the name {name!r} is given for values {seen[name]} and {int(value)}; "
                "one name per value in a label map (to pool two regions, pass the map twice with mask_value)"
            )
        seen[name] = int(value)
        out.append((int(value), name))
    return sorted(out)


def concept_shots(references: Sequence) -> dict[str, list[int]]:
    """The concepts of a list of shots: ``{name: [shot indices]}`` in order of first appearance."""
    out: dict[str, list[int]] = {}
    for i, ref in enumerate(references):
        out.setdefault(ref.label or DEFAULT_LABEL, []).append(i)
    return out


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
        params: the hyper-parameters (as in :func:`insid3lab.method.decode`).
        names: the concepts' names (default "1", "2", ...).
        image, out_size, labels: as in :func:`insid3lab.method.decode`.
        recorders: one :class:`~insid3lab.trace.Recorder` per concept for its intermediates.
        recorder: times the shared stages (clustering, cluster prototypes, competition).

    Returns:
        a :class:`~insid3lab.trace.ConceptsTrace`; ``label_map`` is the (H, W) int64 prediction
        (S x S when ``out_size`` is None): 0 background, i the i-th concept.
    """
    N = len(states)
    if N == 0:
        raise ValueError("decode_concepts needs at least one concept")
    names = [str(i + 1) for i in range(N)] if names is None else list(names)
    recorders = [NO_RECORD] * N if recorders is None else list(recorders)
    h, w = target_norm.shape[-2:]
    device = target_deb.device
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

    # ---- 5. one clustering of the target, shared by every concept (only when one has candidates).
    scores = None
    if bool(has.any()):
        with recorder.stage("clustering"):
            if labels is None:
                labels = method.cluster_target(target_norm, params)
            labels = labels.reshape(h, w).to(device)
            K = int(labels.max()) + 1
        P_deb, P_orig = method.cluster_prototypes(target_norm, target_deb, labels, K, recorder=recorder)
        # ---- 6. per concept: seed and scores.
        scores = torch.zeros(N, K, dtype=target_deb.dtype, device=device)
        for c, (st, f, rec) in enumerate(zip(states, found, recorders)):
            if bool(has[c]):
                sc = method.score_clusters(
                    f["candidates"], labels, K, P_deb, P_orig, st["prototype"], f["similarity"], recorder=rec
                )
                scores[c] = sc["score"]
        # ---- competition: claimed clusters go to the highest score, ties to the earlier concept.
        with recorder.stage("competition"):
            claims = (scores > params.merge_threshold) & has[:, None]
            ranked = torch.where(claims, scores, torch.full_like(scores, -torch.inf))
            owner = torch.where(claims.any(dim=0), ranked.argmax(dim=0), torch.full((K,), -1, device=device))
            low = (owner + 1)[labels]
        out.cluster_labels, out.num_clusters, out.cluster_scores = labels, K, scores
        out.claims, out.owner = claims, owner
    else:
        low = torch.zeros(h, w, dtype=torch.long, device=device)
    out.label_map_low = low

    # ---- 7. per concept: its cells upsampled and refined on their own; overlaps resolved.
    masks = []
    for c, rec in enumerate(recorders):
        mask_low = low == c + 1
        rec.record(mask_low=mask_low)
        masks.append(method.upsample(mask_low, params, image=image, out_size=out_size, recorder=rec))
    with recorder.stage("competition"):
        out.label_map = _resolve(torch.stack(masks), scores, labels, (h, w))
    for c, name in enumerate(names):
        cells = low == c + 1
        out.scores[name] = float(scores[c][labels][cells].mean()) if bool(cells.any()) else 0.0
    return out


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
    hand-made scenes with two true objects and a look-alike (tests/test_concepts.py): both
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


# ------------------------------------------------------------------ outputs
def write_label_outputs(
    label_map, instances: Sequence[dict], names: Sequence[str], out_dir, stem: str, *, image=None
) -> dict[str, Path]:
    """Write a many-concept prediction: colour label map, instances JSON and an overlay with a legend.

    Args:
        label_map: (H, W) integer label map (0 background, i = ``names[i - 1]``).
        instances: from :meth:`~insid3lab.INSID3.segment_instances` (``label``, ``mask``, ``score``, ``box``).
        names: the concepts (``model.labels``).
        out_dir: folder (created when missing); stem: file name stem.
        image: the target image (path, PIL, array) to draw the overlay on; without it the overlay
            shows the label map's colours alone.

    Files (encoded by :func:`insid3lab.label_files.label_files`, which describes their content):
        ``<stem>_labels.png`` (palette PNG, pixel values = labels), ``<stem>_instances.json``
        (COCO-style RLE) and ``<stem>_overlay.png``.

    Returns:
        ``{"labels": path, "instances": path, "overlay": path}``.
    """
    from .label_files import label_files

    if not isinstance(stem, str) or not stem or os.sep in stem:
        raise ValueError(f"stem={stem!r}: must be a non-empty file name without a folder")
    files = label_files(label_map, instances, names, image=image)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ext = {"labels": "png", "instances": "json", "overlay": "png"}
    paths = {k: out / f"{stem}_{k}.{ext[k]}" for k in files}
    for k, data in files.items():
        paths[k].write_bytes(data)
    return paths


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
        trace: keep one :class:`~insid3lab.trace.Trace` per concept in the result's ``concepts``.
        timings: a dict the stage times are added to (also the result's ``timings``), or None.
        labels: the target's (h, w) cluster labels for the current τ, when already known.

    Returns:
        a :class:`~insid3lab.trace.ConceptsTrace`.
    """
    from .preprocess import denormalize

    if enc.size != model.image_size:
        raise ValueError(
            f"the target was encoded at image_size={enc.size} but the model is at {model.image_size}: "
            "encode it again with model.encode(image)"
        )
    shared = timings if timings is not None else ({} if trace else None)
    main = Recorder(None, timings=shared, device=model.device)
    with main.stage("references"):
        states = model.concept_states()
    names = model.labels
    with main.stage("debias"):
        target_deb = model.debias_features(enc.features_norm)
    r = model.effective_components() if model.debias else 0
    svd = model.positional_svd() if r else None
    recorders = []
    for st in states:
        rec = Recorder(Trace(settings=model.settings()) if trace else None, timings=shared, device=model.device)
        rec.record(
            reference_images=st["images"],
            reference_masks=st["masks"],
            target_image=enc.image[0],
            reference_sizes=[model.references[i].orig_size for i in st["shots"]],
            target_size=enc.orig_size,
            reference_features=st["features"],
            reference_features_norm=st["features_norm"],
            target_features=enc.features,
            shot_prototypes=st["shot_prototypes"],
            basis=None if svd is None else svd["U"][:, :r],
            singular_values=None if svd is None else svd["S"],
        )
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


def label_map_shots(model, image, mask, labels, *, label=None, mask_value=None) -> list:
    """The shots a label map adds (one per value, one encoding of ``image`` shared), not yet attached."""
    if mask is None or label is not None or mask_value is not None:
        raise ValueError(
            "labels= reads the concepts from a label map: pass the map as mask, and neither label= nor mask_value= with it"
        )
    first = len(model.references)
    pairs = label_values(
        mask, labels, exif_transpose=model.exif_transpose, what=f"reference mask {first} ({describe(mask)})"
    )
    enc = model.encode(image, what=f"reference image {first}")
    shots = [dataclasses.replace(enc, label=name) for _, name in pairs]  # features shared, not copied
    for i, (shot, (value, _)) in enumerate(zip(shots, pairs)):
        model._attach_mask(shot, mask, value, first + i)
    return shots


def segment_concepts(model, caller: str, target, trace: bool, timings: dict | None) -> ConceptsTrace:
    """Preprocess and encode ``target`` once, then :func:`run_concepts` (``segment_labels``/``segment_instances``)."""
    from .preprocess import preprocess_image

    with model._target_of(caller, target) as image:
        if not model.references:
            raise RuntimeError(f"no concept yet: call set_reference(image, mask, label=...) before {caller}()")
        shared = {} if (timings is not None or trace) else None
        rec = Recorder(None, timings=shared, device=model.device)
        with rec.stage("preprocess"):
            x, orig = preprocess_image(
                image, model.image_size, device=model.device, exif_transpose=model.exif_transpose, what="target image"
            )
        with rec.stage("features"):
            enc = model._encoded(x, orig, model._encode_batch(x)[0], image)
        result = run_concepts(model, enc, trace=trace, timings=shared)
    if timings is not None:
        timings.update(result.timings)
    return result
