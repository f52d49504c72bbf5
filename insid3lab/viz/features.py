"""PCA of feature maps as RGB: one image, a jointly fitted pair, original vs debiased, across layers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from insid3lab.stages.analysis import layer_features
from insid3lab.viz.common import new_figure, pca_rgb
from insid3lab.viz.draw import draw_image, draw_rgb

__all__ = ["feature_pca", "feature_pca_debiased", "feature_pca_layers", "feature_pca_pair", "layer_features"]


def _as_list(x) -> tuple[list, bool]:
    if isinstance(x, (list, tuple)):
        return list(x), False
    return [x], True


def feature_pca(features, image=None, *, title: str | None = None):
    """The first three principal components of one feature map, as RGB.

    Args:
        features: (C, h, w) or (1, C, h, w) tensor/array.
        image: optional image shown on the left (anything ``to_display_array`` accepts).
        title: figure title.

    Returns:
        Figure with [image,] PCA axes; the PCA image is (h, w, 3) in [0, 1].
    """
    rgb = pca_rgb(features)
    fig, axes = new_figure(1, 2 if image is not None else 1, squeeze=False)
    axes = axes[0]
    hw = None
    if image is not None:
        hw = draw_image(axes[0], image, title="image")
    draw_rgb(axes[-1], rgb, hw=hw, title=f"PCA of features ({rgb.shape[0]}x{rgb.shape[1]})")
    if title:
        fig.suptitle(title)
    return fig


def feature_pca_pair(
    reference_features,
    target_features,
    *,
    reference_image=None,
    target_image=None,
    names: Sequence[str] = ("reference", "target"),
    title: str | None = None,
):
    """PCA fitted on the cells of both maps together: the same colour means the same feature.

    Args:
        reference_features, target_features: (C, h, w) maps with the same C (grids may differ).
        reference_image, target_image: optional images for a first row.
        names: what to call the two maps in the titles.

    Returns:
        Figure with 2 (PCA) or 4 (images, then PCA) axes.
    """
    rgb_r, rgb_t = pca_rgb([reference_features, target_features])
    with_images = reference_image is not None or target_image is not None
    fig, axes = new_figure(2 if with_images else 1, 2, squeeze=False)
    hws = [None, None]
    if with_images:
        for i, (ax, img, name) in enumerate(zip(axes[0], (reference_image, target_image), names)):
            if img is None:
                ax.set_axis_off()
            else:
                hws[i] = draw_image(ax, img, title=name)
    draw_rgb(axes[-1][0], rgb_r, hw=hws[0], title=f"{names[0]}: PCA (joint fit)")
    draw_rgb(axes[-1][1], rgb_t, hw=hws[1], title=f"{names[1]}: PCA (joint fit)")
    if title:
        fig.suptitle(title)
    return fig


def feature_pca_debiased(
    original, debiased, *, images=None, names: Sequence[str] | None = None, title: str | None = None
):
    """Original features beside debiased ones, each row a separate PCA fitted jointly over its maps.

    Args:
        original: a (C, h, w) map, or a list of maps (e.g. [reference, target]), L2-normalised.
        debiased: the same maps after removing the positional subspace.
        images: optional image or list of images (one per map) for a first row.
        names: column titles.

    Returns:
        Figure with rows [images,] original, debiased and one column per map.
    """
    orig, _ = _as_list(original)
    deb, _ = _as_list(debiased)
    if len(orig) != len(deb):
        raise ValueError(f"original has {len(orig)} maps but debiased has {len(deb)}: give the same maps twice")
    imgs = None if images is None else _as_list(images)[0]
    if imgs is not None and len(imgs) != len(orig):
        raise ValueError(f"images has {len(imgs)} entries for {len(orig)} maps")
    names = list(names) if names is not None else [f"map {i}" for i in range(len(orig))] if len(orig) > 1 else [""]
    rows = 3 if imgs is not None else 2
    fig, axes = new_figure(rows, len(orig), squeeze=False)
    hws = [None] * len(orig)
    if imgs is not None:
        for i, (ax, img, name) in enumerate(zip(axes[0], imgs, names)):
            hws[i] = draw_image(ax, img, title=name or "image")
    for ax, rgb, name, hw in zip(axes[-2], pca_rgb(orig), names, hws):
        draw_rgb(ax, rgb, hw=hw, title=f"original {name}".strip())
    for ax, rgb, name, hw in zip(axes[-1], pca_rgb(deb), names, hws):
        draw_rgb(ax, rgb, hw=hw, title=f"debiased {name}".strip())
    if title:
        fig.suptitle(title)
    return fig


def feature_pca_layers(features_by_layer: Mapping, *, images=None, title: str | None = None):
    """PCA of the features of several blocks: one column per block.

    Args:
        features_by_layer: {block: (C, h, w) map} or {block: [maps, one per image]} (as
            :func:`layer_features` returns); per block the PCA is fitted jointly over its maps.
        images: optional image or list of images for a first column.

    Returns:
        Figure with one row per image and one column per block (plus the image column).
    """
    if not features_by_layer:
        raise ValueError("features_by_layer is empty: give {block: features}")
    per_layer = {b: _as_list(v)[0] for b, v in features_by_layer.items()}
    n_img = len(next(iter(per_layer.values())))
    for b, v in per_layer.items():
        if len(v) != n_img:
            raise ValueError(f"block {b} has {len(v)} maps but the first block has {n_img}")
    imgs = None if images is None else _as_list(images)[0]
    if imgs is not None and len(imgs) != n_img:
        raise ValueError(f"images has {len(imgs)} entries for {n_img} maps per block")
    cols = len(per_layer) + (1 if imgs is not None else 0)
    fig, axes = new_figure(n_img, cols, panel=2.6, squeeze=False)
    hws = [None] * n_img
    for r in range(n_img):
        if imgs is not None:
            hws[r] = draw_image(axes[r][0], imgs[r], title="image" if r == 0 else None)
    off = 1 if imgs is not None else 0
    for c, (b, maps) in enumerate(per_layer.items()):
        for r, rgb in enumerate(pca_rgb(maps)):
            draw_rgb(axes[r][c + off], rgb, hw=hws[r], title=f"block {b}" if r == 0 else None)
    if title:
        fig.suptitle(title)
    return fig
