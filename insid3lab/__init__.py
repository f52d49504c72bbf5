"""insid3lab: training-free one-shot in-context segmentation with a frozen DINOv3 backbone (INSID3)."""

__version__ = "0.1.0"

from .backbone import (  # noqa: E402
    CheckpointFormatError,
    DinoV3Backbone,
    load_backbone,
    random_backbone,
    save_meta_checkpoint,
    save_pretrained,
)

__all__ = [
    "CheckpointFormatError",
    "DinoV3Backbone",
    "load_backbone",
    "random_backbone",
    "save_meta_checkpoint",
    "save_pretrained",
]


def __getattr__(name):  # the pipeline is imported lazily to keep `import insid3lab` light
    if name in ("INSID3", "Trace"):
        from . import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'insid3lab' has no attribute {name!r}")
