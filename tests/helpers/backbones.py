"""The tiny backbone the test session shares, and the record of it saved in every checkpoint format."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from insid3lab.backbone import DinoV3Backbone

#: Depth of the session's tiny backbone (4 blocks, so ``n=4`` takes every block).
TINY_DEPTH = 4

R = 4  # register tokens of every DINOv3 ViT
P = 1 + R  # prefix tokens: CLS + registers


def hf_outputs(bb: DinoV3Backbone, x: torch.Tensor):
    """transformers' own forward of the backbone's DINOv3ViTModel, with every hidden state."""
    with torch.no_grad():
        return bb.model(x, output_hidden_states=True)


def max_diff(a, b) -> float:
    """The largest absolute difference between two tensors, or two sequences of tensors of one length."""
    if isinstance(a, torch.Tensor):
        return float((a - b).abs().max())
    return max(max_diff(u, v) for u, v in zip(a, b, strict=True))


@dataclass(frozen=True)
class SavedBackbone:
    """One backbone written to disk in every format ``load_backbone`` reads.

    Attributes:
        backbone: the in-memory original.
        root: the folder holding everything below.
        hf_dir: a transformers folder (config.json + model.safetensors, RoPE periods recorded).
        meta_pth: a Meta checkpoint written with ``torch.save``.
        meta_safetensors: the same Meta state dict as ``.safetensors``.
    """

    backbone: DinoV3Backbone
    root: Path
    hf_dir: Path
    meta_pth: Path
    meta_safetensors: Path

    def paths(self) -> dict[str, Path]:
        return {"transformers": self.hf_dir, "meta_pth": self.meta_pth, "meta_safetensors": self.meta_safetensors}
