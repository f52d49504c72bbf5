"""Normalisation: token norms and per-channel scale per block, before and after the final LayerNorm."""

from __future__ import annotations

import numpy as np
import torch

from ..preprocess import preprocess_image
from .common import as_numpy, new_figure

__all__ = ["TOKEN_KINDS", "token_statistics", "tokens_statistics", "normalisation_statistics"]

#: Token kinds in a DINOv3 sequence, in order: 1 CLS, R registers, h*w patches.
TOKEN_KINDS = ("patch", "cls", "registers")
_STATS = ("norm_mean", "channel_rms_median", "channel_rms_max")


def _stats(tokens: np.ndarray) -> dict[str, float]:
    """(T, C) tokens -> mean L2 norm, median and max over channels of the RMS over tokens."""
    t = tokens.astype(np.float64)
    rms = np.sqrt((t**2).mean(axis=0))
    return {"norm_mean": float(np.linalg.norm(t, axis=1).mean()),
            "channel_rms_median": float(np.median(rms)), "channel_rms_max": float(rms.max())}


def tokens_statistics(blocks_pre, blocks_post=None, *, num_prefix_tokens: int, block_ids=None) -> dict:
    """Statistics of whole token sequences, e.g. transformers' ``hidden_states``.

    Args:
        blocks_pre: a sequence of (1, 1 + R + N, C) pre-norm sequences, one per block.
        blocks_post: the same after the final LayerNorm (optional).
        num_prefix_tokens: 1 + R (5 for DINOv3).
        block_ids: the block index of each entry (default 0, 1, ...).

    Returns:
        Same structure as :func:`token_statistics`.
    """
    pre = [as_numpy(b)[0] for b in blocks_pre]
    post = None if blocks_post is None else [as_numpy(b)[0] for b in blocks_post]
    p = int(num_prefix_tokens)

    def split(seq):
        return {"patch": seq[p:], "cls": seq[:1], "registers": seq[1:p]}

    out = {"blocks": np.asarray(block_ids if block_ids is not None else range(len(pre)))}
    for which, seqs in (("pre", pre), ("post", post)):
        if seqs is None:
            continue
        for kind in TOKEN_KINDS:
            parts = [split(s)[kind] for s in seqs]
            if parts[0].shape[0] == 0:
                continue
            st = [_stats(x) for x in parts]
            out.setdefault(kind, {})[which] = {k: np.array([s[k] for s in st]) for k in _STATS}
    return out


def token_statistics(encoder, image, *, image_size: int = 224) -> dict:
    """Per-block statistics of patch, CLS and register tokens, pre- and post-LayerNorm.

    Uses Meta's contract: ``get_intermediate_layers(x, n=all blocks, norm=False/True,
    return_class_token=True, return_extra_tokens=True)``.

    Returns:
        ``{"blocks": (L,) ids, kind: {"pre"|"post": {stat: (L,) array}}}`` for kind in patch, cls,
        registers and stat in ``norm_mean`` (mean token L2 norm), ``channel_rms_median`` and
        ``channel_rms_max`` (per-channel RMS over the tokens, summarised over channels).
    """
    n_blocks = int(getattr(encoder, "n_blocks"))
    device = getattr(encoder, "device", torch.device("cpu"))
    x, _ = preprocess_image(image, image_size, device=device)
    out: dict = {"blocks": np.arange(n_blocks)}
    with torch.inference_mode():
        for which, norm in (("pre", False), ("post", True)):
            layers = encoder.get_intermediate_layers(x, n=n_blocks, norm=norm, return_class_token=True,
                                                     return_extra_tokens=True)
            per_kind = {k: [] for k in TOKEN_KINDS}
            for patches, cls, regs in layers:
                per_kind["patch"].append(_stats(as_numpy(patches.float())[0]))
                per_kind["cls"].append(_stats(as_numpy(cls.float())[:1]))
                if regs.shape[1]:
                    per_kind["registers"].append(_stats(as_numpy(regs.float())[0]))
            for kind, st in per_kind.items():
                if st:
                    out.setdefault(kind, {})[which] = {k: np.array([s[k] for s in st]) for k in _STATS}
    return out


_KIND_COLORS = {"patch": (0.12, 0.47, 0.71), "cls": (0.84, 0.15, 0.16), "registers": (0.17, 0.63, 0.17)}
_TITLES = {"norm_mean": "mean token L2 norm", "channel_rms_median": "per-channel RMS (median channel)",
           "channel_rms_max": "per-channel RMS (largest channel)"}


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
                ax.plot(blocks, series[stat], linestyle=style, marker="o", markersize=3, color=_KIND_COLORS[kind],
                        label=f"{kind} {'pre-norm' if which == 'pre' else 'post-norm'}")
        ax.set_yscale("log")
        ax.set_xlabel("block", fontsize=8)
        ax.set_title(_TITLES[stat], fontsize=9)
        ax.set_xticks(blocks)
        ax.tick_params(labelsize=7)
    axes[0].legend(fontsize=6)
    if title:
        fig.suptitle(title)
    return fig
