"""DINOv3 ViT architectures as data.

Every hyper-parameter here follows Meta's own model builders for the released
DINOv3 ViT checkpoints (``dinov3/hub/backbones.py``): patch 16, LayerNorm with
eps 1e-5 ("layernormbf16"), layer-scale, 4 storage (register) tokens, a masked
key bias in the fused ``qkv`` projection, RoPE with base 100 and "separate"
coordinate normalisation. Only the sizes and the feed-forward kind differ.
"""

from __future__ import annotations

from dataclasses import dataclass

from transformers import DINOv3ViTConfig

__all__ = [
    "MetaArch",
    "META_ARCHS",
    "arch_from_filename",
    "config_for_arch",
    "get_arch",
    "match_released_arch",
    "swiglu_hidden_size",
]


@dataclass(frozen=True)
class MetaArch:
    """One DINOv3 ViT architecture, as Meta's builders define it.

    Attributes:
        name: compact name as in Meta's file names (``vitl16``, ``vith16plus``).
        embed_dim: token width C.
        depth: number of transformer blocks.
        num_heads: attention heads (head dim 64, except 128 for the 7B model).
        ffn_ratio: hidden width of the feed-forward layer divided by C.
        ffn_layer: ``"mlp"`` (GELU MLP) or ``"swiglu"``/``"swiglu64"`` (gated SiLU).
        qkv_bias: whether the fused ``qkv`` projection has a bias.
        patch_size: patch side in pixels.
        n_storage_tokens: register tokens after the CLS token.
        layer_norm_eps: LayerNorm epsilon.
        rope_base: RoPE base period.
        layerscale_init: initial layer-scale value (only used for random weights).
        ffn_hidden: the feed-forward hidden width when it is not derived from ``ffn_ratio``
            (architectures read from a checkpoint's tensors); None derives it as Meta does.
    """

    name: str
    embed_dim: int
    depth: int
    num_heads: int
    ffn_ratio: float
    ffn_layer: str = "mlp"
    qkv_bias: bool = True
    patch_size: int = 16
    n_storage_tokens: int = 4
    layer_norm_eps: float = 1e-5
    rope_base: float = 100.0
    layerscale_init: float = 1e-5
    ffn_hidden: int | None = None

    @property
    def sizes(self) -> tuple[int, int, int, int, bool]:
        """(embed_dim, depth, num_heads, intermediate_size, gated): what the weights' shapes reveal."""
        return (self.embed_dim, self.depth, self.num_heads, self.intermediate_size, self.gated)

    @property
    def head_dim(self) -> int:
        return self.embed_dim // self.num_heads

    @property
    def gated(self) -> bool:
        return self.ffn_layer.startswith("swiglu")

    @property
    def intermediate_size(self) -> int:
        """Width of the feed-forward hidden layer (for SwiGLU: of each of ``w1``/``w2``)."""
        if self.ffn_hidden is not None:
            return self.ffn_hidden
        hidden = int(self.embed_dim * self.ffn_ratio)
        if self.gated:
            align = int(self.ffn_layer[len("swiglu") :] or 8)
            return swiglu_hidden_size(hidden, align)
        return hidden


def swiglu_hidden_size(hidden_features: int, align_to: int = 8) -> int:
    """Hidden width of Meta's SwiGLU layer: 2/3 of ``hidden_features`` rounded up to ``align_to``."""
    d = int(hidden_features * 2 / 3)
    return d + (-d % align_to)


META_ARCHS: dict[str, MetaArch] = {
    a.name: a
    for a in [
        MetaArch("vits16", 384, 12, 6, 4.0),
        MetaArch("vits16plus", 384, 12, 6, 6.0, "swiglu"),
        MetaArch("vitb16", 768, 12, 12, 4.0),
        MetaArch("vitl16", 1024, 24, 16, 4.0),
        MetaArch("vitl16plus", 1024, 24, 16, 6.0, "swiglu"),
        MetaArch("vith16plus", 1280, 32, 20, 6.0, "swiglu"),
        MetaArch("vit7b16", 4096, 40, 32, 3.0, "swiglu64", qkv_bias=False),
        # Not a released model: a few-layer architecture for tests and notebooks
        # that run without weights. It keeps every structural trait of the real ones.
        MetaArch("tiny", 64, 3, 1, 4.0),
    ]
}

_ALIASES = {
    "vits": "vits16",
    "vit_small": "vits16",
    "small": "vits16",
    "vits+": "vits16plus",
    "vitsplus": "vits16plus",
    "vitb": "vitb16",
    "vit_base": "vitb16",
    "base": "vitb16",
    "vitl": "vitl16",
    "vit_large": "vitl16",
    "large": "vitl16",
    "vitl+": "vitl16plus",
    "vitlplus": "vitl16plus",
    "vith+": "vith16plus",
    "vithplus": "vith16plus",
    "vit7b": "vit7b16",
    "7b": "vit7b16",
}


def get_arch(name: str | MetaArch) -> MetaArch:
    """Look up an architecture by its Meta name (``vitl16``) or a short alias (``large``)."""
    if isinstance(name, MetaArch):
        return name
    if not isinstance(name, str):
        raise TypeError(f"arch must be an architecture name such as 'vitl16'; got {type(name).__name__}")
    key = name.lower().replace("-", "").replace("/", "")
    key = _ALIASES.get(key, key)
    if key not in META_ARCHS:
        raise ValueError(f"arch={name!r} is not a DINOv3 ViT architecture; allowed: {', '.join(sorted(META_ARCHS))}")
    return META_ARCHS[key]


def match_released_arch(
    embed_dim: int, depth: int, num_heads: int, intermediate_size: int, gated: bool
) -> MetaArch | None:
    """The released architecture with exactly these sizes, or None."""
    for a in META_ARCHS.values():
        if a.name == "tiny":
            continue
        if (a.embed_dim, a.depth, a.num_heads, a.intermediate_size, a.gated) == (
            embed_dim,
            depth,
            num_heads,
            intermediate_size,
            gated,
        ):
            return a
    return None


def arch_from_filename(filename: str) -> str | None:
    """The architecture named in a Meta checkpoint file name, e.g.
    ``dinov3_vitl16_pretrain_sat493m-eadcf0ff.pth`` -> ``"vitl16"``; None when absent."""
    import re

    m = re.search(r"dinov3_(vit(?:s16plus|s16|b16|l16plus|l16|h16plus|7b16))", filename.lower())
    return m.group(1) if m else None


def config_for_arch(arch: MetaArch | str, **overrides) -> DINOv3ViTConfig:
    """A transformers ``DINOv3ViTConfig`` equal to Meta's builder for ``arch``.

    ``overrides`` are passed to the config (e.g. ``num_hidden_layers=2`` for a test).
    """
    if isinstance(arch, str):
        arch = get_arch(arch)
    kwargs = dict(
        patch_size=arch.patch_size,
        hidden_size=arch.embed_dim,
        intermediate_size=arch.intermediate_size,
        num_hidden_layers=arch.depth,
        num_attention_heads=arch.num_heads,
        hidden_act="silu" if arch.gated else "gelu",
        layer_norm_eps=arch.layer_norm_eps,
        rope_theta=arch.rope_base,
        query_bias=arch.qkv_bias,
        key_bias=False,
        value_bias=arch.qkv_bias,
        proj_bias=True,
        mlp_bias=True,
        layerscale_value=arch.layerscale_init,
        use_gated_mlp=arch.gated,
        num_register_tokens=arch.n_storage_tokens,
        pos_embed_rescale=2.0,
        image_size=224,
    )
    kwargs.update(overrides)
    return DINOv3ViTConfig(**kwargs)
