"""Normalisation: token norms and per-channel scale per block, before and after the final LayerNorm."""

from __future__ import annotations

import numpy as np

from insid3lab.stages.analysis import TOKEN_KINDS, token_statistics, tokens_statistics
from insid3lab.viz.common import new_figure

__all__ = ["TOKEN_KINDS", "normalisation_statistics", "token_statistics", "tokens_statistics"]

_STATS = ("norm_mean", "channel_rms_median", "channel_rms_max")

_KIND_COLORS = {"patch": (0.12, 0.47, 0.71), "cls": (0.84, 0.15, 0.16), "registers": (0.17, 0.63, 0.17)}
_TITLES = {
    "norm_mean": "mean token L2 norm",
    "channel_rms_median": "per-channel RMS (median channel)",
    "channel_rms_max": "per-channel RMS (largest channel)",
}


def normalisation_statistics(stats: dict, *, title: str | None = None):
    """Token norm and per-channel scale per block: solid pre-norm, dashed post-LayerNorm.

    Args:
        stats: from :func:`token_statistics` or :func:`tokens_statistics`.

    Returns:
        Figure with three axes (norm, median channel RMS, largest channel RMS), log scale, one line
        per (token kind, pre/post) present.
    """
    blocks = np.asarray(stats["blocks"])
    fig, axes = new_figure(1, 3, panel=3.4, height=3.0)
    for ax, stat in zip(axes, _STATS):
        for kind in TOKEN_KINDS:
            for which, style in (("pre", "-"), ("post", "--")):
                series = stats.get(kind, {}).get(which)
                if series is None:
                    continue
                ax.plot(
                    blocks,
                    series[stat],
                    linestyle=style,
                    marker="o",
                    markersize=3,
                    color=_KIND_COLORS[kind],
                    label=f"{kind} {'pre-norm' if which == 'pre' else 'post-norm'}",
                )
        ax.set_yscale("log")
        ax.set_xlabel("block", fontsize=8)
        ax.set_title(_TITLES[stat], fontsize=9)
        ax.set_xticks(blocks)
        ax.tick_params(labelsize=7)
    axes[0].legend(fontsize=6)
    if title:
        fig.suptitle(title)
    return fig
