"""Quantities the figures show that are not steps of the method: block features, token statistics,
the similarity of one cell. Computed here, drawn by :mod:`insid3lab.viz`.
"""

from __future__ import annotations

import numpy as np
import torch

from insid3lab.core.preprocess import preprocess_image

__all__ = ["TOKEN_KINDS", "cell_similarity_map", "layer_features", "token_statistics", "tokens_statistics"]


def as_numpy(x) -> np.ndarray:
    """A tensor (any device/dtype) or array-like as a numpy array."""
    if isinstance(x, torch.Tensor):
        t = x.detach().cpu()
        return (t.float() if t.dtype in (torch.bfloat16, torch.float16) else t).numpy()
    return np.asarray(x)


def _as_list(x) -> tuple[list, bool]:
    if isinstance(x, (list, tuple)):
        return list(x), False
    return [x], True


def layer_features(encoder, images, layers, *, image_size: int, norm: bool = True) -> dict:
    """Patch features of chosen blocks through Meta's ``get_intermediate_layers`` contract.

    Args:
        encoder: a backbone with ``get_intermediate_layers(x, n=[...], reshape=True, norm=...)``.
        images: one image or a list of images (anything ``preprocess_image`` accepts).
        layers: block indices (0-based; negative counts from the end when the encoder has ``n_blocks``).
        image_size: side S of the network input.
        norm: apply the final LayerNorm to every block (Meta's convention).

    Returns:
        {block: (C, h, w) float32 tensor} for one image, or {block: [one map per image]}.
    """
    imgs, single = _as_list(images)
    n_blocks = getattr(encoder, "n_blocks", None)
    blocks = []
    for b in layers:
        b = int(b)
        if b < 0:
            if n_blocks is None:
                raise ValueError(f"layers contains {b}: negative indices need an encoder with n_blocks")
            b += int(n_blocks)
        blocks.append(b)
    if len(set(blocks)) != len(blocks):
        raise ValueError(f"layers={list(layers)} names a block twice")
    order = sorted(blocks)
    device = getattr(encoder, "device", torch.device("cpu"))
    x = torch.cat(
        [preprocess_image(im, image_size, device=device, what=f"images[{i}]")[0] for i, im in enumerate(imgs)]
    )
    with torch.inference_mode():  # every block in one pass (extract_features reads one block per pass)
        outs = encoder.get_intermediate_layers(x, n=order, reshape=True, norm=norm)
    result = {b: [o[i].float().cpu() for i in range(len(imgs))] for b, o in zip(order, outs)}
    result = {b: result[b] for b in blocks}
    return {b: v[0] for b, v in result.items()} if single else result


def cell_similarity_map(reference_features, target_features, cell: tuple[int, int]) -> np.ndarray:
    """Cosine similarity of one reference cell to every target cell.

    Args:
        reference_features: (C, h, w) L2-normalised (optionally debiased) reference features.
        target_features: (C, h', w') features of the same kind.
        cell: (row, col) of the reference cell.

    Returns:
        (h', w') float64 map.
    """
    R = as_numpy(reference_features).astype(np.float64)
    T = as_numpy(target_features).astype(np.float64)
    if R.ndim == 4:
        R = R[0]
    if T.ndim == 4:
        T = T[0]
    row, col = int(cell[0]), int(cell[1])
    _, h, w = R.shape
    if not (0 <= row < h and 0 <= col < w):
        raise ValueError(f"cell={tuple(cell)}: (row, col) must lie in the reference grid of {h} x {w}")
    return np.tensordot(R[:, row, col], T, axes=(0, 0))


#: Token kinds in a DINOv3 sequence, in order: 1 CLS, R registers, h*w patches.
TOKEN_KINDS = ("patch", "cls", "registers")
_STATS = ("norm_mean", "channel_rms_median", "channel_rms_max")


def _stats(tokens: np.ndarray) -> dict[str, float]:
    """(T, C) tokens -> mean L2 norm, median and max over channels of the RMS over tokens."""
    t = tokens.astype(np.float64)
    rms = np.sqrt((t**2).mean(axis=0))
    return {
        "norm_mean": float(np.linalg.norm(t, axis=1).mean()),
        "channel_rms_median": float(np.median(rms)),
        "channel_rms_max": float(rms.max()),
    }


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
    n_blocks = int(encoder.n_blocks)
    device = getattr(encoder, "device", torch.device("cpu"))
    x, _ = preprocess_image(image, image_size, device=device)
    out: dict = {"blocks": np.arange(n_blocks)}
    with torch.inference_mode():
        for which, norm in (("pre", False), ("post", True)):
            layers = encoder.get_intermediate_layers(
                x, n=n_blocks, norm=norm, return_class_token=True, return_extra_tokens=True
            )
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
