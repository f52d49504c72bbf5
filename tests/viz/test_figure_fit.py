"""Figures size themselves to their content: long titles and many concepts are drawn whole, inside the canvas."""

from __future__ import annotations

import io

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from PIL import Image, ImageDraw, ImageFont

from insid3lab.cli.figures import RANDOM_WEIGHTS_NOTE, segment_overlay
from insid3lab.tasks.concept_files import overlay_png
from insid3lab.viz import keypoint_matches
from insid3lab.viz.labels import instances, label_overlay, labels

LONG = "/a/rather/long/folder/name/that/users/have/" + "deeper/" * 6 + "target_image_0001.png"
TITLE = f"{LONG}\n{RANDOM_WEIGHTS_NOTE}"


def _inside(fig, *artists) -> None:
    if fig.canvas is None or not isinstance(fig.canvas, FigureCanvasAgg):
        FigureCanvasAgg(fig)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    W, H = fig.bbox.width, fig.bbox.height
    for a in artists:
        box = a.get_window_extent(renderer)
        assert box.x0 >= -1 and box.x1 <= W + 1 and box.y0 >= -1 and box.y1 <= H + 1, (a, box, (W, H))


def _map(n: int, hw=(60, 90)) -> np.ndarray:
    lm = np.zeros(hw, np.int64)
    for i in range(n):
        lm[:, i * hw[1] // n : (i + 1) * hw[1] // n] = i + 1
    return lm


def test_the_random_weights_note_speaks_of_no_mask():
    assert "mask" not in RANDOM_WEIGHTS_NOTE and "random weights" in RANDOM_WEIGHTS_NOTE


@pytest.mark.parametrize("n", [2, 30])
def test_label_figures_keep_title_and_legend_inside(n):
    names = [f"concept number {i}" for i in range(n)]
    fig = label_overlay(_map(n), names, title=TITLE)
    ax = fig.axes[0]
    _inside(fig, ax.title, *fig.legends)
    found = [{"label": names[0], "mask": _map(n) == 1, "score": 0.5, "box": (0, 0, 3, 60)}]
    fig = instances(np.zeros((60, 90, 3), np.uint8), found, names)
    _inside(fig, *fig.legends)
    fig = labels(_map(n), names, {nm: 0.1 for nm in names})
    _inside(fig, *fig.axes)


def test_segment_and_match_figures_keep_their_titles_inside():
    img = np.zeros((40, 60, 3), np.uint8)
    m = np.zeros((40, 60), bool)
    m[10:20, 10:30] = True
    fig = segment_overlay([(img, m)], img, m, title=LONG, random_weights=True)
    _inside(fig, fig._suptitle)
    fig = keypoint_matches(img, [[5, 5], [20, 30]], img, [[6, 6], [21, 30]], title=TITLE)
    _inside(fig, fig._suptitle)


def test_the_concept_overlay_file_draws_a_long_title_whole_at_the_image_size():
    lm = _map(3, (48, 64))
    png = Image.open(io.BytesIO(overlay_png(lm, ["a", "b", "c"], title=TITLE)))
    font = ImageFont.load_default(size=11)
    widest = max(ImageDraw.Draw(Image.new("RGB", (1, 1))).textlength(t, font=font) for t in TITLE.splitlines())
    assert png.width >= widest
    arr = np.asarray(png.convert("RGB"))
    coloured = np.argwhere((arr.max(axis=2) - arr.min(axis=2)) > 60)  # the concepts' colours (not black, white)
    cols = coloured[:, 1]
    assert cols.min() == 0 and cols.max() - cols.min() + 1 >= 64  # the image drawn at its own size, from the left
