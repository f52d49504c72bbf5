"""Few-shot segmentation and correspondence benchmarks, read from their documented on-disk layouts.

One module per benchmark; :mod:`.base` holds the interface every benchmark follows, the
sample types, the errors and the one image reader; :mod:`.readers` the shared readers of
label maps, polygons and split files; :mod:`.registry` the names :func:`build_dataset`
accepts.
"""

from .base import (
    IGNORE,
    BadSampleError,
    DatasetNotFoundError,
    KeypointPair,
    Sample,
    SegmentationBenchmark,
    read_image,
    read_rgb,
)
from .chest_xray import ChestXray
from .coco20i import COCO_CLASS_NAMES, COCO20i
from .folder import IMAGE_EXTENSIONS, MASK_EXTENSIONS, FolderDataset
from .isaid import ISAID_CLASS_NAMES, ISAID5i
from .isic import ISIC2018
from .lvis92i import LVIS92i
from .paco_part import PACOPart
from .pascal_part import PascalPart
from .permis import PerMIS
from .readers import SplitFileError, decode_segmentation, load_npy, load_pickle, read_label_map
from .registry import BENCHMARKS, EXTERNAL_BENCHMARKS, VIDEO_BENCHMARKS, build_dataset, dataset_names
from .spair import SPAIR_CATEGORIES, SPair71k
from .suim import SUIM, SUIM_CLASSES

__all__ = [
    "BENCHMARKS",
    "COCO_CLASS_NAMES",
    "EXTERNAL_BENCHMARKS",
    "IGNORE",
    "IMAGE_EXTENSIONS",
    "ISAID_CLASS_NAMES",
    "ISIC2018",
    "MASK_EXTENSIONS",
    "SPAIR_CATEGORIES",
    "SUIM",
    "SUIM_CLASSES",
    "VIDEO_BENCHMARKS",
    "BadSampleError",
    "COCO20i",
    "ChestXray",
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
    "read_rgb",
]
