"""Similarity: the forward map, the map of one reference cell, backward votes, candidates."""

from __future__ import annotations

import numpy as np

from insid3lab.stages.analysis import cell_similarity_map
from insid3lab.viz.common import SEED_COLOR, as_numpy, new_figure
from insid3lab.viz.draw import draw_candidates, draw_image, draw_similarity, draw_votes

__all__ = ["backward_votes", "candidates", "cell_similarity", "cell_similarity_map", "similarity_map"]


def similarity_map(similarity, *, image=None, hw=None, outline=None, title: str | None = None):
    """A cosine-similarity map such as the forward similarity s(x) = ⟨tgt_deb(x), p⟩.

    Args:
        similarity: (h, w) map.
        image: optional image drawn underneath (the map covers it).
        hw: (H, W) the display extent (default the image's own size, else the grid).
        outline: optional (h, w) bool mask outlined in black (e.g. the forward mask s > 0).

    Returns:
        Figure with one axis (image then map; the map's colour limits are ±max|s|) and a colour bar.
    """
    fig, ax = new_figure(1, 1, panel=3.4)
    draw_similarity(
        ax, similarity, image=image, hw=hw, outline=outline, title=title or "forward similarity s(x) = <target, p>"
    )
    return fig


def cell_similarity(
    reference_features,
    target_features,
    cell: tuple[int, int],
    *,
    reference_image=None,
    target_image=None,
    title: str | None = None,
):
    """Where does one reference cell (row, col) look like the target?

    Returns:
        Figure with two axes: the reference with the cell marked, and the (h', w') similarity map
        over the target with its maximum marked.
    """
    sim = cell_similarity_map(reference_features, target_features, cell)
    R = as_numpy(reference_features)
    h, w = R.shape[-2:]
    fig, axes = new_figure(1, 2, panel=3.2)
    row, col = int(cell[0]), int(cell[1])
    if reference_image is not None:
        H, W = draw_image(axes[0], reference_image, title=f"reference cell (row {row}, col {col})")
    else:
        H, W = h, w
        axes[0].imshow(np.zeros((h, w)), cmap="gray", vmin=0, vmax=1, extent=(-0.5, w - 0.5, h - 0.5, -0.5))
        axes[0].set_title(f"reference cell (row {row}, col {col})", fontsize=9)
    sy, sx = H / h, W / w
    axes[0].add_patch(_cell_rect(row, col, sy, sx))
    draw_similarity(axes[1], sim, image=target_image, title="similarity to that cell")
    th, tw = sim.shape
    if target_image is not None:
        from insid3lab.viz.common import as_image

        TH, TW = as_image(target_image).shape[:2]
    else:
        TH, TW = th, tw
    r, c = np.unravel_index(int(sim.argmax()), sim.shape)
    axes[1].plot(
        [(c + 0.5) * TW / tw - 0.5],
        [(r + 0.5) * TH / th - 0.5],
        marker="+",
        color="k",
        markersize=12,
        markeredgewidth=2,
        label="max",
    )
    if title:
        fig.suptitle(title)
    return fig


def _cell_rect(row, col, sy, sx):
    from matplotlib.patches import Rectangle

    return Rectangle((col * sx - 0.5, row * sy - 0.5), sx, sy, fill=False, edgecolor=SEED_COLOR, linewidth=2.5)


def backward_votes(votes, shots: int = 1, *, image=None, hw=None, title: str | None = None):
    """Backward votes: per target cell, how many shots' nearest reference cell lies in their mask.

    Returns:
        Figure with one axis: a discrete map 0..k (colour limits [-0.5, k + 0.5]) outlined where
        votes >= ceil(k / 2) (the backward mask).
    """
    fig, ax = new_figure(1, 1, panel=3.4)
    draw_votes(ax, votes, int(shots), image=image, hw=hw, title=title or f"backward votes ({shots} shot(s))")
    return fig


def candidates(forward, backward, *, image=None, hw=None, title: str | None = None):
    """Forward-only, backward-only and candidate cells (forward ∧ backward) in one overlay.

    Returns:
        Figure with one axis; the overlay is an (h, w, 4) RGBA image with a legend of counts.
    """
    fig, ax = new_figure(1, 1, panel=3.4)
    draw_candidates(ax, forward, backward, image=image, hw=hw, title=title or "candidates = forward ∧ backward")
    return fig
