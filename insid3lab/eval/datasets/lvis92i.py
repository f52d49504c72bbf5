"""LVIS-92i: every 10th LVIS validation category, ten folds."""

from __future__ import annotations

import numpy as np

from insid3lab.eval.datasets.base import (
    Sample,
    SegmentationBenchmark,
    check_pair,
    read_image,
    require_paths,
    target_and_references,
)
from insid3lab.eval.datasets.readers import SplitFileError, decode_segmentation, load_pickle
from insid3lab.eval.datasets.registry import register_benchmark


@register_benchmark("lvis", folds=range(10), help="LVIS-92i: every 10th LVIS validation category, 10 folds")
class LVIS92i(SegmentationBenchmark):
    """LVIS-92i: every 10th LVIS validation category with more than ``shots`` images; 10 folds; 2300 episodes.

    Episode ``i`` uses class ``i mod C``; target and references drawn uniformly from that
    category's images; the mask is the union of all its instances in the image.
    """

    loads_any_class = True

    title = "LVIS-92i"
    subdir = "LVIS"
    marker = "lvis_val.pkl"
    layout = """\
LVIS/
  coco/train2017/*.jpg  coco/val2017/*.jpg
  lvis_val.pkl   (dict: category id -> {'val2017/NAME.jpg': {'annotations': [{'segmentation': polygons or RLE}, ...]}})
  lvis_train.pkl"""

    def __init__(self, root, *, fold: int | None = 0, shots: int = 1):
        super().__init__(root, fold=fold, shots=shots)
        anno = self.root / "lvis_val.pkl"
        require_paths(self.title, self.data_root, self.layout, anno)
        self.annotations = load_pickle(anno)
        if not isinstance(self.annotations, dict):
            raise SplitFileError(
                f"{anno}: expected a dict of category id -> images; got {type(self.annotations).__name__}"
            )
        cat_ids = [c for c in self.annotations if len(self.annotations[c]) > self.shots]
        per_fold = len(cat_ids) // 10
        self.category_ids = [cat_ids[self.fold + 10 * v] for v in range(per_fold)]
        self.class_names = [f"lvis_{c}" for c in self.category_ids]
        self._too_few(self.category_ids)
        self.images = {i: [str(n) for n in self.annotations[c]] for i, c in enumerate(self.category_ids)}
        self.default_episodes = 2300

    def sample(self, rng, index):
        ci = index % len(self.category_ids)
        target, refs = target_and_references(rng, self.images[ci], self.shots)
        return ci, {"image": target}, [{"image": r} for r in refs]

    def load(self, item, class_index):
        image_path = self.root / "coco" / item["image"]
        image = read_image(image_path)
        h, w = image.shape[:2]
        info = self.annotations[self.category_ids[class_index]][item["image"]]
        where = f"{self.root / 'lvis_val.pkl'}[{self.category_ids[class_index]}][{item['image']}]"
        mask = np.zeros((h, w), dtype=bool)
        for a in info["annotations"]:
            mask |= decode_segmentation(a["segmentation"], h, w, where=where)
        mask = mask.astype(np.uint8)
        check_pair(image, mask, str(image_path), where, self.class_names[class_index])
        return Sample(image, mask, str(image_path), where)
