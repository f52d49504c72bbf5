"""Key-for-key conversion between Meta's DINOv3 ViT state dicts and transformers'.

Meta (``dinov3.models.vision_transformer``)      transformers (``DINOv3ViTModel``)
-------------------------------------------      ----------------------------------
cls_token (1, 1, C)                              embeddings.cls_token (1, 1, C)
storage_tokens (1, R, C)                         embeddings.register_tokens (1, R, C)
mask_token (1, C)                                embeddings.mask_token (1, 1, C)
patch_embed.proj.{weight,bias}                   embeddings.patch_embeddings.{weight,bias}
rope_embed.periods (C/heads/4,)                  rope_embeddings.inv_freq = 1 / periods (not saved)
blocks.i.norm1 / norm2                           model.layer.i.norm1 / norm2
blocks.i.attn.qkv.weight (3C, C)                 model.layer.i.attention.{q,k,v}_proj.weight
blocks.i.attn.qkv.bias * bias_mask (3C,)         {q,v}_proj.bias (the key bias is masked to zero)
blocks.i.attn.proj                               model.layer.i.attention.o_proj
blocks.i.ls1.gamma / ls2.gamma                   model.layer.i.layer_scale1.lambda1 / layer_scale2.lambda1
blocks.i.mlp.fc1 / fc2                           model.layer.i.mlp.up_proj / down_proj
blocks.i.mlp.w1 / w2 / w3 (SwiGLU)               model.layer.i.mlp.gate_proj / up_proj / down_proj
norm                                             norm
local_cls_norm (SAT-493M ViT-L, 7B)              training only: kept aside, never used at inference

Both directions copy tensors without arithmetic, so transformers -> Meta ->
transformers is bitwise exact.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace

import torch

from insid3lab.backbone.archs import MetaArch, arch_from_filename, get_arch, match_released_arch

__all__ = [
    "CheckpointFormatError",
    "detect_format",
    "infer_meta_arch",
    "meta_to_hf_state_dict",
    "hf_to_meta_state_dict",
    "unwrap_state_dict",
]


class CheckpointFormatError(ValueError):
    """A checkpoint file that is not a DINOv3 ViT in a format insid3lab reads."""


_WRAPPER_KEYS = ("model", "state_dict", "teacher", "student", "module", "model_state_dict")
_PREFIXES = ("module.", "backbone.", "model.backbone.", "teacher.backbone.", "encoder.")


def unwrap_state_dict(obj, source: str = "<checkpoint>") -> dict[str, torch.Tensor]:
    """Find the tensor dictionary inside a loaded checkpoint.

    Accepts a plain state dict or one nested under a usual wrapper key
    (``model``, ``state_dict``, ``teacher``...), and strips ``module.``/``backbone.`` prefixes.
    """
    for _ in range(4):
        if not isinstance(obj, Mapping):
            break
        # A state dict maps names to tensors; a training checkpoint maps a wrapper key to one.
        inner = next((obj[k] for k in _WRAPPER_KEYS if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            break
        obj = inner
    if not isinstance(obj, Mapping):
        raise CheckpointFormatError(
            f"{source}: expected a state dict (a mapping of names to tensors), found {type(obj).__name__}"
        )
    sd = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not sd:
        raise CheckpointFormatError(f"{source}: the checkpoint holds no tensors")
    for prefix in _PREFIXES:
        if sd and all(k.startswith(prefix) for k in sd):
            sd = {k[len(prefix) :]: v for k, v in sd.items()}
    return sd


def detect_format(sd: Mapping[str, torch.Tensor], source: str = "<checkpoint>") -> str:
    """``"meta"`` or ``"hf"`` for a DINOv3 ViT state dict; a clear error for anything else."""
    keys = set(sd)
    if "cls_token" in keys and any(k.startswith("blocks.") for k in keys):
        if "rope_embed.periods" in keys:
            return "meta"
        if "pos_embed" in keys:
            raise CheckpointFormatError(
                f"{source}: this looks like a DINOv2 (or DINO) ViT checkpoint: it has a learned 'pos_embed' "
                "and no 'rope_embed.periods'. insid3lab needs a DINOv3 ViT (RoPE, 4 register tokens)."
            )
        raise CheckpointFormatError(
            f"{source}: a ViT state dict without 'rope_embed.periods': not a DINOv3 ViT checkpoint"
        )
    if "embeddings.cls_token" in keys and any(re.match(r"(model\.)?layer\.\d+\.", k) for k in keys):
        if "embeddings.position_embeddings" in keys:
            raise CheckpointFormatError(
                f"{source}: this looks like a transformers DINOv2 checkpoint (it has 'embeddings.position_embeddings'); "
                "insid3lab needs a DINOv3 ViT"
            )
        return "hf"
    if any(k.startswith(("downsample_layers.", "stages.")) for k in keys) or any(
        k.startswith(("model.stages.", "stages.")) for k in keys
    ):
        raise CheckpointFormatError(
            f"{source}: this looks like a ConvNeXt checkpoint (it has 'downsample_layers'/'stages' keys); "
            "insid3lab needs a DINOv3 ViT (vits16, vitb16, vitl16, ... files)"
        )
    sample = ", ".join(sorted(keys)[:5])
    raise CheckpointFormatError(
        f"{source}: not a DINOv3 ViT state dict. Expected Meta keys ('cls_token', 'storage_tokens', "
        f"'rope_embed.periods', 'blocks.N...') or transformers keys ('embeddings.cls_token', 'model.layer.N...'); "
        f"found {len(keys)} keys such as {sample}"
    )


def _block_indices(sd: Mapping[str, torch.Tensor], pattern: str) -> list[int]:
    rx = re.compile(pattern)
    return sorted({int(m.group(1)) for k in sd if (m := rx.match(k))})


def infer_meta_arch(sd: Mapping[str, torch.Tensor], filename: str = "", arch: str | None = None) -> MetaArch:
    """The architecture of a Meta state dict, read from its tensors.

    Head count comes from the RoPE periods (head_dim = 4 * len(periods)); the
    feed-forward kind from the key names; widths from the weight shapes. When the
    file name or ``arch`` names a released model, that name's builder must agree
    with the tensors, so a mislabelled file fails loudly. Otherwise the result is
    the released architecture with these sizes, or a ``"custom"`` one.

    Only shapes are read, so tensors on the ``meta`` device work.
    """
    source = filename or "checkpoint"
    required = ["cls_token", "rope_embed.periods", "patch_embed.proj.weight", "blocks.0.attn.qkv.weight"]
    missing = [k for k in required if k not in sd]
    if missing:
        raise CheckpointFormatError(f"{source}: a DINOv3 ViT state dict needs {missing}, which this one lacks")
    embed_dim = sd["cls_token"].shape[-1]
    depth = len(_block_indices(sd, r"blocks\.(\d+)\."))
    head_dim = 4 * sd["rope_embed.periods"].numel()
    if head_dim == 0 or embed_dim % head_dim:
        raise CheckpointFormatError(
            f"{source}: embed dim {embed_dim} is not a multiple of the RoPE head dim {head_dim} "
            f"(4 x {sd['rope_embed.periods'].numel()} periods)"
        )
    num_heads = embed_dim // head_dim
    gated = "blocks.0.mlp.w1.weight" in sd
    ffn_key = "blocks.0.mlp.w1.weight" if gated else "blocks.0.mlp.fc1.weight"
    if ffn_key not in sd:
        raise CheckpointFormatError(
            f"{source}: no feed-forward weights ('blocks.0.mlp.fc1.weight' or 'blocks.0.mlp.w1.weight')"
        )
    hidden = sd[ffn_key].shape[0]
    n_reg = sd["storage_tokens"].shape[1] if "storage_tokens" in sd else 0
    patch = sd["patch_embed.proj.weight"].shape[-1]
    qkv_bias = "blocks.0.attn.qkv.bias" in sd
    got = (embed_dim, depth, num_heads, hidden, gated)
    named = arch or arch_from_filename(filename)
    if named is not None:
        base = get_arch(named)
        want = base.sizes
        if got != want:
            raise CheckpointFormatError(
                f"{source}: the weights (embed_dim, depth, heads, ffn width, gated) = {got} "
                f"do not match the {base.name} architecture {want}"
                + (f" given by arch={arch!r}" if arch else " named by the file")
            )
    else:
        base = match_released_arch(*got)
    if base is not None:
        return replace(base, qkv_bias=qkv_bias, patch_size=patch, n_storage_tokens=n_reg)
    return MetaArch(
        name="custom",
        embed_dim=embed_dim,
        depth=depth,
        num_heads=num_heads,
        ffn_ratio=hidden / embed_dim,
        ffn_layer="swiglu" if gated else "mlp",
        qkv_bias=qkv_bias,
        patch_size=patch,
        n_storage_tokens=n_reg,
        ffn_hidden=hidden,
    )


def meta_to_hf_state_dict(
    sd: Mapping[str, torch.Tensor],
) -> tuple[dict[str, torch.Tensor], torch.Tensor, dict[str, torch.Tensor], bool]:
    """Convert Meta keys to ``DINOv3ViTModel`` keys.

    Returns:
        hf_sd: the transformers state dict.
        periods: (head_dim/4,) the checkpoint's RoPE periods.
        extras: Meta tensors with no transformers counterpart (``local_cls_norm``, ``cls_norm``).
        key_bias: whether the (masked) key bias is non-zero and must be kept.
    """
    out: dict[str, torch.Tensor] = {}
    extras: dict[str, torch.Tensor] = {}
    C = sd["cls_token"].shape[-1]
    out["embeddings.cls_token"] = sd["cls_token"].reshape(1, 1, C)
    if "storage_tokens" in sd:
        out["embeddings.register_tokens"] = sd["storage_tokens"]
    else:
        out["embeddings.register_tokens"] = sd["cls_token"].new_zeros(1, 0, C)
    out["embeddings.mask_token"] = (
        sd["mask_token"].reshape(1, 1, C) if "mask_token" in sd else sd["cls_token"].new_zeros(1, 1, C)
    )
    out["embeddings.patch_embeddings.weight"] = sd["patch_embed.proj.weight"]
    out["embeddings.patch_embeddings.bias"] = sd["patch_embed.proj.bias"]
    out["norm.weight"] = sd["norm.weight"]
    out["norm.bias"] = sd["norm.bias"]
    key_bias = False
    for i in _block_indices(sd, r"blocks\.(\d+)\."):
        b, h = f"blocks.{i}.", f"model.layer.{i}."
        for n in ("norm1", "norm2"):
            out[h + n + ".weight"] = sd[b + n + ".weight"]
            out[h + n + ".bias"] = sd[b + n + ".bias"]
        q, k, v = sd[b + "attn.qkv.weight"].chunk(3, dim=0)
        out[h + "attention.q_proj.weight"] = q
        out[h + "attention.k_proj.weight"] = k
        out[h + "attention.v_proj.weight"] = v
        if b + "attn.qkv.bias" in sd:
            bias = sd[b + "attn.qkv.bias"]
            mask = sd.get(b + "attn.qkv.bias_mask")
            if mask is not None and not bool(torch.all(mask == 1)):
                # Only the masked key part may differ from the stored bias; keep q/v as stored.
                qb, kb, vb = bias.chunk(3)
                qm, km, vm = mask.chunk(3)
                if not (bool(torch.all(qm == 1)) and bool(torch.all(vm == 1))):
                    qb, vb = qb * qm.to(qb.dtype), vb * vm.to(vb.dtype)
                kb = kb * km.to(kb.dtype)
            else:
                qb, kb, vb = bias.chunk(3)
            out[h + "attention.q_proj.bias"] = qb
            out[h + "attention.v_proj.bias"] = vb
            if bool(torch.any(kb != 0)):
                key_bias = True
            out[h + "attention.k_proj.bias"] = kb
        out[h + "attention.o_proj.weight"] = sd[b + "attn.proj.weight"]
        if b + "attn.proj.bias" in sd:
            out[h + "attention.o_proj.bias"] = sd[b + "attn.proj.bias"]
        out[h + "layer_scale1.lambda1"] = (
            sd[b + "ls1.gamma"] if b + "ls1.gamma" in sd else torch.ones(C, dtype=sd["cls_token"].dtype)
        )
        out[h + "layer_scale2.lambda1"] = (
            sd[b + "ls2.gamma"] if b + "ls2.gamma" in sd else torch.ones(C, dtype=sd["cls_token"].dtype)
        )
        if b + "mlp.w1.weight" in sd:
            names = {"w1": "gate_proj", "w2": "up_proj", "w3": "down_proj"}
        else:
            names = {"fc1": "up_proj", "fc2": "down_proj"}
        for m_name, h_name in names.items():
            out[h + f"mlp.{h_name}.weight"] = sd[b + f"mlp.{m_name}.weight"]
            if b + f"mlp.{m_name}.bias" in sd:
                out[h + f"mlp.{h_name}.bias"] = sd[b + f"mlp.{m_name}.bias"]
    if not key_bias:
        for k in [k for k in out if k.endswith("attention.k_proj.bias")]:
            del out[k]
    for k, v in sd.items():
        if k.startswith(("local_cls_norm.", "cls_norm.")):
            extras[k] = v
    return out, sd["rope_embed.periods"], extras, key_bias


def hf_to_meta_state_dict(
    sd: Mapping[str, torch.Tensor],
    periods: torch.Tensor,
    extras: Mapping[str, torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """Convert ``DINOv3ViTModel`` keys to Meta keys (the inverse of :func:`meta_to_hf_state_dict`).

    The key-bias mask is written as Meta's ``LinearKMaskedBias`` expects: ones for the
    query and value thirds, zeros for the key third (unless the model has a key bias).
    """
    sd = {re.sub(r"^layer\.", "model.layer.", k): v for k, v in sd.items()}
    out: dict[str, torch.Tensor] = {}
    C = sd["embeddings.cls_token"].shape[-1]
    out["cls_token"] = sd["embeddings.cls_token"]
    if sd["embeddings.register_tokens"].shape[1] > 0:
        out["storage_tokens"] = sd["embeddings.register_tokens"]
    out["mask_token"] = sd["embeddings.mask_token"].reshape(1, C)
    out["patch_embed.proj.weight"] = sd["embeddings.patch_embeddings.weight"]
    out["patch_embed.proj.bias"] = sd["embeddings.patch_embeddings.bias"]
    out["rope_embed.periods"] = periods
    for i in _block_indices(sd, r"model\.layer\.(\d+)\."):
        b, h = f"blocks.{i}.", f"model.layer.{i}."
        for n in ("norm1", "norm2"):
            out[b + n + ".weight"] = sd[h + n + ".weight"]
            out[b + n + ".bias"] = sd[h + n + ".bias"]
        out[b + "attn.qkv.weight"] = torch.cat([sd[h + f"attention.{p}_proj.weight"] for p in "qkv"], dim=0)
        if h + "attention.q_proj.bias" in sd:
            qb = sd[h + "attention.q_proj.bias"]
            kb = sd.get(h + "attention.k_proj.bias")
            has_k = kb is not None
            if kb is None:
                kb = torch.zeros_like(qb)
            out[b + "attn.qkv.bias"] = torch.cat([qb, kb, sd[h + "attention.v_proj.bias"]])
            mask = torch.ones(3 * C, dtype=qb.dtype)
            if not has_k:
                mask[C : 2 * C] = 0
            out[b + "attn.qkv.bias_mask"] = mask
        out[b + "attn.proj.weight"] = sd[h + "attention.o_proj.weight"]
        if h + "attention.o_proj.bias" in sd:
            out[b + "attn.proj.bias"] = sd[h + "attention.o_proj.bias"]
        out[b + "ls1.gamma"] = sd[h + "layer_scale1.lambda1"]
        out[b + "ls2.gamma"] = sd[h + "layer_scale2.lambda1"]
        if h + "mlp.gate_proj.weight" in sd:
            names = {"w1": "gate_proj", "w2": "up_proj", "w3": "down_proj"}
        else:
            names = {"fc1": "up_proj", "fc2": "down_proj"}
        for m_name, h_name in names.items():
            out[b + f"mlp.{m_name}.weight"] = sd[h + f"mlp.{h_name}.weight"]
            if h + f"mlp.{h_name}.bias" in sd:
                out[b + f"mlp.{m_name}.bias"] = sd[h + f"mlp.{h_name}.bias"]
    out["norm.weight"] = sd["norm.weight"]
    out["norm.bias"] = sd["norm.bias"]
    if extras:
        out.update(extras)
    return out
