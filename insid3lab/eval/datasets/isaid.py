"""iSAID-5i aerial patches: three folds of five classes, with ignored pixels."""

from __future__ import annotations

import numpy as np

from insid3lab.eval.datasets.base import (
    IGNORE,
    Sample,
    SegmentationBenchmark,
    check_pair,
    read_image,
    require_paths,
    unique,
)
from insid3lab.eval.datasets.readers import read_label_map
from insid3lab.eval.datasets.registry import register_benchmark

ISAID_CLASS_NAMES = (
    "ship",
    "storage tank",
    "baseball diamond",
    "tennis court",
    "basketball court",
    "ground track field",
    "bridge",
    "large vehicle",
    "small vehicle",
    "helicopter",
    "swimming pool",
    "roundabout",
    "soccer ball field",
    "plane",
    "harbor",
)


@register_benchmark("isaid", folds=(0, 1, 2), help="iSAID-5i aerial patches, 3 folds of 5 classes")
class ISAID5i(SegmentationBenchmark):
    """iSAID-5i aerial patches: 15 classes, 3 folds of 5 (``5 fold + j``); 255 marks ignored pixels.

    Episode ``i`` takes the target and class from line ``i mod L`` of the fold's split
    file (``NAME__C`` with C = class id + 1); references drawn uniformly from the other
    images listed for that class.
    """

    loads_any_class = True

    title = "iSAID-5i"
    subdir = "iSAID"
    marker = "splits"
    layout = """\
iSAID/
  val/images/<NAME>.png
  val/semantic_png/<NAME>_instance_color_RGB.png   (label map: class id + 1, 0 background, 255 ignored)
  splits/val/fold0.txt .. fold2.txt                (lines NAME__C, C = class id + 1)"""

    def __init__(self, root, *, fold: int | None = 0, shots: int = 1):
        super().__init__(root, fold=fold, shots=shots)
        split = self.root / "splits" / "val" / f"fold{self.fold}.txt"
        require_paths(
            self.title,
            self.data_root,
            self.layout,
            self.root / "val" / "images",
            self.root / "val" / "semantic_png",
            split,
        )
        self.class_ids = [5 * self.fold + j for j in range(5)]
        self.class_names = [ISAID_CLASS_NAMES[c] for c in self.class_ids]
        self.entries: list[tuple[str, int]] = []
        with open(split) as f:
            for n, line in enumerate(f, 1):
                line = line.strip()
                if not line:
                    continue
                name, sep, cls = line.rpartition("__")
                if not sep or not cls.isdigit() or int(cls) - 1 not in self.class_ids:
                    raise ValueError(
                        f"{split}:{n}: {line!r} is not NAME__C with C in {self.class_ids[0] + 1}..{self.class_ids[-1] + 1}"
                    )
                self.entries.append((name, self.class_ids.index(int(cls) - 1)))
        self.images = {i: unique(n for n, c in self.entries if c == i) for i in range(5)}
        if not self.entries:
            self._too_few([])
        for _name, ci in self.entries:
            if len(self.images[ci]) <= self.shots:
                raise ValueError(
                    f"{split}: class {self.class_names[ci]!r} lists {len(self.images[ci])} image(s); "
                    f"a {self.shots}-shot episode needs at least {self.shots + 1}"
                )
        self.default_episodes = len(self.entries)

    def sample(self, rng, index):
        name, ci = self.entries[index % len(self.entries)]
        others = [n for n in self.images[ci] if n != name]
        picks = rng.choice(len(others), size=self.shots, replace=False)
        return ci, {"image": name}, [{"image": others[int(i)]} for i in picks]

    def load(self, item, class_index):
        image_path = self.root / "val" / "images" / f"{item['image']}.png"
        mask_path = self.root / "val" / "semantic_png" / f"{item['image']}_instance_color_RGB.png"
        image = read_image(image_path)
        labels = read_label_map(mask_path)
        mask = (labels == self.class_ids[class_index] + 1).astype(np.uint8)
        mask[labels == IGNORE] = IGNORE
        check_pair(image, mask, str(image_path), str(mask_path), self.class_names[class_index])
        return Sample(image, mask, str(image_path), str(mask_path))
