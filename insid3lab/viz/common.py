"""Helpers shared by the figure modules: arrays out of tensors, figures, PNG bytes, PCA colours."""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from insid3lab.core.preprocess import mask_to_numpy, to_display_array

__all__ = [
    "as_image",
    "as_mask",
    "as_numpy",
    "empty_figure",
    "iou",
    "new_figure",
    "pca_rgb",
    "resize_nearest",
    "to_png",
    "wrap_text",
]

#: Colour of a predicted mask, of a reference mask and of a ground-truth outline (RGB in [0, 1]).
PRED_COLOR = (1.0, 0.15, 0.1)
REF_COLOR = (0.1, 0.55, 1.0)
GT_COLOR = (0.2, 1.0, 0.2)
SEED_COLOR = (1.0, 0.85, 0.0)


def new_figure(
    nrows: int = 1, ncols: int = 1, *, panel: float = 3.0, height: float | None = None, squeeze: bool = True, **kw
):
    """A pyplot-free Figure with a grid of axes (``panel`` inches per axis side).

    Returns:
        (fig, axes) as ``Figure.subplots`` returns them.
    """
    fig = Figure(figsize=(panel * ncols, (height if height is not None else panel) * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=squeeze, **kw)
    return fig, axes


#: Average width of a character of matplotlib's default font, as a fraction of the font size (a little generous).
_CHAR_WIDTH = 0.62


def wrap_text(text: str, width: float, fontsize: float) -> str:
    """``text`` with every line wrapped to fit ``width`` inches at ``fontsize`` points.

    Lines break after spaces, ``/``, ``_`` or ``-`` (a long path wraps at its folders); a piece
    longer than a line is cut where it must.
    """
    import re

    per_line = max(8, int(width * 72 / (_CHAR_WIDTH * fontsize)))
    out = []
    for line in str(text).splitlines() or [""]:
        row = ""
        for piece in re.split(r"(?<=[\s/_-])", line):
            while len(piece) > per_line:
                if row:
                    out.append(row.rstrip())
                    row = ""
                out.append(piece[:per_line])
                piece = piece[per_line:]
            if len(row) + len(piece.rstrip()) > per_line and row:
                out.append(row.rstrip())
                row = ""
            row += piece
        out.append(row.rstrip())
    return "\n".join(out)


def empty_figure(width: float, height: float) -> Figure:
    """A pyplot-free Figure of ``width`` x ``height`` inches without axes (constrained layout)."""
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def to_png(fig: Figure, *, dpi: int = 80) -> bytes:
    """PNG bytes of a figure (for ``ipywidgets.Image`` panels)."""
    if fig.canvas is None or not isinstance(fig.canvas, FigureCanvasAgg):
        FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def as_numpy(x) -> np.ndarray:
    """A tensor (any device/dtype) or array-like as a numpy array."""
    if isinstance(x, torch.Tensor):
        t = x.detach().cpu()
        if t.dtype in (torch.bfloat16, torch.float16):
            t = t.float()
        return t.numpy()
    return np.asarray(x)


def as_image(image) -> np.ndarray:
    """(H, W, 3) uint8 for display: anything :func:`~insid3lab.core.preprocess.to_display_array` accepts."""
    return to_display_array(image)


def as_mask(mask, what: str = "mask") -> np.ndarray:
    """(H, W) bool from a tensor, array, PIL image or path (foreground ``> 0``)."""
    if isinstance(mask, torch.Tensor) and mask.ndim == 3 and mask.shape[0] == 1:
        mask = mask[0]
    return mask_to_numpy(mask, what=what)


def resize_nearest(arr: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a 2-D array to (H, W) (pixel centres, like PIL's NEAREST)."""
    H, W = int(hw[0]), int(hw[1])
    h, w = arr.shape[:2]
    if (h, w) == (H, W):
        return arr
    rows = np.minimum((np.arange(H) + 0.5) * h / H, h - 1).astype(np.int64)
    cols = np.minimum((np.arange(W) + 0.5) * w / W, w - 1).astype(np.int64)
    return arr[rows][:, cols]


def iou(prediction, ground_truth) -> float:
    """Intersection over union of two masks (the prediction is resized to the ground truth's size).

    Both empty counts as 1.0.
    """
    gt = as_mask(ground_truth, "ground_truth")
    pred = resize_nearest(as_mask(prediction, "prediction"), gt.shape)
    union = np.logical_or(pred, gt).sum()
    if union == 0:
        return 1.0
    return float(np.logical_and(pred, gt).sum() / union)


def _feature_map(x, what: str) -> np.ndarray:
    a = as_numpy(x).astype(np.float64)
    if a.ndim == 4 and a.shape[0] == 1:
        a = a[0]
    if a.ndim != 3:
        raise ValueError(f"{what}: expected a (C, h, w) feature map (or (1, C, h, w)); got shape {a.shape}")
    return a


def pca_rgb(features, *, percentile: float = 1.0):
    """Colour feature maps by their first three principal components, fitted jointly.

    Args:
        features: one (C, h, w) map (tensor or array), or a sequence of maps with the same C; the
            PCA is fitted on all their cells together, so the same colour means the same feature.
        percentile: each component is scaled to [0, 1] between this low and high percentile
            of its values over all maps, then clipped.

    Returns:
        (h, w, 3) float arrays in [0, 1]: one, or a list in the order given.
    """
    single = not isinstance(features, (list, tuple))
    maps = [features] if single else list(features)
    if not maps:
        raise ValueError("features: give at least one (C, h, w) map")
    arrs = [_feature_map(m, f"features[{i}]") for i, m in enumerate(maps)]
    C = arrs[0].shape[0]
    for i, a in enumerate(arrs):
        if a.shape[0] != C:
            raise ValueError(
                f"features[{i}] has {a.shape[0]} channels but features[0] has {C}: a joint PCA needs equal C"
            )
    X = np.concatenate([a.reshape(C, -1).T for a in arrs], axis=0)
    X = X - X.mean(axis=0, keepdims=True)
    cov = X.T @ X
    vals, vecs = np.linalg.eigh(cov)
    order = np.argsort(vals)[::-1][:3]
    comps = vecs[:, order]
    # a deterministic sign: the largest loading of each component is positive
    signs = np.sign(comps[np.abs(comps).argmax(axis=0), np.arange(comps.shape[1])])
    comps = comps * np.where(signs == 0, 1.0, signs)
    proj = X @ comps
    if proj.shape[1] < 3:
        proj = np.concatenate([proj, np.zeros((proj.shape[0], 3 - proj.shape[1]))], axis=1)
    lo = np.percentile(proj, percentile, axis=0)
    hi = np.percentile(proj, 100 - percentile, axis=0)
    span = np.where(hi - lo > 1e-12, hi - lo, 1.0)
    rgb = np.clip((proj - lo) / span, 0.0, 1.0)
    out, start = [], 0
    for a in arrs:
        n = a.shape[1] * a.shape[2]
        out.append(rgb[start : start + n].reshape(a.shape[1], a.shape[2], 3))
        start += n
    return out[0] if single else out


def image_extent(hw: Sequence[int]) -> tuple[float, float, float, float]:
    """``imshow`` extent that makes any grid cover an image of (H, W) pixels."""
    H, W = hw
    return (-0.5, W - 0.5, H - 0.5, -0.5)


def blank(ax, text: str = "") -> None:
    """An empty axis with a centred note."""
    ax.set_axis_off()
    if text:
        ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True, transform=ax.transAxes, fontsize=9)
