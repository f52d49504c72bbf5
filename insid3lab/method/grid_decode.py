"""Every setting of a grid from one encoding: the decode of :mod:`~insid3lab.method.pipeline`, its work shared.

What a quantity depends on decides how often it is computed (the table "What depends on what"
of the method's description):

- the target's cluster labels depend on τ and the clusterer only: :class:`ClusterCuts` builds one
  average-linkage tree per target and cuts it at each τ (a clusterer whose partition is not a cut
  of the tree, one registered without ``tree=True``, runs once per τ);
- the debiased features, the prototype and the candidates depend on the debiasing (r and the basis
  images): the caller hands :func:`decode_shared` one debiasing at a time with every setting that
  uses it, so that at most one set of debiased features is held;
- the clusters' prototypes of the original features depend on τ only: once per cut; those of the
  debiased features and the scores depend on (debiasing, τ): once per pair;
- the low-resolution mask is one threshold of the scores per merge threshold, and the upsampled,
  refined mask is computed once per distinct low-resolution mask and refiner.

:func:`decode_shared` decodes one concept (what :func:`~insid3lab.method.pipeline.decode` gives),
:func:`decode_concepts_shared` many (what :func:`~insid3lab.method.concepts.decode_concepts` gives: per
(debiasing, τ) the concepts' scores once, per setting the competition at its merge threshold).

Each step is the very function :func:`~insid3lab.method.pipeline.decode` calls, on the same inputs,
so every setting's mask equals the mask of a decode with that setting alone (the tree's cuts
equal the tree clusterers' partitions; see :mod:`~insid3lab.stages.clustering.tree` for exact ties).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any

import torch
from torch import Tensor

from insid3lab.method import concepts as many
from insid3lab.method import pipeline as method
from insid3lab.method.params import Params
from insid3lab.method.trace import ConceptsTrace
from insid3lab.stages import aggregation
from insid3lab.stages.clustering.registry import CLUSTERERS
from insid3lab.stages.clustering.tree import cut_tree, linkage_tree
from insid3lab.stages.refine import bilinear, get_refiner

__all__ = ["ClusterCuts", "Upsampled", "decode_concepts_shared", "decode_shared", "group_by"]


def group_by(items: Sequence[int], key: Callable[[int], Hashable]) -> dict[Hashable, list[int]]:
    """``items`` grouped by ``key(item)``, groups in order of first appearance, items in order within each."""
    out: dict[Hashable, list[int]] = {}
    for i in items:
        out.setdefault(key(i), []).append(i)
    return out


def _tree_clusterer(clustering) -> bool:
    """Whether the partitions of ``clustering`` at every τ are cuts of the average-linkage tree (its registry entry)."""
    entry = CLUSTERERS.get(clustering) if isinstance(clustering, str) else None
    return entry is not None and entry.tree


class ClusterCuts:
    """The cluster labels of one target at any (τ, clusterer), each computed once.

    Args:
        target_norm: (C, h, w) L2-normalised target features.

    Attributes:
        runs: how many clusterings ran (trees built plus per-τ clusterings); cuts are not counted.
    """

    def __init__(self, target_norm: Tensor):
        self.target_norm = target_norm
        self._tree = None
        self._labels: dict[tuple, Tensor] = {}
        self._prototypes: dict[tuple, Tensor] = {}
        self.runs = 0

    def _key(self, params: Params) -> tuple:
        return (round(float(params.tau), 12), params.clustering if not _tree_clusterer(params.clustering) else "tree")

    def labels(self, params: Params, *, taus: int = 2) -> Tensor:
        """(h, w) int64 canonical labels at ``params.tau`` with ``params.clustering``, on the features' device.

        ``taus``: how many values of τ the caller will ask for with a tree clusterer; with one, the
        clusterer itself runs (exactly the single-setting decode), with more, the tree is cut.
        """
        key = self._key(params)
        if key not in self._labels:
            C, h, w = self.target_norm.shape
            if key[1] == "tree" and taus > 1:
                if self._tree is None:
                    self._tree = linkage_tree(self.target_norm.reshape(C, -1).T)
                    self.runs += 1
                labels = cut_tree(self._tree, params.tau).reshape(h, w).to(self.target_norm.device)
            else:
                labels = method.cluster_target(self.target_norm, params)
                self.runs += 1
            self._labels[key] = labels
        return self._labels[key]

    def prototypes(self, params: Params, *, taus: int = 2) -> Tensor:
        """P_orig: (K, C) the clusters' prototypes of the original features at ``params.tau`` (they depend on the
        labels alone), computed once per cut."""
        key = self._key(params)
        if key not in self._prototypes:
            labels = self.labels(params, taus=taus)
            C = self.target_norm.shape[0]
            self._prototypes[key] = aggregation.cluster_prototypes(
                self.target_norm.reshape(C, -1).T, labels, int(labels.max()) + 1
            )
        return self._prototypes[key]


class Upsampled:
    """Final masks kept per (low-resolution mask, refiner, image size): settings whose clusters agree share one.

    Args:
        image: (3, S, S) target image in [0, 1] for a refiner, or None.
        out_size: (H, W) the masks are resized to at the end, or None (S x S).
    """

    def __init__(self, image: Tensor | None, out_size: tuple[int, int] | None):
        self.image, self.out_size = image, out_size
        self._masks: dict[tuple, Any] = {}

    def __call__(
        self, low: Tensor, params: Params, finish: Callable[[Tensor], Any] | None = None, *, extra: Hashable = None
    ) -> Any:
        """The upsampled, refined mask of ``low`` (h, w) under ``params`` (computed once per distinct input).

        ``finish(low) -> result`` replaces :func:`~insid3lab.method.pipeline.upsample` (a label map, ...);
        ``extra``: whatever else its result depends on (part of the key).
        """
        key = (low.shape, low.dtype, low.cpu().numpy().tobytes(), params.refine, params.image_size, extra)
        if key not in self._masks:
            if finish is not None:
                self._masks[key] = finish(low)
            else:
                self._masks[key] = method.upsample(low, params, image=self.image, out_size=self.out_size)
        return self._masks[key]


def decode_shared(
    references_deb: Tensor,
    masks_low: Tensor,
    prototype: Tensor,
    target_norm: Tensor,
    target_deb: Tensor,
    settings: Sequence[Params],
    cuts: ClusterCuts,
    upsampled: Upsampled,
    *,
    taus: int | None = None,
) -> list[Tensor]:
    """The masks of every setting of one debiasing (and one image size), sharing their common work.

    Args:
        references_deb, masks_low, prototype, target_norm, target_deb: as in
            :func:`~insid3lab.method.pipeline.decode`, for the debiasing all ``settings`` share.
        settings: the settings (they may differ in ``tau``, ``clustering``, ``merge_threshold``, ``refine``).
        cuts: the target's :class:`ClusterCuts`.
        upsampled: the target's :class:`Upsampled` (shared across debiasings, so identical masks are one object).
        taus: how many distinct τ the whole grid asks of ``cuts`` (default: those of ``settings``).

    Returns:
        one (H, W) bool mask per setting (S x S without ``out_size``); settings with the same mask share one tensor.
    """
    h, w = target_norm.shape[-2:]
    found = method.localise(references_deb, masks_low, prototype, target_deb)
    candidates = found["candidates"]
    out: list[Tensor | None] = [None] * len(settings)
    if not bool(candidates.any()):
        empty = torch.zeros(h, w, dtype=torch.bool, device=candidates.device)
        return [upsampled(empty, p) for p in settings]
    taus = taus if taus is not None else len({p.tau for p in settings})
    by_cut = group_by(range(len(settings)), lambda i: (settings[i].tau, settings[i].clustering))
    for idxs in by_cut.values():
        labels = cuts.labels(settings[idxs[0]], taus=taus).to(candidates.device)
        K = int(labels.max()) + 1
        # what method.cluster_prototypes computes, P_orig once per cut (it does not depend on the debiasing)
        P_deb = aggregation.cluster_prototypes(target_deb.reshape(target_deb.shape[0], -1).T, labels, K)
        P_orig = cuts.prototypes(settings[idxs[0]], taus=taus)
        score = method.score_clusters(candidates, labels, K, P_deb, P_orig, prototype, found["similarity"])["score"]
        for i in idxs:
            out[i] = upsampled(aggregation.aggregate(labels, score, settings[i].merge_threshold), settings[i])
    return out  # type: ignore[return-value]


def decode_concepts_shared(
    states: Sequence[dict[str, Tensor]],
    names: Sequence[str],
    target_norm: Tensor,
    target_deb: Tensor,
    settings: Sequence[Params],
    cuts: ClusterCuts,
    upsampled: Upsampled,
    *,
    taus: int | None = None,
    key: Hashable = None,
) -> list[ConceptsTrace]:
    """The many-concept results of every setting of one debiasing (and one image size), sharing their common work.

    Args:
        states: per concept, ``features_deb``, ``masks_low`` and ``prototype`` for the debiasing all ``settings``
            share (as :func:`~insid3lab.method.concepts.decode_concepts` reads them); names: the concepts' names.
        target_norm, target_deb: (C, h, w) normalised and debiased target features.
        settings, cuts, upsampled, taus: as in :func:`decode_shared`.
        key: names this debiasing among the others sharing ``upsampled`` (a refiner's overlaps are resolved by
            the scores, which depend on it).

    Returns:
        one :class:`~insid3lab.method.trace.ConceptsTrace` per setting (``label_map``, ``label_map_low``,
        ``scores``, ...), as :func:`~insid3lab.method.concepts.decode_concepts` gives it with that setting.
    """
    found = many.localise_concepts(states, target_deb)
    has = torch.stack([f["candidates"].any() for f in found])
    taus = taus if taus is not None else len({p.tau for p in settings})
    cut_groups = {(): list(range(len(settings)))}
    if bool(has.any()):
        cut_groups = group_by(range(len(settings)), lambda i: (settings[i].tau, settings[i].clustering))
    out: list = [None] * len(settings)
    for cut, members in cut_groups.items():
        scores = labels = None
        if cut:
            labels = cuts.labels(settings[members[0]], taus=taus).to(target_deb.device)
            K = int(labels.max()) + 1
            scores = many.concept_scores(states, found, has, target_norm, target_deb, labels, K)
        for i in members:
            p = settings[i]
            res = many.new_result(names, found)
            if scores is None:
                res.label_map_low = torch.zeros(target_norm.shape[-2:], dtype=torch.long, device=target_deb.device)
            else:
                many.claim(res, scores, labels, p.merge_threshold)

            def finish(low, p=p, scores=scores, labels=labels):
                return many.upsample_labels(low, scores, labels, p, concepts=len(states), image=upsampled.image,
                                            out_size=upsampled.out_size)  # fmt: skip

            # overlaps (only a refiner makes them) are resolved by the scores of this (debiasing, τ)
            extra = None if get_refiner(p.refine) is bilinear else (key, cut)
            out[i] = many.finish(res, p, upsample=lambda low, p=p, f=finish, e=extra: upsampled(low, p, f, extra=e))
    return out
