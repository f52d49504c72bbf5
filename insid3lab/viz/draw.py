"""Drawing primitives: each draws one panel into a given matplotlib Axes.

Grid-valued maps (h, w) are drawn with an ``extent`` covering the image they belong to, so a
16 x 16 similarity map lies exactly over a 300 x 451 image; images given at the network
side S (as a Trace holds them) are shown stretched back to their original (H, W).
"""

from __future__ import annotations

import math

import numpy as np
from matplotlib.collections import LineCollection
from matplotlib.colors import ListedColormap
from matplotlib.patches import Patch

from insid3lab.viz.common import GT_COLOR, PRED_COLOR, SEED_COLOR, as_image, as_mask, as_numpy, blank, image_extent, iou

_CLUSTER_COLORS = np.array(
    [
        (0.12, 0.47, 0.71),
        (1.00, 0.50, 0.05),
        (0.17, 0.63, 0.17),
        (0.84, 0.15, 0.16),
        (0.58, 0.40, 0.74),
        (0.55, 0.34, 0.29),
        (0.89, 0.47, 0.76),
        (0.50, 0.50, 0.50),
        (0.74, 0.74, 0.13),
        (0.09, 0.75, 0.81),
        (0.68, 0.78, 0.91),
        (1.00, 0.73, 0.47),
        (0.60, 0.87, 0.54),
        (1.00, 0.60, 0.59),
        (0.77, 0.69, 0.84),
        (0.77, 0.61, 0.58),
        (0.97, 0.71, 0.82),
        (0.78, 0.78, 0.78),
        (0.86, 0.86, 0.55),
        (0.62, 0.85, 0.90),
    ]
)


def cluster_colors(labels: np.ndarray) -> np.ndarray:
    """(h, w) integer labels -> (h, w, 3) colours from a 20-colour qualitative palette."""
    return _CLUSTER_COLORS[np.asarray(labels) % len(_CLUSTER_COLORS)]


def _hw(image, hw):
    if hw is not None:
        return int(hw[0]), int(hw[1])
    return image.shape[0], image.shape[1]


def draw_image(ax, image, *, hw=None, title=None):
    """The image, shown over an (H, W) extent (its own size unless ``hw`` is given). Returns (H, W)."""
    img = as_image(image)
    H, W = _hw(img, hw)
    ax.imshow(img, extent=image_extent((H, W)), interpolation="bilinear")
    ax.set_xlim(-0.5, W - 0.5)
    ax.set_ylim(H - 0.5, -0.5)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9)
    return H, W


def draw_outline(ax, mask, hw, *, color, linewidth=1.5, label=None):
    """The boundary of a bool mask as a contour line, scaled to cover (H, W). Nothing for an empty/full mask."""
    m = np.asarray(mask, dtype=float)
    if m.min() == m.max():
        return None
    h, w = m.shape
    H, W = hw
    padded = np.pad(m, 1)
    xs = (np.arange(-1, w + 1) + 0.5) * W / w - 0.5
    ys = (np.arange(-1, h + 1) + 0.5) * H / h - 0.5
    cs = ax.contour(xs, ys, padded, levels=[0.5], colors=[color], linewidths=linewidth)
    if label:
        cs.set_label(label)
    return cs


def overlay_rgba(mask: np.ndarray, color, alpha: float) -> np.ndarray:
    """(h, w) bool -> (h, w, 4) float RGBA: ``color`` with ``alpha`` where set, transparent elsewhere."""
    m = np.asarray(mask, dtype=bool)
    out = np.zeros(m.shape + (4,), dtype=np.float32)
    out[m, :3] = color
    out[m, 3] = alpha
    return out


def draw_mask(ax, image, mask, *, hw=None, color=PRED_COLOR, alpha=0.45, ground_truth=None, title=None, show_iou=True):
    """Image with a filled mask (and the ground truth as a green outline). Returns the IoU or None."""
    H, W = draw_image(ax, image, hw=hw)
    m = as_mask(mask)
    ax.imshow(overlay_rgba(m, color, alpha), extent=image_extent((H, W)), interpolation="nearest")
    draw_outline(ax, m, (H, W), color=color, linewidth=1.0)
    score = None
    if ground_truth is not None:
        gt = as_mask(ground_truth, "ground_truth")
        draw_outline(ax, gt, (H, W), color=GT_COLOR, linewidth=1.5)
        score = iou(m, gt)
        if show_iou:
            title = f"{title}  IoU {score:.3f}" if title else f"IoU {score:.3f}"
    if title:
        ax.set_title(title, fontsize=9)
    return score


def draw_map(
    ax,
    values,
    *,
    image=None,
    hw=None,
    cmap="viridis",
    vmin=None,
    vmax=None,
    alpha=0.7,
    colorbar=True,
    title=None,
    outline=None,
    outline_color="k",
):
    """A (h, w) map over an optional image, with a colour bar. Returns the map's AxesImage."""
    v = as_numpy(values).astype(np.float64)
    if v.ndim != 2:
        raise ValueError(f"values: expected an (h, w) map; got shape {v.shape}")
    if image is not None:
        H, W = draw_image(ax, image, hw=hw)
    else:
        H, W = hw if hw is not None else v.shape
        ax.set_xticks([])
        ax.set_yticks([])
    im = ax.imshow(
        v,
        extent=image_extent((H, W)),
        cmap=cmap,
        vmin=vmin,
        vmax=vmax,
        alpha=alpha if image is not None else None,
        interpolation="nearest",
    )
    ax.set_xlim(-0.5, W - 0.5)
    ax.set_ylim(H - 0.5, -0.5)
    if outline is not None:
        draw_outline(ax, as_numpy(outline).astype(bool), (H, W), color=outline_color, linewidth=1.2)
    if colorbar:
        ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
    if title:
        ax.set_title(title, fontsize=9)
    return im


def symmetric_limit(values, percentile: float = 100.0) -> float:
    """The ``percentile`` of |value| (max by default; at least 1e-12): limit of a diverging map centred on 0."""
    v = np.abs(as_numpy(values).astype(np.float64))
    if not v.size:
        return 1e-12
    return max(float(np.percentile(v, percentile)), 1e-12)


def draw_similarity(ax, similarity, *, image=None, hw=None, outline=None, title=None, colorbar=True):
    """A cosine-similarity map on a diverging scale symmetric around 0 (0 is white)."""
    lim = symmetric_limit(similarity)
    return draw_map(
        ax,
        similarity,
        image=image,
        hw=hw,
        cmap="RdBu_r",
        vmin=-lim,
        vmax=lim,
        title=title,
        outline=outline,
        colorbar=colorbar,
    )


def draw_votes(ax, votes, shots, *, image=None, hw=None, title=None, colorbar=True):
    """Backward votes 0..k as a discrete map, with the outline of ``votes >= ceil(k / 2)``."""
    v = as_numpy(votes).astype(np.int64)
    cmap = ListedColormap(
        np.array([(0.15, 0.15, 0.15)] + [(0.95, 0.55 + 0.4 * i / max(shots, 1), 0.1) for i in range(1, shots + 1)])
    )
    im = draw_map(
        ax,
        v,
        image=image,
        hw=hw,
        cmap=cmap,
        vmin=-0.5,
        vmax=shots + 0.5,
        title=title,
        outline=v >= math.ceil(shots / 2),
        outline_color="w",
        colorbar=False,
        alpha=0.7,
    )
    if colorbar:
        cb = ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.02, ticks=list(range(shots + 1)))
        cb.set_label("votes", fontsize=8)
    return im


#: Colours of the candidate categories: forward only, backward only, both (the candidates).
CANDIDATE_COLORS = {"forward only": (0.2, 0.45, 1.0), "backward only": (1.0, 0.6, 0.0), "candidates": (0.9, 0.05, 0.05)}


def candidate_categories(forward, backward) -> np.ndarray:
    """(h, w) int8: 0 neither, 1 forward only, 2 backward only, 3 both (the candidates)."""
    f = as_numpy(forward).astype(bool)
    b = as_numpy(backward).astype(bool)
    return (f & ~b).astype(np.int8) * 1 + (~f & b).astype(np.int8) * 2 + (f & b).astype(np.int8) * 3


def draw_candidates(ax, forward, backward, *, image=None, hw=None, title=None):
    """Forward-only, backward-only and candidate (both) cells as one categorical overlay."""
    cat = candidate_categories(forward, backward)
    if image is not None:
        H, W = draw_image(ax, image, hw=hw)
    else:
        H, W = hw if hw is not None else cat.shape
        ax.set_xticks([])
        ax.set_yticks([])
    rgba = np.zeros(cat.shape + (4,), dtype=np.float32)
    for value, color in zip((1, 2, 3), CANDIDATE_COLORS.values()):
        rgba[cat == value, :3] = color
        rgba[cat == value, 3] = 0.45 if value < 3 else 0.75
    ax.imshow(rgba, extent=image_extent((H, W)), interpolation="nearest")
    ax.set_xlim(-0.5, W - 0.5)
    ax.set_ylim(H - 0.5, -0.5)
    counts = [int((cat == v).sum()) for v in (1, 2, 3)]
    handles = [Patch(color=c, label=f"{name} ({n})") for (name, c), n in zip(CANDIDATE_COLORS.items(), counts)]
    ax.legend(handles=handles, loc="lower left", fontsize=6, framealpha=0.8)
    if title:
        ax.set_title(title, fontsize=9)
    return cat


def boundary_segments(labels: np.ndarray, hw, select=None):
    """Line segments between grid cells of different labels, in the coordinates of an (H, W) image.

    Args:
        labels: (h, w) integer labels.
        hw: (H, W) the extent the grid covers.
        select: optional label; keep only the segments with this label on exactly one side.

    Returns:
        (M, 2, 2) array of segments ((x0, y0), (x1, y1)).
    """
    lab = np.asarray(labels)
    h, w = lab.shape
    H, W = hw
    sy, sx = H / h, W / w
    segs = []
    # vertical boundaries between (i, j) and (i, j + 1)
    diff = lab[:, :-1] != lab[:, 1:]
    if select is not None:
        diff &= (lab[:, :-1] == select) ^ (lab[:, 1:] == select)
    ii, jj = np.nonzero(diff)
    x = (jj + 1) * sx - 0.5
    segs.append(np.stack([np.stack([x, ii * sy - 0.5], 1), np.stack([x, (ii + 1) * sy - 0.5], 1)], 1))
    # horizontal boundaries between (i, j) and (i + 1, j)
    diff = lab[:-1, :] != lab[1:, :]
    if select is not None:
        diff &= (lab[:-1, :] == select) ^ (lab[1:, :] == select)
    ii, jj = np.nonzero(diff)
    y = (ii + 1) * sy - 0.5
    segs.append(np.stack([np.stack([jj * sx - 0.5, y], 1), np.stack([(jj + 1) * sx - 0.5, y], 1)], 1))
    if select is not None:
        # the outer border of the selected cluster along the image edge
        edge = []
        for j in np.nonzero(lab[0] == select)[0]:
            edge.append(((j * sx - 0.5, -0.5), ((j + 1) * sx - 0.5, -0.5)))
        for j in np.nonzero(lab[-1] == select)[0]:
            edge.append(((j * sx - 0.5, H - 0.5), ((j + 1) * sx - 0.5, H - 0.5)))
        for i in np.nonzero(lab[:, 0] == select)[0]:
            edge.append(((-0.5, i * sy - 0.5), (-0.5, (i + 1) * sy - 0.5)))
        for i in np.nonzero(lab[:, -1] == select)[0]:
            edge.append(((W - 0.5, i * sy - 0.5), (W - 0.5, (i + 1) * sy - 0.5)))
        if edge:
            segs.append(np.asarray(edge, dtype=np.float64))
    return np.concatenate(segs, 0) if segs else np.zeros((0, 2, 2))


def draw_clusters(ax, labels, *, image=None, hw=None, seed=None, numbers=True, title=None, alpha=0.5):
    """Clusters in qualitative colours with black boundaries; the seed cluster outlined in yellow."""
    lab = as_numpy(labels).astype(np.int64)
    if image is not None:
        H, W = draw_image(ax, image, hw=hw)
    else:
        H, W = hw if hw is not None else lab.shape
        ax.set_xticks([])
        ax.set_yticks([])
    ax.imshow(
        cluster_colors(lab),
        extent=image_extent((H, W)),
        alpha=alpha if image is not None else None,
        interpolation="nearest",
    )
    ax.set_xlim(-0.5, W - 0.5)
    ax.set_ylim(H - 0.5, -0.5)
    ax.add_collection(LineCollection(boundary_segments(lab, (H, W)), colors="k", linewidths=0.8, label="boundaries"))
    if seed is not None:
        ax.add_collection(
            LineCollection(
                boundary_segments(lab, (H, W), select=int(seed)), colors=[SEED_COLOR], linewidths=2.5, label="seed"
            )
        )
    if numbers:
        K = int(lab.max()) + 1
        h, w = lab.shape
        ys, xs = np.mgrid[0:h, 0:w]
        for k in range(K):
            sel = lab == k
            n = int(sel.sum())
            if n == 0 or (K > 40 and k != seed):
                continue
            cy = (ys[sel].mean() + 0.5) * H / h - 0.5
            cx = (xs[sel].mean() + 0.5) * W / w - 0.5
            ax.text(
                cx,
                cy,
                str(k),
                ha="center",
                va="center",
                fontsize=6 if k != seed else 8,
                color="k" if k != seed else SEED_COLOR,
                fontweight="bold" if k == seed else None,
                bbox=dict(boxstyle="round,pad=0.1", fc="w", alpha=0.6, lw=0)
                if k != seed
                else dict(boxstyle="round,pad=0.1", fc="k", alpha=0.7, lw=0),
            )
    if title:
        ax.set_title(title, fontsize=9)


#: Bars drawn per cluster by :func:`draw_scores`, in order.
SCORE_PARTS = ("cross", "intra", "area", "score")
_SCORE_COLORS = {
    "cross": (0.35, 0.6, 0.85),
    "intra": (0.55, 0.8, 0.45),
    "area": (0.95, 0.7, 0.3),
    "score": (0.8, 0.1, 0.1),
}


def draw_scores(ax, cross, intra, area, score, *, merge_threshold, seed=None, overlap=None, title=None):
    """Grouped bars (cross, intra, area, total score) per cluster and the merge-threshold line.

    Only clusters in ``overlap`` (those touching the candidates; the others score 0) are shown when it
    is given. Tick labels of clusters that join the mask (score > threshold) are red; the seed is starred.

    Returns:
        The cluster ids shown, in order.
    """
    parts = {n: as_numpy(v).astype(np.float64).reshape(-1) for n, v in zip(SCORE_PARTS, (cross, intra, area, score))}
    K = parts["score"].shape[0]
    shown = np.arange(K) if overlap is None else np.nonzero(as_numpy(overlap).astype(bool).reshape(-1))[0]
    x = np.arange(len(shown))
    width = 0.2
    for i, name in enumerate(SCORE_PARTS):
        ax.bar(
            x + (i - 1.5) * width,
            parts[name][shown],
            width,
            color=_SCORE_COLORS[name],
            label="total" if name == "score" else name,
        )
    ax.axhline(merge_threshold, color="k", linestyle="--", linewidth=1.2, label=f"merge threshold {merge_threshold:g}")
    ax.axhline(0.0, color="0.6", linewidth=0.6)
    ax.set_xticks(x)
    ax.set_xticklabels([f"{k}★" if seed is not None and k == seed else str(k) for k in shown], fontsize=7)
    for tick, k in zip(ax.get_xticklabels(), shown):
        if parts["score"][k] > merge_threshold:
            tick.set_color(PRED_COLOR)
            tick.set_fontweight("bold")
    ax.set_xlabel("cluster (★ seed, red: in the mask)", fontsize=8)
    ax.tick_params(axis="y", labelsize=7)
    ax.legend(fontsize=6, ncol=2, loc="upper right")
    if len(shown):
        lo = min(0.0, float(min(parts[n][shown].min() for n in SCORE_PARTS)), merge_threshold)
        hi = max(1.0, float(max(parts[n][shown].max() for n in SCORE_PARTS)), merge_threshold)
        ax.set_ylim(lo - 0.05, hi + 0.35)
    else:
        ax.set_ylim(min(0.0, merge_threshold) - 0.05, max(1.0, merge_threshold) + 0.35)
    if title:
        ax.set_title(title, fontsize=9)
    return shown


def draw_rgb(ax, rgb, *, title=None, hw=None):
    """An (h, w, 3) colour array (e.g. a PCA), over an (H, W) extent when given."""
    arr = np.asarray(rgb)
    H, W = hw if hw is not None else arr.shape[:2]
    ax.imshow(arr, extent=image_extent((H, W)), interpolation="nearest", vmin=0, vmax=1)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9)


__all__ = [
    "blank",
    "boundary_segments",
    "candidate_categories",
    "cluster_colors",
    "draw_candidates",
    "draw_clusters",
    "draw_image",
    "draw_map",
    "draw_mask",
    "draw_outline",
    "draw_rgb",
    "draw_scores",
    "draw_similarity",
    "draw_votes",
    "overlay_rgba",
    "symmetric_limit",
]
