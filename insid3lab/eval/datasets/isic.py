"""ISIC 2018 skin lesions in three classes."""

from __future__ import annotations

from pathlib import Path

from insid3lab.eval.datasets.base import (
    Sample,
    SegmentationBenchmark,
    binary_mask,
    check_pair,
    read_image,
    require_paths,
    target_and_references,
)
from insid3lab.eval.datasets.readers import read_label_map
from insid3lab.eval.datasets.registry import register_benchmark


@register_benchmark("isic", help="ISIC 2018 skin lesions in 3 classes")
class ISIC2018(SegmentationBenchmark):
    """ISIC 2018 skin lesions, grouped into 3 classes (subfolders 1, 2, 3); 600 episodes.

    Episode ``i`` uses class ``i mod 3``; masks are gray PNGs thresholded at 128.
    """

    title = "ISIC 2018"
    subdir = "ISIC"
    marker = "ISIC2018_Task1_Training_GroundTruth"
    layout = """\
ISIC/
  ISIC2018_Task1-2_Training_Input/1/*.jpg  .../2/*.jpg  .../3/*.jpg
  ISIC2018_Task1_Training_GroundTruth/<ID>_segmentation.png"""

    def __init__(self, root, *, fold: int | None = None, shots: int = 1):
        super().__init__(root, fold=fold, shots=shots)
        self.inputs = self.root / "ISIC2018_Task1-2_Training_Input"
        self.truth = self.root / "ISIC2018_Task1_Training_GroundTruth"
        require_paths(self.title, self.data_root, self.layout, self.inputs, self.truth)
        self.class_names = ["1", "2", "3"]
        self.images = []
        for c in self.class_names:
            d = self.inputs / c
            require_paths(self.title, self.data_root, self.layout, d)
            self.images.append(sorted(f"{c}/{p.name}" for p in d.iterdir() if p.suffix.lower() == ".jpg"))
        self._each_class_needs([len(v) for v in self.images], str(self.inputs))
        self.default_episodes = 600

    def sample(self, rng, index):
        ci = index % 3
        target, refs = target_and_references(rng, self.images[ci], self.shots)
        return ci, {"image": target}, [{"image": r} for r in refs]

    def load(self, item, class_index):
        image_path = self.inputs / item["image"]
        stem = Path(item["image"]).stem
        mask_path = self.truth / f"{stem}_segmentation.png"
        image = read_image(image_path)
        mask = binary_mask(read_label_map(mask_path, gray=True))
        check_pair(image, mask, str(image_path), str(mask_path), "the lesion")
        return Sample(image, mask, str(image_path), str(mask_path))
