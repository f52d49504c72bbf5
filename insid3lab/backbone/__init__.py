"""DINOv3 backbones: every checkpoint format in one transformers model with Meta's feature contract."""

from .archs import META_ARCHS, MetaArch, config_for_arch, get_arch
from .convert import CheckpointFormatError
from .loading import (
    load_backbone,
    meta_to_transformers,
    random_backbone,
    resolve_device,
    resolve_dtype,
    save_meta_checkpoint,
    save_pretrained,
    transformers_to_meta,
)
from .model import DinoV3Backbone, default_rope_periods

__all__ = [
    "META_ARCHS",
    "MetaArch",
    "CheckpointFormatError",
    "DinoV3Backbone",
    "config_for_arch",
    "default_rope_periods",
    "get_arch",
    "load_backbone",
    "meta_to_transformers",
    "random_backbone",
    "resolve_device",
    "resolve_dtype",
    "save_meta_checkpoint",
    "save_pretrained",
    "transformers_to_meta",
]
