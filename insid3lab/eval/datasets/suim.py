"""SUIM underwater scenes, seven classes."""

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

SUIM_CLASSES = ("FV", "HD", "PF", "RI", "RO", "SR", "WR")


@register_benchmark("suim", help="SUIM underwater scenes, 7 classes")
class SUIM(SegmentationBenchmark):
    """SUIM underwater scenes, 7 classes with one binary mask folder each.

    Only masks with foreground are used; episodes = number of such masks; episode ``i``
    uses class ``i mod 7``; masks thresholded at 128; images are ``images/<stem>.jpg``.
    """

    title = "SUIM"
    subdir = "SUIM"
    marker = "masks"
    layout = """\
SUIM/
  images/*.jpg
  masks/FV/*.png  masks/HD/*.png  masks/PF/*.png  masks/RI/*.png  masks/RO/*.png  masks/SR/*.png  masks/WR/*.png"""

    def __init__(self, root, *, fold: int | None = None, shots: int = 1):
        super().__init__(root, fold=fold, shots=shots)
        require_paths(self.title, self.data_root, self.layout, self.root / "images", self.root / "masks")
        self.class_names = list(SUIM_CLASSES)
        self.masks = []
        for c in self.class_names:
            d = self.root / "masks" / c
            require_paths(self.title, self.data_root, self.layout, d)
            keep = []
            for p in sorted(d.iterdir()):
                if p.is_file() and binary_mask(read_label_map(p, gray=True)).any():
                    keep.append(f"{c}/{p.name}")
            self.masks.append(keep)
        self._each_class_needs([len(v) for v in self.masks], str(self.root / "masks"))
        self.default_episodes = sum(len(v) for v in self.masks)

    def item_key(self, item):
        return Path(item["mask"]).stem

    def sample(self, rng, index):
        ci = index % len(self.class_names)
        target, refs = target_and_references(rng, self.masks[ci], self.shots)
        return ci, {"mask": target}, [{"mask": r} for r in refs]

    def load(self, item, class_index):
        mask_path = self.root / "masks" / item["mask"]
        image_path = self.root / "images" / (Path(item["mask"]).stem + ".jpg")
        image = read_image(image_path)
        mask = binary_mask(read_label_map(mask_path, gray=True))
        check_pair(image, mask, str(image_path), str(mask_path), self.class_names[class_index])
        return Sample(image, mask, str(image_path), str(mask_path))
