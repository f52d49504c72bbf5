"""The overlay ``segment`` writes: every reference shot with its mask, then the target with the prediction.

The prediction is drawn as an outline (white over black, visible on any colour) plus a tint
whose colour is chosen to contrast with the pixels it covers (a red object gets a cyan tint).
A title line says when the weights are random (:data:`RANDOM_WEIGHTS_NOTE`, the words every
output of random weights carries; :func:`note_band` draws them under an animation's frames).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

__all__ = ["RANDOM_WEIGHTS_NOTE", "contrasting_colour", "note_band", "segment_overlay"]

RANDOM_WEIGHTS_NOTE = "random weights: this output only shows the mechanics, not a real result"
#: Tint colours to choose from (RGB in [0, 1]): cyan, yellow, magenta, blue, green.
_TINTS = np.array([[0.0, 0.9, 1.0], [1.0, 0.9, 0.0], [1.0, 0.0, 0.9], [0.1, 0.3, 1.0], [0.1, 1.0, 0.2]])


def contrasting_colour(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The tint of :data:`_TINTS` farthest (in RGB) from the mean colour under ``mask``: (3,) in [0, 1].

    Args:
        image: (H, W, 3) uint8; mask: (H, W) bool.
    """
    mean = image[mask].mean(axis=0) / 255.0 if mask.any() else image.reshape(-1, 3).mean(axis=0) / 255.0
    return _TINTS[int(np.argmax(((_TINTS - mean) ** 2).sum(axis=1)))]


def _draw(ax, image: np.ndarray, mask: np.ndarray, colour, title: str) -> None:
    ax.imshow(image)
    rgba = np.zeros((*mask.shape, 4))
    rgba[mask] = (*colour, 0.4)
    ax.imshow(rgba)
    if mask.any() and not mask.all():
        ax.contour(mask.astype(float), levels=[0.5], colors=["black"], linewidths=2.6)
        ax.contour(mask.astype(float), levels=[0.5], colors=["white"], linewidths=1.2)
    ax.set_title(title, fontsize=9)
    ax.set_axis_off()


def note_band(width: int, text: str):
    """A white PIL image ``width`` pixels wide holding ``text`` in black, wrapped at word boundaries to fit."""
    from PIL import Image, ImageDraw, ImageFont

    try:
        font = ImageFont.load_default(size=11)
    except TypeError:  # Pillow < 10.1 has one bitmap size
        font = ImageFont.load_default()
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    pad, lines = 4, [""]
    for word in text.split():
        trial = f"{lines[-1]} {word}".strip()
        if lines[-1] and measure.textlength(trial, font=font) > width - 2 * pad:
            lines.append(word)
        else:
            lines[-1] = trial
    row = 14
    band = Image.new("RGB", (width, 2 * pad + row * len(lines)), "white")
    draw = ImageDraw.Draw(band)
    for i, line in enumerate(lines):
        draw.text((pad, pad + i * row), line, fill="black", font=font)
    return band


def segment_overlay(references: Sequence[tuple[np.ndarray, np.ndarray]], target: np.ndarray, prediction: np.ndarray,
                    *, title: str, random_weights: bool = False) -> Figure:  # fmt: skip
    """Every shot with its mask and the target with the prediction, in one row.

    Args:
        references: k pairs of (H, W, 3) uint8 image and (H, W) bool mask.
        target: (H, W, 3) uint8; prediction: (H, W) bool of the same size.
        title: the figure's title (the target's name).
        random_weights: add :data:`RANDOM_WEIGHTS_NOTE` under the title.

    Returns:
        Figure with k + 1 axes.
    """
    from insid3lab.viz.common import wrap_text

    n = len(references) + 1
    fig = Figure(figsize=(3.4 * n, 3.4))
    axes = fig.subplots(1, n, squeeze=False)[0]
    for i, (img, m) in enumerate(references):
        _draw(axes[i], img, m, (0.2, 0.45, 1.0), f"reference {i + 1} ({100 * m.mean():.1f}% of pixels)")
    _draw(axes[-1], target, prediction, contrasting_colour(target, prediction),
          f"prediction ({100 * prediction.mean():.1f}%)")  # fmt: skip
    text = wrap_text(title + (f"\n{RANDOM_WEIGHTS_NOTE}" if random_weights else ""), fig.get_figwidth() - 0.2, 10)
    fig.set_figheight(3.4 + 0.18 * text.count("\n"))
    fig.suptitle(text, fontsize=10, color="black")
    fig.tight_layout()
    return fig
