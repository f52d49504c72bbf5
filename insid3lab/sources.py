"""One model-source string to an encoder: the routing shared by the API and the command lines."""

from __future__ import annotations

import torch

__all__ = ["load_encoder"]


def load_encoder(
    source,
    *,
    device: str | torch.device = "auto",
    dtype: str | torch.dtype | None = None,
    arch: str | None = None,
    rope_periods: str = "auto",
):
    """A DINOv3 backbone from any source :func:`insid3lab.load_backbone` reads, or ``random:ARCH[:SEED]``.

    ``random:ARCH[:SEED]`` builds the architecture with random weights (``random:tiny``,
    ``random:vitl16``): masks are meaningless, but timing and the mechanics are real.
    """
    from .backbone import load_backbone, random_backbone

    if isinstance(source, str) and source.startswith("random:"):
        parts = source.split(":")
        arch_name = parts[1] if len(parts) > 1 and parts[1] else "tiny"
        try:
            seed = int(parts[2]) if len(parts) > 2 else 0
        except ValueError:
            raise ValueError(
                f"model source {source!r}: write random:ARCH or random:ARCH:SEED (SEED an integer)"
            ) from None
        return random_backbone(arch_name, seed=seed, device=device, dtype=dtype)
    return load_backbone(source, arch=arch, device=device, dtype=dtype, rope_periods=rope_periods)
