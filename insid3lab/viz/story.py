"""The whole story of one prediction, from a :class:`~insid3lab.method.trace.Trace`, in one figure."""

from __future__ import annotations

from insid3lab.viz.common import REF_COLOR, as_mask, as_numpy, blank, empty_figure, iou, pca_rgb
from insid3lab.viz.draw import (
    draw_candidates,
    draw_clusters,
    draw_image,
    draw_mask,
    draw_outline,
    draw_rgb,
    draw_scores,
    draw_similarity,
    draw_votes,
)

__all__ = ["PANELS", "draw_panel", "settings_line", "story", "trace_panel"]

#: Panel names understood by :func:`trace_panel` / :func:`draw_panel`, in the story's order.
PANELS = (
    "reference",
    "target",
    "pca_reference",
    "pca_target",
    "similarity",
    "votes",
    "candidates",
    "clusters",
    "scores",
    "prediction",
)


def settings_line(settings: dict) -> str:
    """A one-line summary of a trace's settings: random weights first when they are, S, the r in use, τ, merge
    threshold, debiasing, clusterer unless auto, refiner unless bilinear."""
    if not settings:
        return ""
    parts = ["RANDOM weights"] if settings.get("random_weights") else []
    if "image_size" in settings:
        parts.append(f"S={settings['image_size']}")
    if "effective_components" in settings or "svd_components" in settings:
        parts.append(f"r={settings.get('effective_components', settings.get('svd_components'))}")
    if "tau" in settings:
        parts.append(f"τ={settings['tau']:.2f}")
    if "merge_threshold" in settings:
        parts.append(f"merge={settings['merge_threshold']:.2f}")
    if "debias" in settings:
        parts.append("debiased" if settings["debias"] else "not debiased")
    if settings.get("clustering") not in (None, "auto"):
        parts.append(f"clustering={settings['clustering']}")
    if settings.get("refine") not in (None, "bilinear"):
        parts.append(f"refine={settings['refine']}")
    return ", ".join(parts)


def _require(trace, *names):
    missing = [n for n in names if getattr(trace, n) is None]
    if missing:
        raise ValueError(f"trace has no {', '.join(missing)}: pass the Trace of segment(..., return_trace=True)")


def draw_panel(ax, trace, name: str, *, ground_truth=None, shot: int = 0) -> None:
    """Draw one named panel of a trace into ``ax`` (see :data:`PANELS`)."""
    if name not in PANELS:
        raise ValueError(f"panel {name!r}: allowed {', '.join(PANELS)}")
    t = trace
    thw = t.target_size
    clustered = t.cluster_labels is not None
    if name == "reference":
        _require(t, "reference_images", "reference_masks")
        k = t.reference_images.shape[0]
        hw = t.reference_sizes[shot] if t.reference_sizes else None
        draw_mask(
            ax,
            t.reference_images[shot],
            t.reference_masks[shot],
            hw=hw,
            color=REF_COLOR,
            title="reference + mask" + (f" (shot {shot + 1}/{k})" if k > 1 else ""),
        )
    elif name == "target":
        _require(t, "target_image")
        draw_image(ax, t.target_image, hw=thw, title="target")
    elif name in ("pca_reference", "pca_target"):
        _require(t, "reference_features_norm", "target_features_norm")
        rgb_r, rgb_t = pca_rgb([t.reference_features_norm[shot], t.target_features_norm])
        if name == "pca_reference":
            hw = t.reference_sizes[shot] if t.reference_sizes else None
            draw_rgb(ax, rgb_r, hw=hw, title="features: PCA (reference)")
        else:
            draw_rgb(ax, rgb_t, hw=thw, title="features: PCA (target, same fit)")
    elif name == "similarity":
        _require(t, "forward_similarity", "target_image")
        draw_similarity(
            ax,
            t.forward_similarity,
            image=t.target_image,
            hw=thw,
            outline=t.forward_mask,
            title="forward similarity s(x)",
        )
    elif name == "votes":
        _require(t, "votes", "target_image")
        draw_votes(ax, t.votes, max(t.shots, 1), image=t.target_image, hw=thw, title="backward votes")
    elif name == "candidates":
        _require(t, "forward_mask", "backward_mask", "target_image")
        draw_candidates(
            ax,
            t.forward_mask,
            t.backward_mask,
            image=t.target_image,
            hw=thw,
            title=f"candidates ({int(as_numpy(t.candidates).sum())} cells)",
        )
    elif name == "clusters":
        if not clustered:
            blank(ax, "no candidate cell:\nnothing was clustered,\nthe prediction is empty")
            ax.set_title("clusters", fontsize=9)
        else:
            draw_clusters(
                ax,
                t.cluster_labels,
                image=t.target_image,
                hw=thw,
                seed=t.seed,
                title=f"{t.num_clusters} clusters, seed {t.seed}",
            )
    elif name == "scores":
        if not clustered:
            blank(ax, "no candidate cell:\nno cluster scores")
            ax.set_title("cluster scores", fontsize=9)
        else:
            draw_scores(
                ax,
                t.cluster_cross,
                t.cluster_intra,
                t.cluster_area,
                t.cluster_score,
                merge_threshold=float(t.settings.get("merge_threshold", 0.2)),
                seed=t.seed,
                overlap=t.cluster_overlap,
                title="cluster scores (clusters with candidates)",
            )
    elif name == "prediction":
        _require(t, "mask", "target_image")
        if t.mask_refined is None:
            draw_mask(ax, t.target_image, t.mask, hw=thw, ground_truth=ground_truth, title="prediction")
        else:  # the refined mask, the boundary before refinement as a thin white line
            name = t.settings.get("refine", "refiner") if t.settings else "refiner"
            draw_mask(
                ax, t.target_image, t.mask, hw=thw, ground_truth=ground_truth, title=f"prediction, refined ({name})"
            )
            before = as_mask(t.mask_upsampled, "mask_upsampled") if t.mask_upsampled is not None else None
            if before is not None:
                draw_outline(ax, before, thw or before.shape, color=(1.0, 1.0, 1.0), linewidth=0.7)


def trace_panel(trace, name: str, *, ground_truth=None, panel: float = 3.2):
    """One panel of :func:`story` as its own figure (one axis, plus a colour bar for the maps)."""
    fig = empty_figure(panel * (1.35 if name == "scores" else 1.0), panel)
    ax = fig.add_subplot(1, 1, 1)
    draw_panel(ax, trace.cpu(), name, ground_truth=ground_truth)
    return fig


def story(trace, *, ground_truth=None, title: str | None = None, panel: float = 3.2):
    """Every stage of one prediction in a single 2 x 5 figure.

    Row 1: reference + mask, target, joint PCA of the reference and target features, forward
    similarity. Row 2: backward votes, candidates, clusters with the seed, cluster scores with the
    merge threshold, the prediction (with the ground truth outlined and its IoU, when given). With a
    refiner the prediction is the refined mask, the boundary before refinement a thin white line
    (:func:`insid3lab.viz.refinement` shows the refinement itself).

    Args:
        trace: from ``model.segment(target, return_trace=True)``.
        ground_truth: optional (H, W) target mask.
        title: figure title (default: the settings and, with a ground truth, the IoU).

    Returns:
        Figure with 10 panel axes named in :data:`PANELS` (``fig.axes`` also holds colour bars).
    """
    t = trace.cpu()
    fig = empty_figure(5 * panel, 2 * panel + 0.4)
    axd = fig.subplot_mosaic([list(PANELS[:5]), list(PANELS[5:])])
    for name in PANELS:
        draw_panel(axd[name], t, name, ground_truth=ground_truth)
    head = title or "INSID3: " + settings_line(t.settings)
    if ground_truth is not None and title is None:
        head += f" — IoU {iou(t.mask, ground_truth):.3f}"
    fig.suptitle(head)
    return fig
