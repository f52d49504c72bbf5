"""The tiny backbone the test session shares, and the record of it saved in every checkpoint format."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from insid3lab.backbone import DinoV3Backbone

#: Depth of the session's tiny backbone (4 blocks, so ``n=4`` takes every block).
TINY_DEPTH = 4


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
