"""Stage 6: cluster prototypes, seed selection and aggregation scores."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["cluster_prototypes", "cluster_sizes", "seed_and_scores", "aggregate"]


def cluster_sizes(labels: Tensor, num_clusters: int) -> Tensor:
    """Cells per cluster: (N,) or (h, w) labels in [0, K) -> (K,) long.

    A scatter-add into K counters: unlike ``bincount`` it needs no host synchronisation
    on CUDA to size its output.
    """
    flat = labels.reshape(-1).to(torch.long)
    return torch.zeros(num_clusters, dtype=torch.long, device=flat.device).scatter_add_(0, flat, torch.ones_like(flat))


def cluster_prototypes(features: Tensor, labels: Tensor, num_clusters: int) -> Tensor:
    """L2-normalised mean feature of every cluster, with one scatter-add (no loop over clusters).

    Args:
        features: (N, C) cell features.
        labels: (N,) cluster ids in [0, K).
        num_clusters: K.

    Returns:
        (K, C) unit vectors.
    """
    labels = labels.reshape(-1)
    sums = torch.zeros(num_clusters, features.shape[1], dtype=features.dtype, device=features.device)
    sums.index_add_(0, labels, features)
    counts = cluster_sizes(labels, num_clusters).to(features.dtype).clamp_min(1)
    return F.normalize(sums / counts[:, None], p=2, dim=1)


def seed_and_scores(
    candidates: Tensor,
    labels: Tensor,
    num_clusters: int,
    prototypes_deb: Tensor,
    prototypes_orig: Tensor,
    prototype: Tensor,
    similarity: Tensor,
) -> dict[str, Tensor]:
    """Seed cluster and per-cluster aggregation scores.

    Args:
        candidates: (h, w) bool candidate cells (at least one).
        labels: (h, w) long cluster ids in [0, K).
        num_clusters: K.
        prototypes_deb: (K, C) cluster prototypes of the debiased features (P_deb).
        prototypes_orig: (K, C) cluster prototypes of the original features (P_orig).
        prototype: (C,) reference prototype p.
        similarity: (h, w) forward similarity s(x).

    Returns:
        dict of tensors: ``area`` (K,) candidate fraction a_k (a_seed set to 1),
        ``overlap`` (K,) bool clusters with candidates, ``seed`` () long,
        ``seed_similarity`` (K,) <p, P_deb[k]>, ``intra`` (K,) <P_orig[seed], P_orig[k]>,
        ``cross`` (K,) mean s(x) over the cluster, ``score`` (K,) cross · intra · a.
    """
    flat = labels.reshape(-1).to(torch.long)
    sizes = cluster_sizes(flat, num_clusters)
    hits = torch.zeros(num_clusters, dtype=torch.long, device=flat.device)
    hits.scatter_add_(0, flat, candidates.reshape(-1).to(torch.long))  # candidate cells per cluster
    area = hits.to(torch.float32) / sizes
    overlap = hits > 0
    seed_sim = prototypes_deb @ prototype
    seed = torch.where(overlap, seed_sim, torch.full_like(seed_sim, -torch.inf)).argmax()
    intra = prototypes_orig @ prototypes_orig.index_select(0, seed.reshape(1))[0]  # no host read of seed
    sim_sums = torch.zeros(num_clusters, dtype=similarity.dtype, device=similarity.device)
    sim_sums.index_add_(0, flat, similarity.reshape(-1))
    cross = sim_sums / sizes.to(similarity.dtype)
    area = area.index_fill(0, seed.reshape(1), 1.0)
    score = cross * intra * area
    return {
        "area": area,
        "overlap": overlap,
        "seed": seed,
        "seed_similarity": seed_sim,
        "intra": intra,
        "cross": cross,
        "score": score,
    }


def aggregate(labels: Tensor, score: Tensor, merge_threshold: float) -> Tensor:
    """Low-resolution mask: cells whose cluster scores above ``merge_threshold``. (h, w) bool."""
    return score[labels] > merge_threshold
