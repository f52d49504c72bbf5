"""A user's own data: images/ and masks/ folders with matching file stems."""

from __future__ import annotations

import numpy as np

from insid3lab.core.warn import warn
from insid3lab.eval.datasets.base import (
    IGNORE,
    Sample,
    SegmentationBenchmark,
    check_pair,
    read_image,
    require_paths,
    target_and_references,
)
from insid3lab.eval.datasets.readers import read_label_map
from insid3lab.eval.datasets.registry import register_benchmark

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
MASK_EXTENSIONS = (".png", ".bmp", ".tif", ".tiff", ".gif", ".jpg", ".jpeg")


@register_benchmark("folder", help="your own images: DATA_ROOT/images and DATA_ROOT/masks")
class FolderDataset(SegmentationBenchmark):
    """A user's own data: ``images/`` and ``masks/`` with matching file stems.

    Either flat (one class, named after the root folder) or one subfolder per class in
    both ``images/`` and ``masks/``. Foreground is mask value > 0 (set ``ignore_value``
    to mark a value, e.g. 255, as ignored instead). Episode ``i`` uses class ``i mod C``;
    target and distinct references drawn uniformly from that class. Default episodes:
    the number of image/mask pairs.
    """

    title = "folder dataset"
    layout = """\
<root>/
  images/NAME.jpg ...   masks/NAME.png ...            (one class)
or
  images/<class>/NAME.jpg ...   masks/<class>/NAME.png ...   (one subfolder per class)"""

    def __init__(self, root, *, fold: int | None = None, shots: int = 1, ignore_value: int | None = None):
        super().__init__(root, fold=fold, shots=shots)
        self.ignore_value = ignore_value
        img_dir, mask_dir = self.root / "images", self.root / "masks"
        require_paths(self.title, self.data_root, self.layout, img_dir, mask_dir)
        class_dirs = sorted(d.name for d in img_dir.iterdir() if d.is_dir())
        if class_dirs:
            groups = [(c, img_dir / c, mask_dir / c) for c in class_dirs]
        else:
            groups = [(self.root.resolve().name or "foreground", img_dir, mask_dir)]
        self.class_names, self.pairs = [], []
        self.images_without_mask: list[str] = []
        for cname, idir, mdir in groups:
            require_paths(self.title, self.data_root, self.layout, mdir)
            masks = {p.stem: p.name for p in sorted(mdir.iterdir()) if p.suffix.lower() in MASK_EXTENSIONS}
            prefix = f"{cname}/" if class_dirs else ""
            images = [p for p in sorted(idir.iterdir()) if p.suffix.lower() in IMAGE_EXTENSIONS]
            pairs = [(prefix + p.name, prefix + masks[p.stem]) for p in images if p.stem in masks]
            self.images_without_mask += [prefix + p.name for p in images if p.stem not in masks]
            if len(pairs) <= self.shots:
                raise ValueError(
                    f"{self.title}: {str(idir)!r} has {len(pairs)} image(s) with a mask of the same stem in "
                    f"{str(mdir)!r}; a {self.shots}-shot episode needs at least {self.shots + 1}"
                )
            self.class_names.append(cname)
            self.pairs.append(pairs)
        self.default_episodes = sum(len(p) for p in self.pairs)
        if self.images_without_mask:
            n = len(self.images_without_mask)
            warn(
                f"{self.title} {str(self.root)!r}: {n} image(s) have no mask of the same stem and are not used "
                f"(e.g. {self.images_without_mask[0]!r}); see images_without_mask"
            )

    def describe(self) -> dict:
        d = super().describe()
        d["images_without_mask"] = len(self.images_without_mask)
        d["ignore_value"] = self.ignore_value
        return d

    def sample(self, rng, index):
        ci = index % len(self.class_names)
        pairs = self.pairs[ci]
        t, refs = target_and_references(rng, list(range(len(pairs))), self.shots)

        def item(k):
            return {"image": pairs[k][0], "mask": pairs[k][1]}

        return ci, item(t), [item(k) for k in refs]

    def load(self, item, class_index):
        image_path = self.root / "images" / item["image"]
        mask_path = self.root / "masks" / item["mask"]
        image = read_image(image_path)
        labels = read_label_map(mask_path, gray=True)
        mask = (labels > 0).astype(np.uint8)
        if self.ignore_value is not None:
            mask[labels == self.ignore_value] = IGNORE
        check_pair(image, mask, str(image_path), str(mask_path), self.class_names[class_index])
        return Sample(image, mask, str(image_path), str(mask_path))
