"""COCO-20i: the 80 COCO classes in four folds of twenty."""

from __future__ import annotations

import os

import numpy as np

from insid3lab.eval.datasets.base import (
    Sample,
    SegmentationBenchmark,
    check_pair,
    pick,
    read_image,
    require_paths,
    target_and_references,
    unique,
)
from insid3lab.eval.datasets.readers import SplitFileError, load_pickle, read_label_map
from insid3lab.eval.datasets.registry import register_benchmark

COCO_CLASS_NAMES = (
    "person",
    "bicycle",
    "car",
    "motorcycle",
    "airplane",
    "bus",
    "train",
    "truck",
    "boat",
    "traffic light",
    "fire hydrant",
    "stop sign",
    "parking meter",
    "bench",
    "bird",
    "cat",
    "dog",
    "horse",
    "sheep",
    "cow",
    "elephant",
    "bear",
    "zebra",
    "giraffe",
    "backpack",
    "umbrella",
    "handbag",
    "tie",
    "suitcase",
    "frisbee",
    "skis",
    "snowboard",
    "sports ball",
    "kite",
    "baseball bat",
    "baseball glove",
    "skateboard",
    "surfboard",
    "tennis racket",
    "bottle",
    "wine glass",
    "cup",
    "fork",
    "knife",
    "spoon",
    "bowl",
    "banana",
    "apple",
    "sandwich",
    "orange",
    "broccoli",
    "carrot",
    "hot dog",
    "pizza",
    "donut",
    "cake",
    "chair",
    "couch",
    "potted plant",
    "bed",
    "dining table",
    "toilet",
    "tv",
    "laptop",
    "mouse",
    "remote",
    "keyboard",
    "cell phone",
    "microwave",
    "oven",
    "toaster",
    "sink",
    "refrigerator",
    "book",
    "clock",
    "vase",
    "scissors",
    "teddy bear",
    "hair drier",
    "toothbrush",
)


@register_benchmark("coco", folds=(0, 1, 2, 3), help="COCO-20i: the 80 COCO classes in 4 folds of 20")
class COCO20i(SegmentationBenchmark):
    """COCO-20i: 80 COCO classes in 4 folds of 20 (class ``fold + 4 v``); 1000 episodes.

    Episode: a class drawn uniformly from the fold's classes, a target and ``shots``
    distinct references drawn uniformly from that class's validation images.
    Masks: ``annotations/<name>.png`` label maps where value ``c + 1`` is class ``c``.
    """

    loads_any_class = True

    title = "COCO-20i"
    subdir = "COCO2014"
    marker = "splits"
    layout = """\
COCO2014/
  train2014/*.jpg  val2014/*.jpg
  annotations/train2014/*.png  annotations/val2014/*.png   (label maps, value = class id + 1)
  splits/val/fold0.pkl .. fold3.pkl                          (dict: class id -> list of 'val2014/NAME.jpg')"""

    def __init__(self, root, *, fold: int | None = 0, shots: int = 1):
        super().__init__(root, fold=fold, shots=shots)
        split = self.root / "splits" / "val" / f"fold{self.fold}.pkl"
        require_paths(self.title, self.data_root, self.layout, split)
        classwise = load_pickle(split)
        if not isinstance(classwise, dict):
            raise SplitFileError(f"{split}: expected a dict of class id -> image names; got {type(classwise).__name__}")
        self.class_ids = [self.fold + 4 * v for v in range(20)]
        self.class_names = [COCO_CLASS_NAMES[c] for c in self.class_ids]
        self.images = {i: unique(str(n) for n in classwise.get(c, [])) for i, c in enumerate(self.class_ids)}
        self.sampleable = [i for i in range(20) if len(self.images[i]) > self.shots]
        self._too_few(self.sampleable)
        self.default_episodes = 1000

    def describe(self) -> dict:
        d = super().describe()
        d["classes_without_enough_images"] = [self.class_names[i] for i in range(20) if i not in self.sampleable]
        return d

    def sample(self, rng, index):
        ci = pick(rng, self.sampleable)
        target, refs = target_and_references(rng, self.images[ci], self.shots)
        return ci, {"image": target}, [{"image": r} for r in refs]

    def load(self, item, class_index):
        image_path = self.root / item["image"]
        stem = os.path.splitext(item["image"])[0]
        mask_path = self.root / "annotations" / (stem + ".png")
        image = read_image(image_path)
        labels = read_label_map(mask_path)
        mask = (labels == self.class_ids[class_index] + 1).astype(np.uint8)
        check_pair(image, mask, str(image_path), str(mask_path), self.class_names[class_index])
        return Sample(image, mask, str(image_path), str(mask_path))
