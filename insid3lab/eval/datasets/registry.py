"""The benchmarks by name: the one list that :func:`build_dataset` validates against and reports."""

from __future__ import annotations

import os

from insid3lab.eval.datasets.chest_xray import ChestXray
from insid3lab.eval.datasets.coco20i import COCO20i
from insid3lab.eval.datasets.folder import FolderDataset
from insid3lab.eval.datasets.isaid import ISAID5i
from insid3lab.eval.datasets.isic import ISIC2018
from insid3lab.eval.datasets.lvis92i import LVIS92i
from insid3lab.eval.datasets.paco_part import PACOPart
from insid3lab.eval.datasets.pascal_part import PascalPart
from insid3lab.eval.datasets.permis import PerMIS
from insid3lab.eval.datasets.spair import SPair71k
from insid3lab.eval.datasets.suim import SUIM

__all__ = ["BENCHMARKS", "EXTERNAL_BENCHMARKS", "VIDEO_BENCHMARKS", "build_dataset", "dataset_names"]

BENCHMARKS: dict[str, type] = {
    "coco": COCO20i,
    "lvis": LVIS92i,
    "pascal_part": PascalPart,
    "paco_part": PACOPart,
    "isic": ISIC2018,
    "lung": ChestXray,
    "suim": SUIM,
    "isaid": ISAID5i,
    "permis": PerMIS,
    "spair": SPair71k,
    "folder": FolderDataset,
}

# benchmarks that are not read from a --data-root alone: their own files are named by other arguments
# (coco_json: the annotations file; the images folder takes the data root's place). coco_json's class
# lives in insid3lab.eval.datasets.cocojson, which reads through this package: insid3lab.eval adds it to BENCHMARKS
# (the parent package is always imported before this one, so the entry is there for every caller)
EXTERNAL_BENCHMARKS = ("coco_json",)

# video benchmarks: scored per sequence by insid3lab.eval.video.evaluate, not by the episode runner
VIDEO_BENCHMARKS = ("davis2017",)


def dataset_names() -> list[str]:
    """The names ``build_dataset`` (and ``insid3lab eval --dataset``) accepts."""
    return list(BENCHMARKS)


def build_dataset(name: str, data_root: str | os.PathLike, *, fold: int | None = None, shots: int = 1, **kwargs):
    """Build benchmark ``name`` (see :func:`dataset_names`) from ``data_root``.

    ``data_root`` may be the folder that holds the benchmark's folder (``COCO2014/``,
    ``LVIS/``, ...) as in the authors' ``data/`` layout, or that folder itself. For
    ``folder`` it is the folder with ``images/`` and ``masks/``. ``fold`` is required to
    lie in the benchmark's folds (default 0) and must be unset for benchmarks without folds.
    """
    key = str(name).lower().replace("-", "_")
    if key not in BENCHMARKS:
        raise ValueError(f"dataset={name!r} is not known; allowed: {', '.join(BENCHMARKS)}")
    cls = BENCHMARKS[key]
    if cls.folds is None and fold == 0:
        fold = None
    return cls(data_root, fold=fold, shots=shots, **kwargs)
