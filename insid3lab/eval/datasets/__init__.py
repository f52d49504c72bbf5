"""Few-shot segmentation and correspondence benchmarks, read from their documented on-disk layouts.

One module per benchmark, whose class registers itself with :func:`register_benchmark`
(:mod:`.registry`: the names :func:`build_dataset` and ``insid3lab eval --dataset`` accept, with
their folds and help); :mod:`.base` holds the interface every benchmark follows, the sample
types, the errors and the one image reader; :mod:`.readers` the shared readers of label maps,
polygons and split files; :mod:`.cocojson_check` checks a COCO-format file before
:mod:`.cocojson` reads it.
"""

# isort: off
from insid3lab.eval.datasets.base import (
    IGNORE,
    BadSampleError,
    DatasetNotFoundError,
    KeypointPair,
    Sample,
    SegmentationBenchmark,
    read_image,
    read_rgb,
)
from insid3lab.eval.datasets.readers import SplitFileError, decode_segmentation, load_npy, load_pickle, read_label_map
from insid3lab.eval.datasets.registry import (
    BENCHMARKS,
    BenchmarkEntry,
    build_dataset,
    dataset_names,
    register_benchmark,
)

# Every benchmark registers itself when its module is imported, in the order the names are listed.
from insid3lab.eval.datasets.coco20i import COCO_CLASS_NAMES, COCO20i
from insid3lab.eval.datasets.lvis92i import LVIS92i
from insid3lab.eval.datasets.pascal_part import PascalPart
from insid3lab.eval.datasets.paco_part import PACOPart
from insid3lab.eval.datasets.isic import ISIC2018
from insid3lab.eval.datasets.chest_xray import ChestXray
from insid3lab.eval.datasets.suim import SUIM, SUIM_CLASSES
from insid3lab.eval.datasets.isaid import ISAID_CLASS_NAMES, ISAID5i
from insid3lab.eval.datasets.permis import PerMIS
from insid3lab.eval.datasets.spair import SPAIR_CATEGORIES, SPair71k
from insid3lab.eval.datasets.folder import IMAGE_EXTENSIONS, MASK_EXTENSIONS, FolderDataset
from insid3lab.eval.datasets.cocojson import CocoJsonDataset

# isort: on

__all__ = [
    "BENCHMARKS",
    "COCO_CLASS_NAMES",
    "IGNORE",
    "IMAGE_EXTENSIONS",
    "ISAID_CLASS_NAMES",
    "ISIC2018",
    "MASK_EXTENSIONS",
    "SPAIR_CATEGORIES",
    "SUIM",
    "SUIM_CLASSES",
    "BadSampleError",
    "BenchmarkEntry",
    "COCO20i",
    "ChestXray",
    "CocoJsonDataset",
    "DatasetNotFoundError",
    "FolderDataset",
    "ISAID5i",
    "KeypointPair",
    "LVIS92i",
    "PACOPart",
    "PascalPart",
    "PerMIS",
    "SPair71k",
    "Sample",
    "SegmentationBenchmark",
    "SplitFileError",
    "build_dataset",
    "dataset_names",
    "decode_segmentation",
    "load_npy",
    "load_pickle",
    "read_image",
    "read_label_map",
    "register_benchmark",
    "read_rgb",
]
