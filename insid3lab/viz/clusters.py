"""Clusters with their boundaries and seed; per-cluster scores against the merge threshold."""

from __future__ import annotations

from insid3lab.viz.common import as_numpy, new_figure
from insid3lab.viz.draw import draw_clusters, draw_scores

__all__ = ["cluster_scores", "clusters"]


def clusters(labels, *, image=None, hw=None, seed: int | None = None, title: str | None = None):
    """The target's clusters: colours, black boundaries between cells of different clusters, the seed
    outlined in yellow and every cluster numbered.

    Args:
        labels: (h, w) integer cluster ids.
        image: optional image underneath; hw: (H, W) display extent.
        seed: the seed cluster id.

    Returns:
        Figure with one axis: an (h, w, 3) colour image, a line collection of boundaries and, with a
        seed, a second one of the seed's boundary.
    """
    fig, ax = new_figure(1, 1, panel=3.4)
    K = int(as_numpy(labels).max()) + 1
    draw_clusters(
        ax,
        labels,
        image=image,
        hw=hw,
        seed=seed,
        title=title or f"{K} clusters" + (f", seed {seed}" if seed is not None else ""),
    )
    return fig


def cluster_scores(
    cross,
    intra,
    area,
    score,
    *,
    merge_threshold: float,
    seed: int | None = None,
    overlap=None,
    title: str | None = None,
):
    """Per-cluster scores as grouped bars: cross (mean s over the cluster), intra (similarity to the
    seed), area (candidate fraction, 1 for the seed) and their product, the total score, with the merge
    threshold as a dashed line. Clusters whose total exceeds it form the mask.

    Args:
        cross, intra, area, score: (K,) tensors/arrays (a Trace's ``cluster_*`` fields).
        merge_threshold: the line.
        seed: the seed cluster (starred).
        overlap: (K,) bool; when given only these clusters are shown (the others score 0).

    Returns:
        Figure with one axis holding 4 bars per shown cluster and the threshold line.
    """
    fig, ax = new_figure(1, 1, panel=4.2, height=3.0)
    draw_scores(
        ax,
        cross,
        intra,
        area,
        score,
        merge_threshold=merge_threshold,
        seed=seed,
        overlap=overlap,
        title=title or "cluster scores",
    )
    return fig
