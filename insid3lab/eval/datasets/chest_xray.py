"""Chest X-ray lung segmentation."""

from __future__ import annotations

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


@register_benchmark("lung", help="chest X-ray lungs")
class ChestXray(SegmentationBenchmark):
    """Chest X-ray lung segmentation (one class); 600 episodes; gray masks thresholded at 128.

    Mask ``NAME_mask.png`` belongs to image ``NAME.png`` (Montgomery ``MCUCXR*`` masks keep the image's name).
    """

    title = "Chest X-ray"
    subdir = "LungSegmentation"
    marker = "CXR_png"
    layout = """\
LungSegmentation/
  CXR_png/*.png
  masks/*.png      (NAME_mask.png for image NAME.png; MCUCXR_*.png keep the image's name)"""

    def __init__(self, root, *, fold: int | None = None, shots: int = 1):
        super().__init__(root, fold=fold, shots=shots)
        self.image_dir = self.root / "CXR_png"
        self.mask_dir = self.root / "masks"
        require_paths(self.title, self.data_root, self.layout, self.image_dir, self.mask_dir)
        self.class_names = ["lung"]
        self.masks = sorted(p.name for p in self.mask_dir.iterdir() if p.suffix.lower() == ".png")
        self._each_class_needs([len(self.masks)], str(self.mask_dir))
        self.default_episodes = 600

    @staticmethod
    def image_name(mask_name: str) -> str:
        if "MCUCXR" in mask_name:
            return mask_name
        stem = mask_name[: -len(".png")]
        return (stem.removesuffix("_mask")) + ".png"

    def item_key(self, item):
        return str(item["mask"])

    def sample(self, rng, index):
        target, refs = target_and_references(rng, self.masks, self.shots)
        return 0, {"mask": target}, [{"mask": r} for r in refs]

    def load(self, item, class_index):
        mask_path = self.mask_dir / item["mask"]
        image_path = self.image_dir / self.image_name(item["mask"])
        image = read_image(image_path)
        mask = binary_mask(read_label_map(mask_path, gray=True))
        check_pair(image, mask, str(image_path), str(mask_path), "the lungs")
        return Sample(image, mask, str(image_path), str(mask_path))
