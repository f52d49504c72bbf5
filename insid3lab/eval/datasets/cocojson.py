"""A dataset of one's own in COCO format: an annotations JSON (CVAT, Label Studio, Roboflow, COCO) and its images.

``CocoJsonDataset(images_dir, annotations="export.json")`` reads the categories, images
and instance annotations (polygons, RLE compressed or uncompressed, ``iscrowd``) and
serves few-shot segmentation episodes with the benchmarks' interface (see
:mod:`insid3lab.eval.datasets`):

* The mask of a category in an image is the union of its non-crowd instances (value 1);
  the category's crowd regions are ignored (255) where no instance covers them, as COCO's
  own evaluation ignores crowd regions. Other categories are background.
* Classes are the file's categories (sorted by id), optionally filtered by name or id. Categories
  that share a name are classes ``"NAME (id N)"``, and are selected by id (a name that several
  categories have is refused).
  A class needs images holding at least one non-crowd instance of it; classes with too
  few for a ``shots``-shot episode are left out with a warning and listed in
  ``describe()["skipped_classes"]``.
* ``reference_split`` (default 0.5) splits the images into a reference pool and a target
  pool by a hash of each image's file name (salted with ``seed``), so the split does not
  depend on the order of the file and is the same in every run: an image is a reference
  candidate when ``hash(seed, file_name) < reference_split``. References are drawn from the
  reference pool, targets from the target pool. ``reference_split=None`` draws both from
  all images, the references distinct from the target.
* Episode ``i`` uses class ``i mod C``, a target drawn uniformly among the class's target
  images and ``shots`` distinct references among its reference images. Items are
  ``{"image": file_name, "image_id": id}``. Default episodes: the number of (target
  image, class) pairs.

The file is checked on construction (:func:`~insid3lab.eval.datasets.cocojson_check.check_document`):
the first problem stops with a ``ValueError`` naming it, unless ``skip_bad=True``, which
leaves the images concerned out (counted in ``describe()["skipped_images"]``; entries that
name no image, such as an annotation of an unknown image id, in ``"skipped_entries"``).
Duplicate annotation ids and categories without instances do not stop it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import NamedTuple

import numpy as np

from insid3lab.core.warn import warn
from insid3lab.eval.datasets.base import (
    IGNORE,
    BadSampleError,
    DatasetNotFoundError,
    Sample,
    SegmentationBenchmark,
    read_rgb,
)
from insid3lab.eval.datasets.cocojson_check import check_document, read_coco_json, resolve_image
from insid3lab.eval.datasets.readers import decode_segmentation
from insid3lab.eval.datasets.registry import register_benchmark

__all__ = ["CocoJsonDataset", "Instance", "in_reference_pool"]


class Instance(NamedTuple):
    """One annotated object: ``category_index`` into ``class_names``, ``mask`` (H, W) bool, ``bbox`` (x, y, w, h)."""

    category_index: int
    mask: np.ndarray
    bbox: tuple[float, float, float, float]


def in_reference_pool(file_name: str, reference_split: float, seed: int = 0) -> bool:
    """Whether image ``file_name`` is in the reference pool: sha1 of ``"seed/file_name"`` as a fraction < split."""
    digest = hashlib.sha1(f"{int(seed)}/{file_name}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64 < reference_split


def class_name(cid, names: dict) -> str:
    """The class name of category ``cid`` (``names``: id -> name): its name, or ``"NAME (id N)"`` where other
    categories share that name, so that per-class results never mix two categories."""
    name = names[cid]
    return f"{name} (id {cid})" if sum(n == name for n in names.values()) > 1 else name


def _valid_image(im) -> bool:
    return isinstance(im, dict) and "id" in im and isinstance(im.get("file_name"), str)


def _mask_bbox(mask: np.ndarray) -> tuple[float, float, float, float]:
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return (0.0, 0.0, 0.0, 0.0)
    return (float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1))


@register_benchmark(
    "coco_json", help="your own COCO-format annotations: --annotations FILE.json and --images DIR", annotations=True
)
class CocoJsonDataset(SegmentationBenchmark):
    """Few-shot episodes from a COCO-format annotations file and its image folder (see the module docstring).

    Args:
        images_dir: the folder of the images; an image's ``file_name`` is looked up there
            (or, failing that, its base name).
        annotations: the COCO-format JSON file.
        fold: must be unset (there are no folds).
        shots: references per episode (>= 1).
        categories: None (all) or category names / ids to keep.
        reference_split: fraction of images in the reference pool, in (0, 1), or None
            for no split.
        seed: salt of the split's hash (a different seed, a different split).
        skip_bad: leave out images with problems instead of raising ``ValueError``.
    """

    loads_any_class = True

    title = "COCO-format dataset"
    layout = """\
ANNOTATIONS.json   (COCO: 'images' [{id, file_name, width, height}], 'categories' [{id, name}],
                    'annotations' [{id, image_id, category_id, segmentation: polygons or RLE, iscrowd}])
IMAGES_DIR/<file_name> ..."""

    def __init__(
        self,
        images_dir,
        *,
        annotations,
        fold: int | None = None,
        shots: int = 1,
        categories=None,
        reference_split: float | None = 0.5,
        seed: int = 0,
        skip_bad: bool = False,
    ):
        super().__init__(images_dir, fold=fold, shots=shots)
        if reference_split is not None and not (
            isinstance(reference_split, (int, float))
            and not isinstance(reference_split, bool)
            and 0 < reference_split < 1
        ):
            raise ValueError(f"reference_split={reference_split!r}: must be a fraction in (0, 1), or None for no split")
        if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
            raise ValueError(f"seed={seed!r}: must be an integer >= 0")
        self.annotations_path = Path(annotations).expanduser()
        self.reference_split = None if reference_split is None else float(reference_split)
        self.seed, self.skip_bad = int(seed), bool(skip_bad)
        if not self.root.is_dir():
            raise DatasetNotFoundError(f"{self.title}: images folder {str(self.root)!r} does not exist")
        if not self.annotations_path.is_file():
            raise DatasetNotFoundError(f"{self.title}: annotations file {str(self.annotations_path)!r} does not exist")

        doc, problem = read_coco_json(self.annotations_path)
        problems = [problem] if problem else check_document(doc, self.root, source=str(self.annotations_path))
        structural = [p for p in problems if p.kind == "not_coco"]
        blocking = [p for p in problems if p.blocking]
        if structural or (blocking and not self.skip_bad):
            first = (structural or blocking)[0]
            more = (
                ""
                if structural
                else (
                    f" ({len(blocking)} problem(s) in all: list them with `insid3lab data check --annotations "
                    f"{self.annotations_path} --images {self.root}`, or pass skip_bad=True / --skip-bad to leave the "
                    "images concerned out)"
                )
            )
            raise ValueError(f"{self.annotations_path}: {first.line}{more}")
        bad_images = {p.image for p in blocking if p.image is not None}
        self.skipped_images = sorted(bad_images)
        self.skipped_problems = [p.line for p in blocking]

        # images that are usable, sorted by file name (the file's order does not matter)
        self._images: dict = {}
        for im in doc["images"]:
            if _valid_image(im) and im["file_name"] not in bad_images:
                self._images[im["id"]] = im
        self.image_ids = sorted(self._images, key=lambda i: self._images[i]["file_name"])
        by_name: dict = {}
        for c in doc["categories"]:
            if isinstance(c, dict) and isinstance(c.get("name"), str):
                by_name.setdefault(c.get("id"), c["name"])
        self.category_ids = self._select_categories(by_name, categories)
        self._annotations: dict = {i: [] for i in self._images}
        for a in doc["annotations"]:
            if isinstance(a, dict) and a.get("image_id") in self._annotations and a.get("category_id") in by_name:
                self._annotations[a["image_id"]].append(a)
        self.skipped_entries = sum(1 for p in blocking if p.image is None)

        # per class: images holding a non-crowd instance, split into the two pools
        wanted = set(self.category_ids)
        holding: dict = {c: [] for c in self.category_ids}
        for iid in self.image_ids:
            present = {a["category_id"] for a in self._annotations[iid] if not a.get("iscrowd", 0)} & wanted
            for c in sorted(present, key=self.category_ids.index):
                holding[c].append(iid)
        kept, self.skipped_classes = [], []
        self._targets, self._references = [], []
        for c in self.category_ids:
            ids = holding[c]
            if self.reference_split is None:
                refs, tgts, ok = ids, ids, len(ids) >= self.shots + 1
            else:
                pool = [self.in_reference_pool(self._images[i]["file_name"]) for i in ids]
                refs = [i for i, r in zip(ids, pool) if r]
                tgts = [i for i, r in zip(ids, pool) if not r]
                ok = len(refs) >= self.shots and len(tgts) >= 1
            if ok:
                kept.append(c)
                self._targets.append(tgts)
                self._references.append(refs)
            else:
                self.skipped_classes.append(
                    {
                        "category": by_name[c],
                        "id": c,
                        "images": len(ids),
                        "reference_images": len(refs),
                        "target_images": len(tgts),
                    }
                )
        if self.skipped_classes:
            names = ", ".join(f"{s['category']!r} ({s['images']} image(s))" for s in self.skipped_classes)
            warn(
                f"{self.annotations_path}: {len(self.skipped_classes)} class(es) have too few images for a "
                f"{self.shots}-shot episode{self._needs()} and are left out: {names}"
            )
        if not kept:
            raise ValueError(
                f"{self.annotations_path}: no class has enough images for a {self.shots}-shot episode"
                f"{self._needs()}; categories: {', '.join(by_name[c] for c in self.category_ids) or 'none'}"
            )
        self.category_ids = kept
        self.class_names = [class_name(c, by_name) for c in kept]
        self.default_episodes = sum(len(t) for t in self._targets)

    def _needs(self) -> str:
        if self.reference_split is None:
            return f" (needs {self.shots + 1} images holding the class)"
        return (
            f" (needs {self.shots} in the reference pool and 1 in the target pool; "
            f"reference_split={self.reference_split})"
        )

    def _select_categories(self, by_name: dict, categories) -> list:
        ids = sorted(by_name, key=lambda c: (str(type(c)), c))
        if categories is None:
            return ids
        if isinstance(categories, (str, int)):
            categories = [categories]
        chosen = []
        for want in categories:
            match = [c for c in ids if c == want or (isinstance(want, str) and str(c) == want)]
            match = match or [c for c in ids if by_name[c] == want or class_name(c, by_name) == want]
            if not match:
                allowed = ", ".join(f"{by_name[c]!r} (id {c})" for c in ids)
                raise ValueError(
                    f"categories: {want!r} is not a category of {str(self.annotations_path)!r}; allowed: {allowed}"
                )
            if len(match) > 1:
                ids_text = ", ".join(str(c) for c in match[:-1]) + f" and {match[-1]}"
                raise ValueError(f"categories: {want!r} names categories {ids_text} of "
                                 f"{str(self.annotations_path)!r}; give the id of the one you mean")  # fmt: skip
            chosen += [c for c in match if c not in chosen]
        return [c for c in ids if c in chosen]

    def in_reference_pool(self, file_name: str) -> bool:
        """Whether image ``file_name`` is a reference candidate (always True without a split)."""
        return self.reference_split is None or in_reference_pool(file_name, self.reference_split, self.seed)

    # ── the benchmark interface ──

    def _item(self, iid) -> dict:
        return {"image": self._images[iid]["file_name"], "image_id": iid}

    def sample(self, rng, index):
        ci = index % len(self.class_names)
        targets, pool = self._targets[ci], self._references[ci]
        target = targets[int(rng.integers(len(targets)))]
        others = [i for i in pool if i != target]
        picks = rng.choice(len(others), size=self.shots, replace=False)
        return ci, self._item(target), [self._item(others[int(k)]) for k in picks]

    def _record(self, item: dict) -> dict:
        iid = item["image_id"]
        im = self._images.get(iid)
        if im is None or im["file_name"] != item["image"]:
            raise BadSampleError(self.annotations_path, f"item {item!r} names no usable image of this file")
        return im

    def _read_image(self, im: dict) -> tuple[np.ndarray, Path]:
        path = resolve_image(self.root, im["file_name"])
        image = read_rgb(path)
        if image.shape[:2] != (im["height"], im["width"]):
            raise BadSampleError(
                path,
                f"image is {image.shape[1]}x{image.shape[0]} but the annotations say "
                f"{im['width']}x{im['height']} (width x height)",
            )
        return image, path

    def load(self, item, class_index):
        im = self._record(item)
        image, path = self._read_image(im)
        h, w = image.shape[:2]
        cid = self.category_ids[class_index]
        fg, crowd = np.zeros((h, w), dtype=bool), np.zeros((h, w), dtype=bool)
        for a in self._annotations[im["id"]]:
            if a["category_id"] == cid:
                m = decode_segmentation(a["segmentation"], h, w, where=self._where(im, a))
                if a.get("iscrowd", 0):
                    crowd |= m
                else:
                    fg |= m
        mask = np.where(fg, 1, np.where(crowd, IGNORE, 0)).astype(np.uint8)
        where = f"{self.annotations_path}[image {im['id']}, category {cid}]"
        if not fg.any():
            raise BadSampleError(
                where, f"the instances of {self.class_names[class_index]!r} in {im['file_name']!r} cover no pixel"
            )
        return Sample(image, mask, str(path), where)

    def _where(self, im: dict, a: dict) -> str:
        return f"{self.annotations_path}[annotation {a.get('id')} (image {im['file_name']!r})]"

    def instances(self, image_id, *, crowd: bool = False) -> list[Instance]:
        """The image's objects of the classes in ``class_names`` (crowd regions instead with ``crowd=True``).

        Each is an :class:`Instance`: class index, (H, W) bool mask, and the mask's box
        (x, y, w, h) in pixels. Annotation order is kept.
        """
        if image_id not in self._images:
            raise KeyError(f"image id {image_id!r} is not a usable image of {str(self.annotations_path)!r}")
        im = self._images[image_id]
        h, w = im["height"], im["width"]
        out = []
        for a in self._annotations[image_id]:
            if a["category_id"] in self.category_ids and bool(a.get("iscrowd", 0)) == crowd:
                m = decode_segmentation(a["segmentation"], h, w, where=self._where(im, a))
                out.append(Instance(self.category_ids.index(a["category_id"]), m, _mask_bbox(m)))
        return out

    def describe(self) -> dict:
        d = super().describe()
        d.update(
            {
                "annotations": str(self.annotations_path),
                "reference_split": self.reference_split,
                "seed": self.seed,
                "category_ids": list(self.category_ids),
                "images": len(self.image_ids),
                "skipped_classes": list(self.skipped_classes),
                "skipped_images": len(self.skipped_images),
                "skipped_entries": self.skipped_entries,
                "skip_reasons": self.skipped_problems[:20],
            }
        )
        return d

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({str(self.root)!r}, annotations={str(self.annotations_path)!r}, "
            f"shots={self.shots}, classes={len(self.class_names)})"
        )
