"""The boundary refinement of one prediction (stage 7b), from a :class:`~insid3lab.method.trace.Trace`.

Four panels over the target: the bilinearly upsampled mask before refinement, the band the
refiner re-decides (with both boundaries), the refined mask, and the pixels the refinement added
and removed. A trace made without a refiner (``refine="bilinear"``) shows the upsampled mask and
says so in the other panels.
"""

from __future__ import annotations

import numpy as np
from matplotlib.patches import Patch

from insid3lab.viz.common import GT_COLOR, PRED_COLOR, as_mask, blank, empty_figure, image_extent, iou
from insid3lab.viz.draw import draw_image, draw_mask, draw_outline, overlay_rgba

__all__ = ["REFINEMENT_PANELS", "refinement"]

#: The axes of :func:`refinement`, left to right (their titles start with these words).
REFINEMENT_PANELS = ("before refinement", "band", "refined", "changes")

#: Colours of the band, of the pixels the refinement added and of those it removed.
BAND_COLOR = (1.0, 0.85, 0.0)
ADDED_COLOR = (0.0, 0.75, 1.0)
REMOVED_COLOR = (1.0, 0.0, 0.8)
BEFORE_COLOR = (1.0, 1.0, 1.0)


def _zoom(axes, band: np.ndarray, hw: tuple[int, int], margin: float) -> None:
    """Limit every axis to the band's bounding box (in the displayed (H, W) pixels) plus a margin."""
    rows, cols = np.nonzero(band)
    if rows.size == 0:
        return
    h, w = band.shape
    H, W = hw
    y0, y1 = rows.min() * H / h, (rows.max() + 1) * H / h
    x0, x1 = cols.min() * W / w, (cols.max() + 1) * W / w
    pad = margin * max(y1 - y0, x1 - x0)
    for ax in axes:
        ax.set_xlim(max(-0.5, x0 - pad - 0.5), min(W - 0.5, x1 + pad - 0.5))
        ax.set_ylim(min(H - 0.5, y1 + pad - 0.5), max(-0.5, y0 - pad - 0.5))


def _title(text: str, mask: np.ndarray, ground_truth) -> str:
    return text if ground_truth is None else f"{text}  IoU {iou(mask, ground_truth):.3f}"


def refinement(trace, *, ground_truth=None, zoom: bool = False, margin: float = 0.15, title: str | None = None,
               panel: float = 3.2):  # fmt: skip
    """The mask before refinement, the band, the refined mask and the changed pixels, in one 1 x 4 figure.

    Args:
        trace: from ``model.segment(target, return_trace=True)``; it must hold ``target_image`` and
            ``mask_upsampled``. With a refiner it also holds ``mask_refined`` (and ``refine_band``
            when the refiner has a band, as ``refine="crf"``).
        ground_truth: optional (H, W) target mask: a green outline on every panel, and the IoU of
            the mask before and after refinement in the titles.
        zoom: show only the band's bounding box (plus ``margin`` of its size), where the changes are.
        title: figure title (default: the refiner, the band's and the changes' pixel counts).
        panel: inches per panel side.

    Returns:
        Figure with four axes whose titles start with :data:`REFINEMENT_PANELS`. Without a refinement in
        the trace the first shows the upsampled mask and the three others say there is none.

    Raises:
        ValueError: the trace lacks ``target_image`` or ``mask_upsampled``.
    """
    missing = [n for n in ("target_image", "mask_upsampled") if getattr(trace, n, None) is None]
    if missing:
        raise ValueError(
            f"refinement: the trace has no {', '.join(missing)}; pass the Trace of segment(..., return_trace=True)"
        )
    t = trace.cpu()
    hw = t.target_size or tuple(t.mask_upsampled.shape)
    before = as_mask(t.mask_upsampled, "mask_upsampled")
    refine = (t.settings or {}).get("refine", "bilinear")
    fig = empty_figure(4 * panel, panel + 0.4)
    axes = fig.subplots(1, 4)
    draw_mask(axes[0], t.target_image, before, hw=hw, ground_truth=ground_truth, show_iou=False,
              title=_title(f"before refinement ({int(before.sum())} px)", before, ground_truth))  # fmt: skip

    if t.mask_refined is None:
        note = f"no refinement in this trace (refine={refine!r}):\nsegment with refine='crf' to see one"
        for ax, name in zip(axes[1:], REFINEMENT_PANELS[1:]):
            blank(ax, note)
            ax.set_title(name, fontsize=9)
        fig.suptitle(title or "refinement: none")
        return fig

    after = as_mask(t.mask_refined, "mask_refined")
    band = as_mask(t.refine_band, "refine_band") if t.refine_band is not None else before ^ after
    band_note = "band" if t.refine_band is not None else "band (not given by the refiner: the changed pixels)"
    extent = image_extent(hw)

    H, W = draw_image(axes[1], t.target_image, hw=hw, title=f"{band_note} ({int(band.sum())} px)")
    axes[1].imshow(overlay_rgba(band, BAND_COLOR, 0.45), extent=extent, interpolation="nearest")
    draw_outline(axes[1], before, (H, W), color=BEFORE_COLOR, linewidth=1.0)
    draw_outline(axes[1], after, (H, W), color=PRED_COLOR, linewidth=1.0)

    draw_mask(axes[2], t.target_image, after, hw=hw, ground_truth=ground_truth, show_iou=False,
              title=_title(f"refined ({int(after.sum())} px)", after, ground_truth))  # fmt: skip
    draw_outline(axes[2], before, (H, W), color=BEFORE_COLOR, linewidth=0.8)

    added, removed = after & ~before, before & ~after
    draw_image(axes[3], t.target_image, hw=hw, title=f"changes (+{int(added.sum())} / -{int(removed.sum())} px)")
    axes[3].imshow(overlay_rgba(added, ADDED_COLOR, 0.8), extent=extent, interpolation="nearest")
    axes[3].imshow(overlay_rgba(removed, REMOVED_COLOR, 0.8), extent=extent, interpolation="nearest")
    handles = [Patch(color=ADDED_COLOR, label="added"), Patch(color=REMOVED_COLOR, label="removed")]
    if ground_truth is not None:
        gt = as_mask(ground_truth, "ground_truth")
        for ax in (axes[1], axes[3]):
            draw_outline(ax, gt, (H, W), color=GT_COLOR, linewidth=1.2)
        handles.append(Patch(color=GT_COLOR, label="ground truth"))
    axes[3].legend(handles=handles, loc="lower right", fontsize=7, framealpha=0.7)

    if zoom:
        _zoom(axes, band, (H, W), margin)
    name = refine if isinstance(refine, str) else "callable"
    fig.suptitle(title or f"refinement ({name}): the band's {int(band.sum())} px re-decided, "
                          f"{int((added | removed).sum())} changed")  # fmt: skip
    return fig
