"""PACO-Part: object-part classes of PACO in four folds; objects cropped to their box."""

from __future__ import annotations

import numpy as np

from insid3lab.eval.datasets.base import (
    BadSampleError,
    Sample,
    SegmentationBenchmark,
    check_pair,
    crop,
    pick,
    read_image,
    require_paths,
    target_and_references,
)
from insid3lab.eval.datasets.readers import SplitFileError, decode_segmentation, load_pickle
from insid3lab.eval.datasets.registry import register_benchmark


@register_benchmark("paco_part", folds=(0, 1, 2, 3), help="PACO-Part: object parts, 4 folds")
class PACOPart(SegmentationBenchmark):
    """PACO-Part: object-part classes, 4 folds (every 4th of the training part classes); 2500 episodes.

    Episode: a class drawn uniformly, then target and references among the validation
    images of that part (distinct images); in each image one object carrying the part is
    drawn; image and mask are cropped to that object's box (x, y, w, h).
    """

    title = "PACO-Part"
    subdir = "PACO-Part"
    marker = "paco"
    layout = """\
PACO-Part/
  coco/train2017/*.jpg  coco/val2017/*.jpg
  paco/paco_part_train.pkl   (dict with 'cid2img': part class id -> [...])
  paco/paco_part_val.pkl     (dict with 'cid2img': class id -> [{image id: '.../val2017/NAME.jpg'}],
                              'img2anno': image id -> [{'category_id', 'obj_ann_id', 'obj_bbox', 'segmentation'}])"""

    def __init__(self, root, *, fold: int | None = 0, shots: int = 1):
        super().__init__(root, fold=fold, shots=shots)
        train_p = self.root / "paco" / "paco_part_train.pkl"
        val_p = self.root / "paco" / "paco_part_val.pkl"
        require_paths(self.title, self.data_root, self.layout, train_p, val_p)
        train, val = load_pickle(train_p), load_pickle(val_p)
        for p, d, keys in ((train_p, train, ("cid2img",)), (val_p, val, ("cid2img", "img2anno"))):
            if not isinstance(d, dict) or not all(k in d for k in keys):
                raise SplitFileError(f"{p}: expected a dict with the keys {', '.join(keys)}")
        self.img2anno = val["img2anno"]
        self.cid2img: dict = {}
        for cid, entries in val["cid2img"].items():
            seen: dict = {}
            for e in entries:
                ((img_id, path),) = e.items()
                seen.setdefault(img_id, "/".join(str(path).split("/")[-2:]))
            self.cid2img[cid] = seen
        train_ids = list(train["cid2img"].keys())
        per_fold = len(train_ids) // 4
        fold_ids = [train_ids[self.fold + 4 * v] for v in range(per_fold)]
        self.category_ids = [c for c in fold_ids if len(self.cid2img.get(c, {})) > self.shots]
        self._too_few(self.category_ids)
        self.class_names = [f"paco_{c}" for c in self.category_ids]
        self.default_episodes = 2500

    def item_key(self, item):
        return str(item["image_id"])

    def _objects(self, img_id, cid) -> dict:
        objs: dict = {}
        for a in self.img2anno[img_id]:
            if a["category_id"] == cid:
                objs.setdefault(a["obj_ann_id"], []).append(a)
        return objs

    @staticmethod
    def _box_rows_cols(bbox) -> tuple[int, int, int, int]:
        x, y, bw, bh = (float(v) for v in bbox)
        return int(y), int(y + bh), int(x), int(x + bw)

    @classmethod
    def _box_nonempty(cls, bbox) -> bool:
        y0, y1, x0, x1 = cls._box_rows_cols(bbox)
        return y1 > max(y0, 0) and x1 > max(x0, 0)

    def _item(self, rng, cid, img_id) -> dict | None:
        """One object of class ``cid`` in image ``img_id`` whose box crop is not empty; None if there is none."""
        objs = self._objects(img_id, cid)
        keys = [k for k, annos in objs.items() if self._box_nonempty(annos[0]["obj_bbox"])]
        if not keys:
            return None
        obj = pick(rng, keys)
        return {"image": self.cid2img[cid][img_id], "image_id": _jsonable(img_id), "object": _jsonable(obj)}

    def sample(self, rng, index):
        # like the benchmark's loader, an episode whose chosen objects cannot be cropped is drawn again
        for _ in range(100):
            ci = int(rng.integers(len(self.category_ids)))
            cid = self.category_ids[ci]
            ids = list(self.cid2img[cid])
            target, refs = target_and_references(rng, ids, self.shots)
            items = [self._item(rng, cid, i) for i in [target, *refs]]
            if all(it is not None for it in items):
                return ci, items[0], items[1:]
        raise BadSampleError(
            self.root / "paco" / "paco_part_val.pkl",
            f"episode {index}: 100 draws found no episode whose objects have non-empty boxes",
        )

    def load(self, item, class_index):
        cid = self.category_ids[class_index]
        image_path = self.root / "coco" / item["image"]
        image = read_image(image_path)
        h, w = image.shape[:2]
        img_id = _restore_key(self.img2anno, item["image_id"])
        objs = self._objects(img_id, cid)
        obj = _restore_key(objs, item["object"])
        annos = objs[obj]
        where = f"{self.root / 'paco' / 'paco_part_val.pkl'}[image {item['image_id']}, object {item['object']}]"
        mask = np.zeros((h, w), dtype=bool)
        for a in annos:
            mask |= decode_segmentation(a["segmentation"], h, w, where=where)
        y0, y1, x0, x1 = self._box_rows_cols(annos[0]["obj_bbox"])
        image = crop(image, y0, y1, x0, x1)
        mask = crop(mask.astype(np.uint8), y0, y1, x0, x1)
        if image.size == 0:
            raise BadSampleError(where, f"object box {annos[0]['obj_bbox']} is empty")
        check_pair(image, mask, str(image_path), where, self.class_names[class_index])
        return Sample(image, mask, str(image_path), where)


def _jsonable(v):
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, (int, str, float)):
        return v
    return str(v)


def _restore_key(d: dict, key):
    """The key of ``d`` equal to ``key`` as written to JSON (ints may come back as ints or strings)."""
    if key in d:
        return key
    for k in d:
        if str(k) == str(key):
            return k
    raise KeyError(key)
