"""Overlays: masks on images, reference beside target, keypoint matches, sweeps of masks and IoU tables."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.patches import ConnectionPatch

from insid3lab.viz.common import PRED_COLOR, REF_COLOR, as_image, as_mask, as_numpy, new_figure, wrap_text
from insid3lab.viz.draw import draw_image, draw_mask

__all__ = [
    "keypoint_colors",
    "keypoint_matches",
    "mask_grid",
    "mask_overlay",
    "reference_target_overlay",
    "score_table",
]


def mask_overlay(image, mask, *, ground_truth=None, title: str | None = None, color=PRED_COLOR):
    """One image with a filled mask; the ground truth (when given) as a green outline, IoU in the title.

    Returns:
        Figure with one axis: the image, then an (h, w, 4) RGBA mask layer.
    """
    fig, ax = new_figure(1, 1, panel=3.6)
    draw_mask(ax, image, mask, color=color, ground_truth=ground_truth, title=title)
    return fig


def reference_target_overlay(
    reference_image, reference_mask, target_image, prediction, *, ground_truth=None, title: str | None = None
):
    """The reference with its mask (blue) beside the target with the prediction (red).

    Args:
        reference_image, target_image: anything ``to_display_array`` accepts (paths, PIL, arrays,
            normalised tensors).
        reference_mask, prediction: (H, W) bool tensors/arrays (resized to their image when sizes differ).
        ground_truth: optional (H, W) target mask, drawn as a green outline; the IoU of the
            prediction against it goes into the target's title.
        title: figure title.

    Returns:
        Figure with two axes, each an image and an RGBA mask layer.
    """
    fig, axes = new_figure(1, 2, panel=3.6)
    ref_mask = as_mask(reference_mask, "reference_mask")
    draw_mask(
        axes[0],
        reference_image,
        ref_mask,
        color=REF_COLOR,
        title=f"reference + mask ({100 * ref_mask.mean():.1f}% of pixels)",
    )
    pred = as_mask(prediction, "prediction")
    draw_mask(
        axes[1], target_image, pred, ground_truth=ground_truth, title=f"target + prediction ({100 * pred.mean():.1f}%)"
    )
    if title:
        fig.suptitle(title)
    return fig


def keypoint_colors(n: int) -> np.ndarray:
    """(n, 3) distinct colours for keypoints (evenly spaced hues)."""
    from matplotlib.colors import hsv_to_rgb

    hues = (np.arange(n) * 0.618034) % 1.0
    return hsv_to_rgb(np.stack([hues, np.full(n, 0.85), np.full(n, 0.95)], axis=1))


def _points(x, what: str) -> np.ndarray:
    a = as_numpy(x).astype(np.float64)
    if a.ndim != 2 or a.shape[1] != 2:
        raise ValueError(f"{what}: expected (N, 2) (x, y) points; got shape {a.shape}")
    return a


def keypoint_matches(
    reference_image, reference_points, target_image, points, *, ground_truth=None, title: str | None = None
):
    """Reference keypoints and where they were matched in the target, joined by lines.

    Args:
        reference_image, target_image: anything ``to_display_array`` accepts.
        reference_points: (N, 2) (x, y) in reference pixels.
        points: (N, 2) (x, y) matches in target pixels.
        ground_truth: optional (N, 2) true target points: drawn as hollow circles joined to the
            matches; the title then reports the mean error in pixels and PCK@0.1 (error below
            0.1 · max(H, W) of the target).
        title: figure title (the error summary is appended).

    Returns:
        Figure with two axes; each holds one scatter of its points (the target a second one of
        the ground truth); the lines between the axes are figure artists.
    """
    ref = _points(reference_points, "reference_points")
    pts = _points(points, "points")
    if len(ref) != len(pts):
        raise ValueError(f"reference_points has {len(ref)} points but points has {len(pts)}")
    gt = None if ground_truth is None else _points(ground_truth, "ground_truth")
    if gt is not None and len(gt) != len(pts):
        raise ValueError(f"ground_truth has {len(gt)} points but points has {len(pts)}")
    fig, axes = new_figure(1, 2, panel=3.8)
    draw_image(axes[0], reference_image, title="reference keypoints")
    TH, TW = draw_image(axes[1], target_image, title="matches in the target")
    colors = keypoint_colors(len(pts))
    axes[0].scatter(ref[:, 0], ref[:, 1], c=colors, s=36, edgecolors="k", linewidths=0.8, zorder=3)
    axes[1].scatter(pts[:, 0], pts[:, 1], c=colors, s=36, marker="X", edgecolors="k", linewidths=0.8, zorder=3)
    for (xa, ya), (xb, yb), c in zip(ref, pts, colors):
        if np.isfinite([xa, ya, xb, yb]).all():
            fig.add_artist(
                ConnectionPatch(
                    (xa, ya), (xb, yb), "data", "data", axesA=axes[0], axesB=axes[1], color=c, linewidth=0.8, alpha=0.8
                )
            )
    summary = f"{len(pts)} keypoints"
    if gt is not None:
        axes[1].scatter(gt[:, 0], gt[:, 1], s=70, facecolors="none", edgecolors=colors, linewidths=1.5, zorder=2)
        for (xp, yp), (xg, yg), c in zip(pts, gt, colors):
            axes[1].plot([xp, xg], [yp, yg], color=c, linewidth=1.0, linestyle=":")
        ok = np.isfinite(gt).all(axis=1) & np.isfinite(pts).all(axis=1)
        err = np.linalg.norm(pts[ok] - gt[ok], axis=1)
        if len(err):
            pck = float((err <= 0.1 * max(TH, TW)).mean())
            summary += f"; mean error {err.mean():.1f} px; PCK@0.1 {pck:.2f}"
    fig.suptitle(wrap_text(f"{title}: {summary}" if title else summary, fig.get_figwidth() - 0.2, 12))
    return fig


def mask_grid(image, masks, *, ground_truth=None, ncols: int = 4, title: str | None = None, panel: float = 2.4):
    """Many masks of one image side by side (a sweep), each titled with its label and IoU.

    Args:
        image: the target image.
        masks: {label: (H, W) mask} or a sequence of masks (labelled by position).
        ground_truth: optional (H, W) mask: outlined in green, IoU in every title.
        ncols: panels per row.

    Returns:
        Figure with one axis per mask (unused grid cells hidden).
    """
    items = list(masks.items()) if isinstance(masks, Mapping) else [(str(i), m) for i, m in enumerate(masks)]
    if not items:
        raise ValueError("masks is empty: give at least one mask")
    ncols = max(1, min(int(ncols), len(items)))
    nrows = math.ceil(len(items) / ncols)
    fig, axes = new_figure(nrows, ncols, panel=panel, squeeze=False)
    img = as_image(image)
    for ax, (label, m) in zip(axes.flat, items):
        draw_mask(ax, img, m, ground_truth=ground_truth, title=str(label))
    for ax in list(axes.flat)[len(items) :]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title)
    return fig


def score_table(
    values,
    rows: Sequence,
    cols: Sequence,
    *,
    row_name: str = "",
    col_name: str = "",
    title: str | None = None,
    vmin: float = 0.0,
    vmax: float = 1.0,
    fmt: str = "{:.3f}",
    cmap: str = "viridis",
):
    """A table of numbers (IoU per setting, errors per method...) as an annotated heat map.

    Args:
        values: (len(rows), len(cols)) numbers.
        rows, cols: their labels; row_name / col_name: axis names.
        vmin, vmax: colour limits; fmt: format of the numbers; cmap: colour map
            (e.g. ``"viridis_r"`` when lower is better).

    Returns:
        Figure with one axis: the (R, C) image (colour limits [vmin, vmax]) and one text per cell.
    """
    v = as_numpy(values).astype(np.float64)
    if v.shape != (len(rows), len(cols)):
        raise ValueError(f"values has shape {v.shape} but rows x cols is {len(rows)} x {len(cols)}")
    fig, ax = new_figure(1, 1, panel=max(2.5, 0.8 * len(cols) + 1.2), height=max(2.0, 0.45 * len(rows) + 1.0))
    im = ax.imshow(v, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
    dark_low = not cmap.endswith("_r")
    for i in range(v.shape[0]):
        for j in range(v.shape[1]):
            x = v[i, j]
            low = x < vmin + 0.6 * (vmax - vmin) if dark_low else x > vmin + 0.4 * (vmax - vmin)
            ax.text(
                j,
                i,
                "–" if not np.isfinite(x) else fmt.format(x),
                ha="center",
                va="center",
                fontsize=8,
                color="w" if (not np.isfinite(x) or low) else "k",
            )
    ax.set_xticks(range(len(cols)))
    ax.set_xticklabels([str(c) for c in cols], fontsize=8)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([str(r) for r in rows], fontsize=8)
    ax.set_xlabel(col_name, fontsize=9)
    ax.set_ylabel(row_name, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
    if title:
        ax.set_title(title, fontsize=10)
    return fig
