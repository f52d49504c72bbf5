"""Random-weights backbones: ``random_backbone`` and the ``random:ARCH[:SEED]`` source of ``load_backbone``."""

from __future__ import annotations

import torch
from transformers import DINOv3ViTModel
from transformers.initialization import no_init_weights

from insid3lab.backbone.archs import META_ARCHS, config_for_arch, get_arch
from insid3lab.backbone.devices import resolve_device, resolve_dtype
from insid3lab.backbone.model import DinoV3Backbone, default_rope_periods
from insid3lab.core.weights import RANDOM_SCHEME

__all__ = ["RANDOM_SCHEME", "parse_random_source", "random_backbone"]


def parse_random_source(spec: str) -> tuple[str, int]:
    """``"random:ARCH[:SEED]"`` as ``(arch, seed)``: the one parser of the random-weights source.

    ``random:`` alone means ``tiny``, a missing seed means 0.

    Raises:
        ValueError: naming the source, for an unknown architecture (listing the allowed ones),
            a seed that is not an integer, or extra fields.
    """
    if not isinstance(spec, str) or not spec.startswith(RANDOM_SCHEME):
        raise ValueError(f"source={spec!r}: a random-weights source has the form random:ARCH[:SEED]")
    parts = spec[len(RANDOM_SCHEME) :].split(":")
    if len(parts) > 2:
        raise ValueError(f"source={spec!r}: expected random:ARCH[:SEED], e.g. random:vitl16:3")
    name = parts[0] or "tiny"
    try:
        get_arch(name)
    except ValueError:
        raise ValueError(
            f"source={spec!r}: unknown architecture {name!r}; allowed: {', '.join(sorted(META_ARCHS))}"
        ) from None
    seed_text = parts[1].strip() if len(parts) == 2 else "0"
    try:
        seed = int(seed_text)
    except ValueError:
        raise ValueError(
            f"source={spec!r}: the seed must be an integer, got {seed_text!r} (random:ARCH[:SEED])"
        ) from None
    return name, seed


def random_backbone(
    arch: str = "tiny",
    *,
    seed: int = 0,
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype | None = None,
    residual_scale: float = 1.0,
    **config_overrides,
) -> DinoV3Backbone:
    """A DINOv3 ViT with random weights, built from an architecture's config: no download.

    Args:
        arch: ``"tiny"`` (64-dim, 3 blocks: tests and notebooks without weights) or any released
            architecture name (``vits16``, ``vitb16``, ``vitl16``...: timing, memory).
        seed: the weights are a function of the seed alone.
        residual_scale: multiplies the CLS/register/patch embeddings, making the pre-norm residual
            stream larger than the post-LayerNorm tokens as in trained DINOv3 models.
        config_overrides: passed to the ``DINOv3ViTConfig`` (``num_hidden_layers=2``...).

    Masks from random weights are meaningless: they only exercise the mechanics.

    The model is built without running any initialiser and each parameter is filled once, in
    name order, from one ``torch.Generator`` seeded with ``seed``: LayerNorm weights
    ``1 + 0.1 N(0, 1)``, layer scales ``U(0.1, 0.15)``, the mask token 0, everything else
    ``N(0, 0.02²)`` (then the embeddings scaled as above). A random ViT-L takes about a second.
    """
    config = config_for_arch(arch, **config_overrides)
    g = torch.Generator().manual_seed(seed)
    # Every parameter is filled below, so the initialisers (transformers' and torch's) are skipped:
    # the parameters are allocated but not initialised, and buffers are computed as usual.
    with no_init_weights():
        model = DINOv3ViTModel(config)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            if name.endswith(("norm1.weight", "norm2.weight", "norm.weight")):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            elif name.endswith("lambda1"):
                p.copy_(0.1 + 0.05 * torch.rand(p.shape, generator=g))
            elif name.endswith("mask_token"):
                p.zero_()
            else:
                p.normal_(0.0, 0.02, generator=g)
        model.embeddings.cls_token.mul_(residual_scale * 50)
        model.embeddings.register_tokens.mul_(residual_scale * 50)
        model.embeddings.patch_embeddings.weight.mul_(residual_scale * 10)
        model.embeddings.patch_embeddings.bias.mul_(residual_scale * 10)
    head_dim = config.hidden_size // config.num_attention_heads
    bb = DinoV3Backbone(
        model.eval(),
        rope_periods=default_rope_periods(head_dim, config.rope_theta),
        source=f"random:{arch}:seed={seed}",
        arch_name=arch,
    )
    return bb.to(device=resolve_device(device), dtype=resolve_dtype(dtype))
