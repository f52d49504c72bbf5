"""A deterministic hand-made encoder for pipeline tests (grid-aligned scenes: :func:`insid3lab.synthetic.scenes.grid_scene`).

``SCENE`` is the side of the lesion scenes of the ``scene`` fixture (``tests/conftest.py``).

The encoder follows Meta's ``get_intermediate_layers`` contract. Its features are a
colour part (soft assignment of each patch's mean colour to a fixed palette) plus a
strong positional part (sines and cosines of the patch row and column) living in
separate channels — a caricature of a ViT whose features mix content and position.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from insid3lab.core.preprocess import denormalize

SCENE = 256

PALETTE = torch.tensor(
    [[r, g, b] for r in (0.0, 0.5, 1.0) for g in (0.0, 0.5, 1.0) for b in (0.0, 0.5, 1.0)]
)  # 27 colours


class ColourPositionEncoder(nn.Module):
    """Features = [palette RBF of the patch colour (27) | pos_strength * positional code (pos_dim)]."""

    patch_size = 16

    def __init__(self, pos_dim: int = 16, pos_strength: float = 2.0, sigma: float = 0.2):
        super().__init__()
        self.pos_dim = pos_dim
        self.pos_strength = pos_strength
        self.sigma = sigma
        self.embed_dim = PALETTE.shape[0] + pos_dim
        self.calls = 0

    def positional_code(self, h: int, w: int) -> torch.Tensor:
        """(pos_dim, h, w) sines and cosines of row and column at a few frequencies."""
        rows = torch.arange(h, dtype=torch.float32)[:, None].expand(h, w)
        cols = torch.arange(w, dtype=torch.float32)[None, :].expand(h, w)
        chans = []
        for k in range(self.pos_dim // 4):
            f = math.pi * (k + 1) / max(h, w)
            chans += [torch.sin(f * rows), torch.cos(f * rows), torch.sin(f * cols), torch.cos(f * cols)]
        return torch.stack(chans)

    def get_intermediate_layers(
        self, x, n=1, *, reshape=False, return_class_token=False, return_extra_tokens=False, norm=True
    ):
        self.calls += 1
        B = x.shape[0]
        p = self.patch_size
        rgb = F.avg_pool2d(denormalize(x.float()), p)  # (B, 3, h, w) in [0, 1]
        h, w = rgb.shape[-2:]
        d2 = ((rgb[:, None] - PALETTE[None, :, :, None, None]) ** 2).sum(dim=2)  # (B, 27, h, w)
        colour = torch.exp(-d2 / (2 * self.sigma**2))
        colour = F.normalize(colour, dim=1)
        pos = self.pos_strength * self.positional_code(h, w) / math.sqrt(self.pos_dim / 2)
        feats = torch.cat([colour, pos[None].expand(B, -1, -1, -1)], dim=1)
        if not reshape:
            feats = feats.flatten(2).transpose(1, 2)
        return (feats,)
