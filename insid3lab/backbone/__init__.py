"""DINOv3 backbones: every checkpoint format in one transformers model with Meta's feature contract."""

from insid3lab.backbone.archs import META_ARCHS, MetaArch, config_for_arch, get_arch
from insid3lab.backbone.convert import CheckpointFormatError
from insid3lab.backbone.loading import (
    load_backbone,
    meta_to_transformers,
    random_backbone,
    resolve_device,
    resolve_dtype,
    save_meta_checkpoint,
    save_pretrained,
    transformers_to_meta,
)
from insid3lab.backbone.model import DinoV3Backbone, default_rope_periods
from insid3lab.core.weights import is_random

__all__ = [
    "META_ARCHS",
    "MetaArch",
    "CheckpointFormatError",
    "DinoV3Backbone",
    "config_for_arch",
    "default_rope_periods",
    "get_arch",
    "is_random",
    "load_backbone",
    "meta_to_transformers",
    "random_backbone",
    "resolve_device",
    "resolve_dtype",
    "save_meta_checkpoint",
    "save_pretrained",
    "transformers_to_meta",
]
