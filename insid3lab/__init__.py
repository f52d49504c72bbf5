"""insid3lab: training-free one-shot in-context segmentation with a frozen DINOv3 backbone (INSID3).

Main entry points::

    from insid3lab import load_backbone, INSID3
    model = INSID3(load_backbone(src), image_size=1024)
    model.set_reference(image, mask)
    mask, trace = model.segment(target, return_trace=True)

Tasks over a model are objects of their own (``ConceptSegmenter``, ``Tracker``,
``KeypointMatcher``); ``model.segment_labels``, ``model.track``, ``model.match``, ... are their
short forms (:mod:`insid3lab.tasks.shortcuts`).

Names are imported on first use, so ``import insid3lab`` (and the command line's
``--help``) stays quick.
"""

from importlib import import_module as _import_module

__version__ = "0.1.0"

_EXPORTS = {
    "CheckpointFormatError": "insid3lab.backbone",
    "DinoV3Backbone": "insid3lab.backbone",
    "load_backbone": "insid3lab.backbone",
    "random_backbone": "insid3lab.backbone",
    "save_meta_checkpoint": "insid3lab.backbone",
    "save_pretrained": "insid3lab.backbone",
    "ConceptSegmenter": "insid3lab.tasks",
    "INSID3": "insid3lab.tasks",  # the class with its short forms (insid3lab.tasks.shortcuts)
    "KeypointMatcher": "insid3lab.tasks",
    "Params": "insid3lab.method.params",
    "SegmentManyError": "insid3lab.model.insid3",
    "TargetClusters": "insid3lab.lab.cluster_cache",
    "Trace": "insid3lab.method.trace",
    "Tracker": "insid3lab.tasks",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        value = getattr(_import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'insid3lab' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
