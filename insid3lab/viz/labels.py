"""Figures of a many-concept prediction: the label map with a legend, per-concept score bars, instances."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle

from insid3lab.core.palette import concept_colours
from insid3lab.viz.common import as_image, as_numpy, new_figure, resize_nearest, wrap_text

__all__ = ["colour_label_map", "concept_colours", "instances", "label_overlay", "labels"]


def colour_label_map(label_map, n: int, image=None, alpha: float = 0.55) -> np.ndarray:
    """(H, W, 3) float image: each concept's colour over ``image`` (or black), background left as is."""
    lm = as_numpy(label_map).astype(np.int64)
    colours = np.vstack([np.zeros((1, 3)), concept_colours(n)])
    rgb = colours[lm.clip(0, n)]
    if image is None:
        return rgb
    base = as_image(image).astype(np.float64) / 255.0
    if base.shape[:2] != lm.shape:
        base = resize_nearest(base, lm.shape)
    fg = (lm > 0)[..., None]
    return np.where(fg, (1 - alpha) * base + alpha * rgb, base)


#: Font size of the legends and titles of these figures.
_FONT = 8


def _legend(fig, names: Sequence[str], colours: np.ndarray) -> None:
    """The concepts' legend right of the figure's image, in as many columns as the figure's height needs
    (placed outside the axes, so the layout makes room for it)."""
    handles = [Patch(facecolor=colours[i], label=f"{i + 1} {n}") for i, n in enumerate(names)]
    rows = max(1, int(fig.get_figheight() * 72 / (_FONT * 1.9)))
    fig.legend(handles=handles, loc="outside right upper", fontsize=_FONT, frameon=False,
               ncols=max(1, -(-len(names) // rows)))  # fmt: skip


def _legend_width(names: Sequence[str], height: float) -> float:
    """Inches the legend of :func:`_legend` takes beside the image."""
    rows = max(1, int(height * 72 / (_FONT * 1.9)))
    cols = max(1, -(-len(names) // rows))
    longest = max((len(f"{i + 1} {n}") for i, n in enumerate(names)), default=0)
    return cols * (longest + 8) * 0.62 * _FONT / 72


def _sized_figure(hw: tuple[int, int], names: Sequence[str], *, height: float = 4.0):
    """A figure with one axes for an (H, W) image and a legend beside it, wide enough for both; and the image's
    width in inches (what a title over it may take)."""
    H, W = hw
    image_w = float(np.clip(height * W / max(H, 1), 2.0, 3 * height))
    fig, ax = new_figure(1, 1, panel=image_w + _legend_width(names, height) + 0.3, height=height)
    return fig, ax, image_w


def label_overlay(label_map, names: Sequence[str], *, image=None, title: str = "label map") -> Figure:
    """The label map in the concepts' colours (over ``image`` when given), with a legend; the figure is as wide as
    the image and the legend need, the title wrapped to fit."""
    rgb = colour_label_map(label_map, len(names), image)
    fig, ax, width = _sized_figure(rgb.shape[:2], names)
    ax.imshow(rgb)
    ax.set_title(wrap_text(title, width - 0.1, 9), fontsize=9)
    ax.set_axis_off()
    _legend(fig, names, concept_colours(len(names)))
    return fig


def labels(label_map, names: Sequence[str], scores: dict[str, float] | None = None, *, image=None) -> Figure:
    """The label map with a legend and, beside it, one bar per concept's score.

    Args:
        label_map: (H, W) integer map (0 background, i = ``names[i - 1]``).
        names: the concepts (``model.labels``).
        scores: ``{name: score}`` as :meth:`~insid3lab.INSID3.segment_labels` returns them.
        image: the target, drawn under the colours.
    """
    fig, (ax, bars) = new_figure(1, 2, panel=3.6, gridspec_kw={"width_ratios": [1.4, 1.0]})
    colours = concept_colours(len(names))
    ax.imshow(colour_label_map(label_map, len(names), image))
    ax.set_title("label map", fontsize=9)
    ax.set_axis_off()
    ax.legend(
        handles=[Patch(facecolor=colours[i], label=f"{i + 1} {n}") for i, n in enumerate(names)],
        loc="lower left",
        fontsize=7,
        framealpha=0.8,
    )
    values = [float((scores or {}).get(n, 0.0)) for n in names]
    y = np.arange(len(names))
    bars.barh(y, values, color=colours)
    bars.set_yticks(y, [str(n) for n in names], fontsize=8)
    bars.invert_yaxis()
    bars.set_xlabel("score (mean over the cells taken)", fontsize=8)
    bars.set_title("per-concept score", fontsize=9)
    return fig


def instances(image, found: Sequence[dict], names: Sequence[str]) -> Figure:
    """Instances as coloured masks with their boxes and scores (from ``segment_instances``)."""
    base = as_image(image).astype(np.float64) / 255.0
    colours = concept_colours(len(names))
    fig, ax, _ = _sized_figure(base.shape[:2], names)
    out = base.copy()
    shade = np.linspace(1.0, 0.55, max(len(found), 1))
    for i, inst in enumerate(found):
        m = as_numpy(inst["mask"]).astype(bool)
        if m.shape != out.shape[:2]:
            m = resize_nearest(m, out.shape[:2])
        col = colours[list(names).index(inst["label"])] * shade[i]
        out[m] = 0.45 * out[m] + 0.55 * col
    ax.imshow(out)
    for inst in found:
        x0, y0, x1, y1 = inst["box"]
        col = colours[list(names).index(inst["label"])]
        ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, edgecolor=col, linewidth=1.5))
        ax.text(
            x0,
            y0,
            f"{inst['label']} {inst['score']:.2f}",
            color="white",
            fontsize=7,
            va="bottom",
            bbox={"facecolor": col, "alpha": 0.8, "pad": 1, "edgecolor": "none"},
        )
    ax.set_title(f"{len(found)} instance(s)", fontsize=9)
    ax.set_axis_off()
    _legend(fig, names, colours)
    return fig
