"""Pascal-Part: object-part classes, one super-category per fold; objects cropped to their box."""

from __future__ import annotations

import json

import numpy as np

from insid3lab.eval.datasets.base import (
    BadSampleError,
    DatasetNotFoundError,
    Sample,
    SegmentationBenchmark,
    check_pair,
    crop,
    pick,
    read_image,
    require_paths,
    unique,
)
from insid3lab.eval.datasets.readers import decode_segmentation
from insid3lab.eval.datasets.registry import register_benchmark


@register_benchmark("pascal_part", folds=(0, 1, 2, 3), help="Pascal-Part: object parts, a super-category per fold")
class PascalPart(SegmentationBenchmark):
    """Pascal-Part: object-part classes of one super-category per fold; min(#val entries, 2500) episodes.

    Folds: 0 animals, 1 indoor, 2 person, 3 vehicles. A class ``object+PART`` is used when
    it has both training and validation images (``aeroplane+TAIL`` excluded). Episode
    ``i`` uses class ``i mod C``; target and distinct references are validation images
    holding an object with the part; one such object is drawn per image; image and mask
    are cropped to the object's box.
    """

    title = "Pascal-Part"
    subdir = "Pascal-Part"
    marker = "VOCdevkit"
    super_categories = ("animals", "indoor", "person", "vehicles")
    layout = """\
Pascal-Part/
  VOCdevkit/VOC2010/
    JPEGImages/*.jpg
    Annotations_Part_json_merged_part_classes/<image id>.json
        ({'object': [{'name', 'bndbox': {xmin, ymin, xmax, ymax}, 'parts': [{'name', 'mask': [RLE]}]}]})
    all_obj_part_to_image.json
        ({super-category: {'object': {object: {'part': {PART: {'train': [ids], 'val': [ids]}}}}}})"""

    def __init__(self, root, *, fold: int | None = 0, shots: int = 1):
        super().__init__(root, fold=fold, shots=shots)
        self.voc = self.root / "VOCdevkit" / "VOC2010"
        index_file = self.voc / "all_obj_part_to_image.json"
        require_paths(
            self.title,
            self.data_root,
            self.layout,
            index_file,
            self.voc / "JPEGImages",
            self.voc / "Annotations_Part_json_merged_part_classes",
        )
        with open(index_file) as f:
            index = json.load(f)
        cat = self.super_categories[self.fold]
        if cat not in index:
            raise DatasetNotFoundError(
                f"{self.title}: {str(index_file)!r} has no super-category {cat!r} (fold {self.fold})"
            )
        objects = index[cat]["object"]
        self.class_names, self.val_images = [], []
        n_entries = 0
        for obj, spec in objects.items():
            for part, split in spec["part"].items():
                n_entries += len(split.get("val", []))
                if split.get("train") and split.get("val") and f"{obj}+{part}" != "aeroplane+TAIL":
                    self.class_names.append(f"{obj}+{part}")
                    self.val_images.append(unique(str(v) for v in split["val"]))
        self._too_few(self.class_names)
        self.default_episodes = min(n_entries, 2500)
        self._anno_cache: dict[str, dict] = {}

    def _annotation(self, image_id: str) -> dict:
        if image_id not in self._anno_cache:
            path = self.voc / "Annotations_Part_json_merged_part_classes" / f"{image_id}.json"
            try:
                with open(path) as f:
                    self._anno_cache[image_id] = json.load(f)
            except FileNotFoundError as e:
                raise BadSampleError(path, "annotation file does not exist") from e
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise BadSampleError(path, f"cannot be parsed as JSON ({e})") from e
            if len(self._anno_cache) > 4096:
                self._anno_cache.pop(next(iter(self._anno_cache)))
        return self._anno_cache[image_id]

    def _candidates(self, image_id: str, obj: str, part: str) -> list[int]:
        return [
            k
            for k, o in enumerate(self._annotation(image_id).get("object", []))
            if o.get("name") == obj and any(p.get("name") == part for p in o.get("parts", []))
        ]

    def sample(self, rng, index):
        ci = index % len(self.class_names)
        obj, part = self.class_names[ci].split("+", 1)
        pool = self.val_images[ci]
        chosen: list[dict] = []
        used: set[str] = set()
        attempts = 0
        while len(chosen) < self.shots + 1:
            attempts += 1
            if attempts > 50 * (self.shots + 1) + len(pool):
                raise BadSampleError(
                    self.voc / "all_obj_part_to_image.json",
                    f"could not find {self.shots + 1} distinct validation images with an annotated {obj} {part!r}",
                )
            image_id = pick(rng, pool)
            if image_id in used:
                continue
            cands = self._candidates(image_id, obj, part)
            if not cands:
                continue
            used.add(image_id)
            chosen.append({"image": image_id, "object": int(pick(rng, cands))})
        return ci, chosen[0], chosen[1:]

    def load(self, item, class_index):
        _, part = self.class_names[class_index].split("+", 1)
        image_id = item["image"]
        image_path = self.voc / "JPEGImages" / f"{image_id}.jpg"
        anno_path = self.voc / "Annotations_Part_json_merged_part_classes" / f"{image_id}.json"
        image = read_image(image_path)
        h, w = image.shape[:2]
        objs = self._annotation(image_id).get("object", [])
        if not 0 <= item["object"] < len(objs):
            raise BadSampleError(anno_path, f"has no object number {item['object']}")
        obj = objs[item["object"]]
        rles = [m for p in obj.get("parts", []) if p.get("name") == part for m in p.get("mask", [])]
        where = f"{anno_path}[object {item['object']}]"
        mask = decode_segmentation(rles, h, w, where=where) if rles else np.zeros((h, w), dtype=bool)
        box = obj["bndbox"]
        if isinstance(box, dict) and {"xmin", "ymin", "xmax", "ymax"} <= set(box):
            x0, y0, x1, y1 = (int(float(box[k])) for k in ("xmin", "ymin", "xmax", "ymax"))
        else:
            x0, y0, x1, y1 = (int(float(v)) for v in (box.values() if isinstance(box, dict) else box))
        image = crop(image, y0, y1, x0, x1)
        mask = crop(mask.astype(np.uint8), y0, y1, x0, x1)
        if image.size == 0:
            raise BadSampleError(where, f"object box {box} is empty")
        check_pair(image, mask, str(image_path), where, self.class_names[class_index])
        return Sample(image, mask, str(image_path), where)
