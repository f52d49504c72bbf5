"""The positional subspace: the singular-value spectrum, its first directions, the black-image features."""

from __future__ import annotations

import numpy as np

from insid3lab.viz.common import as_numpy, empty_figure, new_figure, pca_rgb
from insid3lab.viz.draw import draw_map, draw_rgb, symmetric_limit

__all__ = ["black_image_pca", "component_maps", "positional_components", "positional_subspace", "singular_values"]


def _draw_spectrum(ax, S, components):
    s = as_numpy(S).astype(np.float64).reshape(-1)
    ax.semilogy(
        np.arange(1, len(s) + 1), np.maximum(s, 1e-12), marker=".", markersize=3, linewidth=1, label="singular value"
    )
    if components is not None:
        ax.axvline(components + 0.5, color="r", linestyle="--", linewidth=1.2, label=f"r = {components} removed")
        energy = float((s[:components] ** 2).sum() / max((s**2).sum(), 1e-24))
        ax.set_title(
            f"spectrum of the black-image features\nfirst {components} hold {100 * energy:.1f}% of the energy",
            fontsize=9,
        )
    else:
        ax.set_title("spectrum of the black-image features", fontsize=9)
    ax.set_xlabel("component", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7)


def singular_values(S, *, components: int | None = None, title: str | None = None):
    """The singular values of the centred black-image features (log scale).

    Args:
        S: (m,) singular values (``model.positional.svd()["S"]``).
        components: r, drawn as a vertical line between the kept and the rest.

    Returns:
        Figure with one axis holding the spectrum line (m points) and the r line.
    """
    fig, ax = new_figure(1, 1, panel=4.0, height=3.0)
    _draw_spectrum(ax, S, components)
    if title:
        fig.suptitle(title)
    return fig


def component_maps(black_features, U, count: int) -> np.ndarray:
    """Coefficients of every black-image cell on the first ``count`` singular vectors.

    Args:
        black_features: (C, h, w) or (1, C, h, w) L2-normalised black-image features.
        U: (C, m) left singular vectors.
        count: how many (clamped to m).

    Returns:
        (count, h, w) float64: ⟨x(cell) − mean, U[:, i]⟩.
    """
    X = as_numpy(black_features).astype(np.float64)
    if X.ndim == 4:
        X = X[0]
    C, h, w = X.shape
    Ua = as_numpy(U).astype(np.float64)
    if Ua.shape[0] != C:
        raise ValueError(f"U has {Ua.shape[0]} rows but the features have C = {C}")
    count = min(int(count), Ua.shape[1])
    flat = X.reshape(C, -1)
    flat = flat - flat.mean(axis=1, keepdims=True)
    return (Ua[:, :count].T @ flat).reshape(count, h, w)


def positional_components(black_features, U, *, count: int = 6, S=None, title: str | None = None):
    """The first singular vectors as images: each black-image cell projected on U[:, i].

    Each panel is on a diverging scale symmetric around 0; smooth ramps and bands are the
    position code that debiasing removes.

    Returns:
        Figure with ``count`` axes, each an (h, w) map.
    """
    maps = component_maps(black_features, U, count)
    s = None if S is None else as_numpy(S).reshape(-1)
    fig, axes = new_figure(1, len(maps), panel=2.2, squeeze=False)
    for i, (ax, m) in enumerate(zip(axes[0], maps)):
        lim = symmetric_limit(m, 98.0)
        name = f"u{i + 1}" + (f"  σ={s[i]:.2g}" if s is not None else "")
        draw_map(ax, m, cmap="RdBu_r", vmin=-lim, vmax=lim, colorbar=False, title=name)
    if title:
        fig.suptitle(title)
    return fig


def black_image_pca(black_features, *, title: str | None = None):
    """PCA (RGB) of the features of a black image: all the structure is positional.

    Returns:
        Figure with one (h, w, 3) image.
    """
    X = as_numpy(black_features)
    if X.ndim == 4:
        X = X[0]
    fig, ax = new_figure(1, 1)
    draw_rgb(ax, pca_rgb(X), title=title or "black image: PCA of its features")
    return fig


def positional_subspace(model, *, count: int = 4, title: str | None = None):
    """All of the above for a pipeline at its current image size and ``svd_components``.

    Args:
        model: an :class:`~insid3lab.model.insid3.INSID3` (its ``positional.svd()`` and
            ``positional.black_image_features()`` are used; the basis is cached by the model).
        count: how many singular vectors to show.

    Returns:
        Figure: spectrum, black-image PCA, then ``count`` component maps.
    """
    svd = model.positional.svd()
    black = model.positional.black_image_features()[0]
    from insid3lab.stages.features import l2_normalize

    black = l2_normalize(black, dim=0)
    r = model.positional.effective_components()
    fig = empty_figure(2.4 * max(count, 3), 5.6)
    top = ["spectrum"] * max(count - 1, 2) + ["black"]
    bottom = [f"u{i}" for i in range(count)] + ["."] * (len(top) - count)
    axd = fig.subplot_mosaic([top, bottom], empty_sentinel=".")
    _draw_spectrum(axd["spectrum"], svd["S"], r)
    draw_rgb(axd["black"], pca_rgb(black), title="black image: PCA")
    maps = component_maps(black, svd["U"], count)
    s = as_numpy(svd["S"]).reshape(-1)
    for i, m in enumerate(maps):
        lim = symmetric_limit(m, 98.0)
        draw_map(axd[f"u{i}"], m, cmap="RdBu_r", vmin=-lim, vmax=lim, colorbar=False, title=f"u{i + 1} σ={s[i]:.2g}")
    fig.suptitle(title or f"positional subspace at S = {model.image_size} (r = {r})")
    return fig
