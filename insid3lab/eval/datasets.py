"""Few-shot segmentation and correspondence benchmarks, read from their documented on-disk layouts.

Every benchmark is a class with the same small interface:

* ``class_names``: the benchmark's class set; mIoU is the mean over exactly these classes.
  A class is referred to by its position in this list (``class_index``).
* ``default_episodes``: the number of episodes of the standard protocol.
* ``sample(rng, index)``: draw one episode with a ``numpy.random.Generator``. It returns
  ``(class_index, target, references)`` where ``target`` and each reference are small
  JSON-serialisable dicts ("items") naming the files (relative to the benchmark's root)
  and any choice made while sampling (which object of an image, ...). An item fully
  determines what ``load`` returns, so an episode written to JSON reruns exactly.
* ``load(item, class_index)``: a :class:`Sample` — the RGB image as an (H, W, 3) uint8
  array and the mask as an (H, W) uint8 array with 0 = background, 1 = foreground,
  255 = ignored (only benchmarks that annotate ignore regions produce 255).

``SPair71k`` (keypoint correspondence) has ``load_pair(episode)`` instead of ``load``.

A benchmark whose files are missing raises :class:`DatasetNotFoundError` showing the
expected layout; a sample that cannot be used (unreadable image, empty mask, image and
mask of different sizes) raises :class:`BadSampleError` naming the file.

Folds and class sets follow the protocol of the published few-shot benchmarks:
COCO-20i uses classes ``fold + 4 v`` (v = 0..19) of COCO's 80; LVIS-92i takes every 10th
validation category (those with more than ``shots`` images) starting at ``fold``;
PACO-Part every 4th of the 448 part classes starting at ``fold`` (kept when the
validation split has more than ``shots`` images of it); Pascal-Part's four folds are the
super-categories animals, indoor, person, vehicles; iSAID-5i has 3 folds of 5 classes.
"""

from __future__ import annotations

import json
import os
import pickle
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

__all__ = [
    "BENCHMARKS",
    "BadSampleError",
    "ChestXray",
    "COCO20i",
    "DatasetNotFoundError",
    "FolderDataset",
    "ISAID5i",
    "ISIC2018",
    "KeypointPair",
    "LVIS92i",
    "PACOPart",
    "PascalPart",
    "PerMIS",
    "SPair71k",
    "SUIM",
    "Sample",
    "SegmentationBenchmark",
    "build_dataset",
    "dataset_names",
]

IGNORE = 255
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
MASK_EXTENSIONS = (".png", ".bmp", ".tif", ".tiff", ".gif", ".jpg", ".jpeg")

COCO_CLASS_NAMES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange",
    "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant",
    "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush",
)

ISAID_CLASS_NAMES = (
    "ship", "storage tank", "baseball diamond", "tennis court", "basketball court",
    "ground track field", "bridge", "large vehicle", "small vehicle", "helicopter",
    "swimming pool", "roundabout", "soccer ball field", "plane", "harbor",
)

SUIM_CLASSES = ("FV", "HD", "PF", "RI", "RO", "SR", "WR")

SPAIR_CATEGORIES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)


class DatasetNotFoundError(FileNotFoundError):
    """A benchmark's files are not where its documented layout puts them."""


class BadSampleError(RuntimeError):
    """One sample cannot be evaluated; ``path`` names the offending file, ``reason`` says why."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


@dataclass
class Sample:
    """One loaded image with its mask for one class.

    image: (H, W, 3) uint8 RGB.
    mask: (H, W) uint8; 0 background, 1 foreground, 255 ignored.
    image_path / mask_path: the files it came from (for messages and records).
    """

    image: np.ndarray
    mask: np.ndarray
    image_path: str
    mask_path: str

    @property
    def foreground(self) -> np.ndarray:
        """(H, W) bool: the pixels of the class."""
        return self.mask == 1

    @property
    def ignore(self) -> np.ndarray | None:
        """(H, W) bool of ignored pixels, or None when there are none."""
        ign = self.mask == IGNORE
        return ign if ign.any() else None


@dataclass
class KeypointPair:
    """One SPair-71k pair.

    source / target: (H, W, 3) uint8 RGB images.
    source_points / target_points: (N, 2) float32, (x, y) in pixels of each image.
    threshold: the PCK reference length in target pixels, max(width, height) of the
    target object's bounding box.
    """

    source: np.ndarray
    target: np.ndarray
    source_points: np.ndarray
    target_points: np.ndarray
    threshold: float
    category: str
    source_path: str
    target_path: str


# ───────────────────────── file helpers ─────────────────────────


def _missing(title: str, root: Path, what: Path, layout: str) -> DatasetNotFoundError:
    return DatasetNotFoundError(
        f"{title}: {str(what)!r} does not exist.\nExpected layout under {str(root)!r}:\n{layout.rstrip()}"
    )


def _require(title: str, root: Path, layout: str, *paths: Path) -> None:
    for p in paths:
        if not p.exists():
            raise _missing(title, root, p, layout)


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """(H, W, 3) uint8 RGB pixels of an image file, in stored order (no EXIF rotation)."""
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB")).copy()
    except FileNotFoundError as e:
        raise BadSampleError(path, "image file does not exist") from e
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise BadSampleError(path, f"cannot be read as an image ({type(e).__name__}: {e})") from e


def read_label_map(path: str | os.PathLike, *, gray: bool = False) -> np.ndarray:
    """(H, W) integer array of a mask file: palette indices / gray levels (``gray``: convert to L)."""
    try:
        with Image.open(path) as im:
            if gray:
                im = im.convert("L")
            arr = np.asarray(im).copy()
    except FileNotFoundError as e:
        raise BadSampleError(path, "mask file does not exist") from e
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise BadSampleError(path, f"cannot be read as a mask ({type(e).__name__}: {e})") from e
    if arr.ndim == 3:
        if arr.shape[2] >= 3 and not (np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 0], arr[..., 2])):
            raise BadSampleError(path, f"expected a single-channel label map; got a colour image of shape {arr.shape}")
        arr = arr[..., 0]
    return arr


def _check_pair(image: np.ndarray, mask: np.ndarray, image_path: str, mask_path: str, what: str) -> None:
    if image.shape[:2] != mask.shape[:2]:
        raise BadSampleError(
            mask_path, f"mask is {mask.shape[0]}x{mask.shape[1]} but its image {image_path!r} is {image.shape[0]}x{image.shape[1]}"
        )
    if not (mask == 1).any():
        raise BadSampleError(mask_path, f"mask has no foreground pixel for {what}")


def _pick(rng: np.random.Generator, seq):
    return seq[int(rng.integers(len(seq)))]


def _target_and_references(rng: np.random.Generator, names: list, shots: int) -> tuple[Any, list]:
    """A target and ``shots`` distinct references, all distinct from the target, from unique ``names``."""
    target = _pick(rng, names)
    others = [n for n in names if n != target]
    picks = rng.choice(len(others), size=shots, replace=False)
    return target, [others[int(i)] for i in picks]


def _unique(seq) -> list:
    seen, out = set(), []
    for x in seq:
        if x not in seen:
            seen.add(x)
            out.append(x)
    return out


def _coco_mask_api():
    try:
        import pycocotools.mask as mask_api
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "pycocotools is needed to decode this benchmark's polygon / RLE annotations: pip install pycocotools"
        ) from e
    return mask_api


def decode_segmentation(segm, height: int, width: int) -> np.ndarray:
    """A COCO-style segmentation as an (height, width) bool mask (see :func:`_decode_segmentation`)."""
    with warnings.catch_warnings():
        # pycocotools' Cython decoder trips numpy 2's __array__(copy=...) deprecation; harmless
        warnings.filterwarnings("ignore", category=DeprecationWarning, module="pycocotools")
        return _decode_segmentation(segm, height, width)


def _decode_segmentation(segm, height: int, width: int) -> np.ndarray:
    """A COCO-style segmentation as an (height, width) bool mask.

    segm: a list of polygons ``[x0, y0, x1, y1, ...]``, an RLE dict (``size``, ``counts``
    as a compressed string/bytes or an uncompressed list), a list of RLE dicts, or an
    (H, W) array. Polygons and RLE are decoded with pycocotools, as the benchmarks' own
    evaluation code does.
    """
    if isinstance(segm, np.ndarray):
        if segm.ndim != 2:
            raise ValueError(f"segmentation array must be 2-D; got shape {segm.shape}")
        return segm > 0
    mask_api = _coco_mask_api()
    if isinstance(segm, dict):
        segm = [segm]
    if isinstance(segm, (list, tuple)):
        if len(segm) == 0:
            return np.zeros((height, width), dtype=bool)
        if all(isinstance(s, dict) for s in segm):
            rles = []
            for s in segm:
                counts = s["counts"]
                h, w = (int(v) for v in s["size"])
                if isinstance(counts, list):
                    rles.extend(mask_api.frPyObjects([{"size": [h, w], "counts": counts}], h, w))
                else:
                    rles.append({"size": [h, w], "counts": counts.encode("ascii") if isinstance(counts, str) else counts})
            return mask_api.decode(rles).sum(axis=2) > 0
        polys = [np.asarray(p, dtype=np.float64).reshape(-1).tolist() for p in segm]
        polys = [p for p in polys if len(p) >= 6]
        if not polys:
            return np.zeros((height, width), dtype=bool)
        rle = mask_api.merge(mask_api.frPyObjects(polys, height, width))
        return mask_api.decode(rle).astype(bool)
    raise ValueError(f"unsupported segmentation of type {type(segm).__name__}; expected polygons, RLE or an array")


def _crop(arr: np.ndarray, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    return np.ascontiguousarray(arr[max(y0, 0):max(y1, 0), max(x0, 0):max(x1, 0)])


# ───────────────────────── base class ─────────────────────────


class SegmentationBenchmark:
    """Common interface of the few-shot segmentation benchmarks (see the module docstring)."""

    name: str = ""
    title: str = ""
    task = "segmentation"
    folds: tuple[int, ...] | None = None
    layout: str = ""

    def __init__(self, root: str | os.PathLike, *, fold: int | None = None, shots: int = 1):
        if not isinstance(shots, (int, np.integer)) or isinstance(shots, bool) or shots < 1:
            raise ValueError(f"shots={shots!r}: must be an integer >= 1")
        self.shots = int(shots)
        if self.folds is None:
            if fold not in (None, 0):
                raise ValueError(f"fold={fold!r}: {self.title} has no folds; leave fold unset")
            self.fold = None
        else:
            if fold is None:
                fold = 0
            if fold not in self.folds:
                raise ValueError(f"fold={fold!r}: {self.title} has folds {self.folds[0]}..{self.folds[-1]}")
            self.fold = int(fold)
        self.data_root = Path(root).expanduser()
        self.root = self._locate(self.data_root)
        self.class_names: list[str] = []
        self.default_episodes: int = 0

    # where the benchmark's folder is: --data-root may hold it or be it
    subdir: str = ""
    marker: str = ""

    def _locate(self, data_root: Path) -> Path:
        if self.subdir:
            candidate = data_root / self.subdir
            if candidate.exists():
                return candidate
            if self.marker and (data_root / self.marker).exists():
                return data_root
            raise _missing(self.title, data_root, candidate, self.layout)
        return data_root

    def _too_few(self, sampleable: list) -> None:
        if not sampleable:
            raise ValueError(
                f"{self.title} at {str(self.root)!r}: no class has at least {self.shots + 1} images, "
                f"so no {self.shots}-shot episode (references distinct from the target) can be drawn"
            )

    def _each_class_needs(self, counts: list[int], where: str) -> None:
        for name, n in zip(self.class_names, counts):
            if n <= self.shots:
                raise ValueError(
                    f"{self.title}: class {name!r} has {n} image(s) in {where!r}; "
                    f"a {self.shots}-shot episode needs at least {self.shots + 1}"
                )

    def describe(self) -> dict:
        """JSON-serialisable identity of the benchmark (for run summaries)."""
        return {
            "name": self.name,
            "title": self.title,
            "fold": self.fold,
            "shots": self.shots,
            "root": str(self.root),
            "num_classes": len(self.class_names),
            "default_episodes": self.default_episodes,
        }

    def sample(self, rng: np.random.Generator, index: int) -> tuple[int, dict, list[dict]]:
        raise NotImplementedError

    def load(self, item: dict, class_index: int) -> Sample:
        raise NotImplementedError

    def item_key(self, item: dict) -> str:
        """The image an item refers to (references never share it with the target)."""
        return str(item["image"])

    def __repr__(self) -> str:
        fold = "" if self.fold is None else f", fold={self.fold}"
        return f"{type(self).__name__}({str(self.root)!r}{fold}, shots={self.shots}, classes={len(self.class_names)})"


# ───────────────────────── COCO-20i ─────────────────────────


class COCO20i(SegmentationBenchmark):
    """COCO-20i: 80 COCO classes in 4 folds of 20 (class ``fold + 4 v``); 1000 episodes.

    Episode: a class drawn uniformly from the fold's classes, a target and ``shots``
    distinct references drawn uniformly from that class's validation images.
    Masks: ``annotations/<name>.png`` label maps where value ``c + 1`` is class ``c``.
    """

    name = "coco"
    title = "COCO-20i"
    folds = (0, 1, 2, 3)
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
        _require(self.title, self.data_root, self.layout, split)
        with open(split, "rb") as f:
            classwise = pickle.load(f)
        self.class_ids = [self.fold + 4 * v for v in range(20)]
        self.class_names = [COCO_CLASS_NAMES[c] for c in self.class_ids]
        self.images = {i: _unique(str(n) for n in classwise.get(c, [])) for i, c in enumerate(self.class_ids)}
        self.sampleable = [i for i in range(20) if len(self.images[i]) > self.shots]
        self._too_few(self.sampleable)
        self.default_episodes = 1000

    def describe(self) -> dict:
        d = super().describe()
        d["classes_without_enough_images"] = [self.class_names[i] for i in range(20) if i not in self.sampleable]
        return d

    def sample(self, rng, index):
        ci = _pick(rng, self.sampleable)
        target, refs = _target_and_references(rng, self.images[ci], self.shots)
        return ci, {"image": target}, [{"image": r} for r in refs]

    def load(self, item, class_index):
        image_path = self.root / item["image"]
        stem = os.path.splitext(item["image"])[0]
        mask_path = self.root / "annotations" / (stem + ".png")
        image = read_rgb(image_path)
        labels = read_label_map(mask_path)
        mask = (labels == self.class_ids[class_index] + 1).astype(np.uint8)
        _check_pair(image, mask, str(image_path), str(mask_path), self.class_names[class_index])
        return Sample(image, mask, str(image_path), str(mask_path))


# ───────────────────────── LVIS-92i ─────────────────────────


class LVIS92i(SegmentationBenchmark):
    """LVIS-92i: every 10th LVIS validation category with more than ``shots`` images; 10 folds; 2300 episodes.

    Episode ``i`` uses class ``i mod C``; target and references drawn uniformly from that
    category's images; the mask is the union of all its instances in the image.
    """

    name = "lvis"
    title = "LVIS-92i"
    folds = tuple(range(10))
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
        _require(self.title, self.data_root, self.layout, anno)
        with open(anno, "rb") as f:
            self.annotations = pickle.load(f)
        cat_ids = [c for c in self.annotations if len(self.annotations[c]) > self.shots]
        per_fold = len(cat_ids) // 10
        self.category_ids = [cat_ids[self.fold + 10 * v] for v in range(per_fold)]
        self.class_names = [f"lvis_{c}" for c in self.category_ids]
        self._too_few(self.category_ids)
        self.images = {i: [str(n) for n in self.annotations[c]] for i, c in enumerate(self.category_ids)}
        self.default_episodes = 2300

    def sample(self, rng, index):
        ci = index % len(self.category_ids)
        target, refs = _target_and_references(rng, self.images[ci], self.shots)
        return ci, {"image": target}, [{"image": r} for r in refs]

    def load(self, item, class_index):
        image_path = self.root / "coco" / item["image"]
        image = read_rgb(image_path)
        h, w = image.shape[:2]
        info = self.annotations[self.category_ids[class_index]][item["image"]]
        mask = np.zeros((h, w), dtype=bool)
        for a in info["annotations"]:
            mask |= decode_segmentation(a["segmentation"], h, w)
        mask = mask.astype(np.uint8)
        where = f"{self.root / 'lvis_val.pkl'}[{self.category_ids[class_index]}][{item['image']}]"
        _check_pair(image, mask, str(image_path), where, self.class_names[class_index])
        return Sample(image, mask, str(image_path), where)


# ───────────────────────── PACO-Part ─────────────────────────


class PACOPart(SegmentationBenchmark):
    """PACO-Part: object-part classes, 4 folds (every 4th of the training part classes); 2500 episodes.

    Episode: a class drawn uniformly, then target and references among the validation
    images of that part (distinct images); in each image one object carrying the part is
    drawn; image and mask are cropped to that object's box (x, y, w, h).
    """

    name = "paco_part"
    title = "PACO-Part"
    folds = (0, 1, 2, 3)
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
        _require(self.title, self.data_root, self.layout, train_p, val_p)
        with open(train_p, "rb") as f:
            train = pickle.load(f)
        with open(val_p, "rb") as f:
            val = pickle.load(f)
        self.img2anno = val["img2anno"]
        self.cid2img: dict = {}
        for cid, entries in val["cid2img"].items():
            seen: dict = {}
            for e in entries:
                (img_id, path), = e.items()
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
        obj = _pick(rng, keys)
        return {"image": self.cid2img[cid][img_id], "image_id": _jsonable(img_id), "object": _jsonable(obj)}

    def sample(self, rng, index):
        # like the benchmark's loader, an episode whose chosen objects cannot be cropped is drawn again
        for _ in range(100):
            ci = int(rng.integers(len(self.category_ids)))
            cid = self.category_ids[ci]
            ids = list(self.cid2img[cid])
            target, refs = _target_and_references(rng, ids, self.shots)
            items = [self._item(rng, cid, i) for i in [target, *refs]]
            if all(it is not None for it in items):
                return ci, items[0], items[1:]
        raise BadSampleError(self.root / "paco" / "paco_part_val.pkl",
                             f"episode {index}: 100 draws found no episode whose objects have non-empty boxes")

    def load(self, item, class_index):
        cid = self.category_ids[class_index]
        image_path = self.root / "coco" / item["image"]
        image = read_rgb(image_path)
        h, w = image.shape[:2]
        img_id = _restore_key(self.img2anno, item["image_id"])
        objs = self._objects(img_id, cid)
        obj = _restore_key(objs, item["object"])
        annos = objs[obj]
        mask = np.zeros((h, w), dtype=bool)
        for a in annos:
            mask |= decode_segmentation(a["segmentation"], h, w)
        y0, y1, x0, x1 = self._box_rows_cols(annos[0]["obj_bbox"])
        image = _crop(image, y0, y1, x0, x1)
        mask = _crop(mask.astype(np.uint8), y0, y1, x0, x1)
        where = f"{self.root / 'paco' / 'paco_part_val.pkl'}[image {item['image_id']}, object {item['object']}]"
        if image.size == 0:
            raise BadSampleError(where, f"object box {annos[0]['obj_bbox']} is empty")
        _check_pair(image, mask, str(image_path), where, self.class_names[class_index])
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


# ───────────────────────── Pascal-Part ─────────────────────────


class PascalPart(SegmentationBenchmark):
    """Pascal-Part: object-part classes of one super-category per fold; min(#val entries, 2500) episodes.

    Folds: 0 animals, 1 indoor, 2 person, 3 vehicles. A class ``object+PART`` is used when
    it has both training and validation images (``aeroplane+TAIL`` excluded). Episode
    ``i`` uses class ``i mod C``; target and distinct references are validation images
    holding an object with the part; one such object is drawn per image; image and mask
    are cropped to the object's box.
    """

    name = "pascal_part"
    title = "Pascal-Part"
    folds = (0, 1, 2, 3)
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
        _require(self.title, self.data_root, self.layout, index_file, self.voc / "JPEGImages",
                 self.voc / "Annotations_Part_json_merged_part_classes")
        with open(index_file) as f:
            index = json.load(f)
        cat = self.super_categories[self.fold]
        if cat not in index:
            raise DatasetNotFoundError(f"{self.title}: {str(index_file)!r} has no super-category {cat!r} (fold {self.fold})")
        objects = index[cat]["object"]
        self.class_names, self.val_images = [], []
        n_entries = 0
        for obj, spec in objects.items():
            for part, split in spec["part"].items():
                n_entries += len(split.get("val", []))
                if split.get("train") and split.get("val") and f"{obj}+{part}" != "aeroplane+TAIL":
                    self.class_names.append(f"{obj}+{part}")
                    self.val_images.append(_unique(str(v) for v in split["val"]))
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
            k for k, o in enumerate(self._annotation(image_id).get("object", []))
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
            image_id = _pick(rng, pool)
            if image_id in used:
                continue
            cands = self._candidates(image_id, obj, part)
            if not cands:
                continue
            used.add(image_id)
            chosen.append({"image": image_id, "object": int(_pick(rng, cands))})
        return ci, chosen[0], chosen[1:]

    def load(self, item, class_index):
        _, part = self.class_names[class_index].split("+", 1)
        image_id = item["image"]
        image_path = self.voc / "JPEGImages" / f"{image_id}.jpg"
        anno_path = self.voc / "Annotations_Part_json_merged_part_classes" / f"{image_id}.json"
        image = read_rgb(image_path)
        h, w = image.shape[:2]
        objs = self._annotation(image_id).get("object", [])
        if not 0 <= item["object"] < len(objs):
            raise BadSampleError(anno_path, f"has no object number {item['object']}")
        obj = objs[item["object"]]
        rles = [m for p in obj.get("parts", []) if p.get("name") == part for m in p.get("mask", [])]
        mask = decode_segmentation(rles, h, w) if rles else np.zeros((h, w), dtype=bool)
        box = obj["bndbox"]
        if isinstance(box, dict) and {"xmin", "ymin", "xmax", "ymax"} <= set(box):
            x0, y0, x1, y1 = (int(float(box[k])) for k in ("xmin", "ymin", "xmax", "ymax"))
        else:
            x0, y0, x1, y1 = (int(float(v)) for v in (box.values() if isinstance(box, dict) else box))
        image = _crop(image, y0, y1, x0, x1)
        mask = _crop(mask.astype(np.uint8), y0, y1, x0, x1)
        where = f"{anno_path}[object {item['object']}]"
        if image.size == 0:
            raise BadSampleError(where, f"object box {box} is empty")
        _check_pair(image, mask, str(image_path), where, self.class_names[class_index])
        return Sample(image, mask, str(image_path), where)


# ───────────────────────── ISIC 2018 ─────────────────────────


def _binary(labels: np.ndarray) -> np.ndarray:
    return (labels >= 128).astype(np.uint8)


class ISIC2018(SegmentationBenchmark):
    """ISIC 2018 skin lesions, grouped into 3 classes (subfolders 1, 2, 3); 600 episodes.

    Episode ``i`` uses class ``i mod 3``; masks are gray PNGs thresholded at 128.
    """

    name = "isic"
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
        _require(self.title, self.data_root, self.layout, self.inputs, self.truth)
        self.class_names = ["1", "2", "3"]
        self.images = []
        for c in self.class_names:
            d = self.inputs / c
            _require(self.title, self.data_root, self.layout, d)
            self.images.append(sorted(f"{c}/{p.name}" for p in d.iterdir() if p.suffix.lower() == ".jpg"))
        self._each_class_needs([len(v) for v in self.images], str(self.inputs))
        self.default_episodes = 600

    def sample(self, rng, index):
        ci = index % 3
        target, refs = _target_and_references(rng, self.images[ci], self.shots)
        return ci, {"image": target}, [{"image": r} for r in refs]

    def load(self, item, class_index):
        image_path = self.inputs / item["image"]
        stem = Path(item["image"]).stem
        mask_path = self.truth / f"{stem}_segmentation.png"
        image = read_rgb(image_path)
        mask = _binary(read_label_map(mask_path, gray=True))
        _check_pair(image, mask, str(image_path), str(mask_path), "the lesion")
        return Sample(image, mask, str(image_path), str(mask_path))


# ───────────────────────── Chest X-ray ─────────────────────────


class ChestXray(SegmentationBenchmark):
    """Chest X-ray lung segmentation (one class); 600 episodes; gray masks thresholded at 128.

    Mask ``NAME_mask.png`` belongs to image ``NAME.png`` (Montgomery ``MCUCXR*`` masks keep the image's name).
    """

    name = "lung"
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
        _require(self.title, self.data_root, self.layout, self.image_dir, self.mask_dir)
        self.class_names = ["lung"]
        self.masks = sorted(p.name for p in self.mask_dir.iterdir() if p.suffix.lower() == ".png")
        self._each_class_needs([len(self.masks)], str(self.mask_dir))
        self.default_episodes = 600

    @staticmethod
    def image_name(mask_name: str) -> str:
        if "MCUCXR" in mask_name:
            return mask_name
        stem = mask_name[: -len(".png")]
        return (stem[: -len("_mask")] if stem.endswith("_mask") else stem) + ".png"

    def item_key(self, item):
        return str(item["mask"])

    def sample(self, rng, index):
        target, refs = _target_and_references(rng, self.masks, self.shots)
        return 0, {"mask": target}, [{"mask": r} for r in refs]

    def load(self, item, class_index):
        mask_path = self.mask_dir / item["mask"]
        image_path = self.image_dir / self.image_name(item["mask"])
        image = read_rgb(image_path)
        mask = _binary(read_label_map(mask_path, gray=True))
        _check_pair(image, mask, str(image_path), str(mask_path), "the lungs")
        return Sample(image, mask, str(image_path), str(mask_path))


# ───────────────────────── SUIM ─────────────────────────


class SUIM(SegmentationBenchmark):
    """SUIM underwater scenes, 7 classes with one binary mask folder each.

    Only masks with foreground are used; episodes = number of such masks; episode ``i``
    uses class ``i mod 7``; masks thresholded at 128; images are ``images/<stem>.jpg``.
    """

    name = "suim"
    title = "SUIM"
    subdir = "SUIM"
    marker = "masks"
    layout = """\
SUIM/
  images/*.jpg
  masks/FV/*.png  masks/HD/*.png  masks/PF/*.png  masks/RI/*.png  masks/RO/*.png  masks/SR/*.png  masks/WR/*.png"""

    def __init__(self, root, *, fold: int | None = None, shots: int = 1):
        super().__init__(root, fold=fold, shots=shots)
        _require(self.title, self.data_root, self.layout, self.root / "images", self.root / "masks")
        self.class_names = list(SUIM_CLASSES)
        self.masks = []
        for c in self.class_names:
            d = self.root / "masks" / c
            _require(self.title, self.data_root, self.layout, d)
            keep = []
            for p in sorted(d.iterdir()):
                if p.is_file() and _binary(read_label_map(p, gray=True)).any():
                    keep.append(f"{c}/{p.name}")
            self.masks.append(keep)
        self._each_class_needs([len(v) for v in self.masks], str(self.root / "masks"))
        self.default_episodes = sum(len(v) for v in self.masks)

    def item_key(self, item):
        return Path(item["mask"]).stem

    def sample(self, rng, index):
        ci = index % len(self.class_names)
        target, refs = _target_and_references(rng, self.masks[ci], self.shots)
        return ci, {"mask": target}, [{"mask": r} for r in refs]

    def load(self, item, class_index):
        mask_path = self.root / "masks" / item["mask"]
        image_path = self.root / "images" / (Path(item["mask"]).stem + ".jpg")
        image = read_rgb(image_path)
        mask = _binary(read_label_map(mask_path, gray=True))
        _check_pair(image, mask, str(image_path), str(mask_path), self.class_names[class_index])
        return Sample(image, mask, str(image_path), str(mask_path))


# ───────────────────────── iSAID-5i ─────────────────────────


class ISAID5i(SegmentationBenchmark):
    """iSAID-5i aerial patches: 15 classes, 3 folds of 5 (``5 fold + j``); 255 marks ignored pixels.

    Episode ``i`` takes the target and class from line ``i mod L`` of the fold's split
    file (``NAME__C`` with C = class id + 1); references drawn uniformly from the other
    images listed for that class.
    """

    name = "isaid"
    title = "iSAID-5i"
    folds = (0, 1, 2)
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
        _require(self.title, self.data_root, self.layout, self.root / "val" / "images",
                 self.root / "val" / "semantic_png", split)
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
        self.images = {i: _unique(n for n, c in self.entries if c == i) for i in range(5)}
        if not self.entries:
            self._too_few([])
        for name, ci in self.entries:
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
        image = read_rgb(image_path)
        labels = read_label_map(mask_path)
        mask = (labels == self.class_ids[class_index] + 1).astype(np.uint8)
        mask[labels == IGNORE] = IGNORE
        _check_pair(image, mask, str(image_path), str(mask_path), self.class_names[class_index])
        return Sample(image, mask, str(image_path), str(mask_path))


# ───────────────────────── PerMIS ─────────────────────────


class PerMIS(SegmentationBenchmark):
    """PerMIS personalised segmentation: per video, frame 0 is the reference for frames 1 and 2.

    Episode ``i`` is video ``i // 2`` (folders sorted by name), target frame ``1 + i mod 2``.
    One shot only. Masks come from ``masks.npz.npy`` (or ``masks.npz``): 3 dicts, one per
    frame, whose first value is the object's mask.
    """

    name = "permis"
    title = "PerMIS"
    subdir = "PerMIRS"
    marker = ""
    layout = """\
PerMIRS/
  <video>/0.jpg  1.jpg  2.jpg
  <video>/masks.npz.npy     (3 dicts, one per frame: {object id: HxW mask})"""

    def __init__(self, root, *, fold: int | None = None, shots: int = 1):
        super().__init__(root, fold=fold, shots=shots)
        if self.shots != 1:
            raise ValueError(f"shots={shots}: {self.title} has one reference frame per video; use shots=1")
        self.videos = sorted(d.name for d in self.root.iterdir() if d.is_dir())
        if not self.videos:
            raise _missing(self.title, self.data_root, self.root / "<video>", self.layout)
        self.class_names = ["object"]
        self.default_episodes = 2 * len(self.videos)
        self._masks_cache: dict[str, list] = {}

    def item_key(self, item):
        return f"{item['video']}/{item['frame']}"

    def _frame_masks(self, video: str) -> list:
        if video not in self._masks_cache:
            d = self.root / video
            path = d / "masks.npz.npy"
            if not path.exists():
                path = d / "masks.npz"
            try:
                data = np.load(path, allow_pickle=True)
            except FileNotFoundError as e:
                raise BadSampleError(d / "masks.npz.npy", "mask file does not exist") from e
            except (OSError, ValueError, pickle.UnpicklingError) as e:
                raise BadSampleError(path, f"cannot be read with numpy.load ({e})") from e
            if isinstance(data, np.lib.npyio.NpzFile):
                frames = [data[k] for k in sorted(data.files)]
                if len(frames) == 1 and frames[0].dtype == object:
                    frames = list(frames[0])
            else:
                frames = list(data)
            masks = []
            for fr in frames:
                if isinstance(fr, np.ndarray) and fr.dtype == object and fr.shape == ():
                    fr = fr.item()
                masks.append(next(iter(fr.values())) if isinstance(fr, dict) else fr)
            if len(masks) < 3:
                raise BadSampleError(path, f"expected masks for 3 frames; found {len(masks)}")
            self._masks_cache = {video: masks}
        return self._masks_cache[video]

    def sample(self, rng, index):
        video = self.videos[(index // 2) % len(self.videos)]
        return 0, {"video": video, "frame": 1 + index % 2}, [{"video": video, "frame": 0}]

    def load(self, item, class_index):
        image_path = self.root / item["video"] / f"{item['frame']}.jpg"
        image = read_rgb(image_path)
        mask = (np.asarray(self._frame_masks(item["video"])[item["frame"]]) > 0).astype(np.uint8)
        where = f"{self.root / item['video'] / 'masks.npz.npy'}[frame {item['frame']}]"
        _check_pair(image, mask, str(image_path), where, "the object")
        return Sample(image, mask, str(image_path), where)


# ───────────────────────── generic folder ─────────────────────────


class FolderDataset(SegmentationBenchmark):
    """A user's own data: ``images/`` and ``masks/`` with matching file stems.

    Either flat (one class, named after the root folder) or one subfolder per class in
    both ``images/`` and ``masks/``. Foreground is mask value > 0 (set ``ignore_value``
    to mark a value, e.g. 255, as ignored instead). Episode ``i`` uses class ``i mod C``;
    target and distinct references drawn uniformly from that class. Default episodes:
    the number of image/mask pairs.
    """

    name = "folder"
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
        _require(self.title, self.data_root, self.layout, img_dir, mask_dir)
        class_dirs = sorted(d.name for d in img_dir.iterdir() if d.is_dir())
        if class_dirs:
            groups = [(c, img_dir / c, mask_dir / c) for c in class_dirs]
        else:
            groups = [(self.root.resolve().name or "foreground", img_dir, mask_dir)]
        self.class_names, self.pairs = [], []
        for cname, idir, mdir in groups:
            _require(self.title, self.data_root, self.layout, mdir)
            masks = {p.stem: p.name for p in sorted(mdir.iterdir()) if p.suffix.lower() in MASK_EXTENSIONS}
            prefix = f"{cname}/" if class_dirs else ""
            pairs = [
                (prefix + p.name, prefix + masks[p.stem])
                for p in sorted(idir.iterdir())
                if p.suffix.lower() in IMAGE_EXTENSIONS and p.stem in masks
            ]
            if len(pairs) <= self.shots:
                raise ValueError(
                    f"{self.title}: {str(idir)!r} has {len(pairs)} image(s) with a mask of the same stem in "
                    f"{str(mdir)!r}; a {self.shots}-shot episode needs at least {self.shots + 1}"
                )
            self.class_names.append(cname)
            self.pairs.append(pairs)
        self.default_episodes = sum(len(p) for p in self.pairs)

    def sample(self, rng, index):
        ci = index % len(self.class_names)
        pairs = self.pairs[ci]
        t, refs = _target_and_references(rng, list(range(len(pairs))), self.shots)
        item = lambda k: {"image": pairs[k][0], "mask": pairs[k][1]}  # noqa: E731
        return ci, item(t), [item(k) for k in refs]

    def load(self, item, class_index):
        image_path = self.root / "images" / item["image"]
        mask_path = self.root / "masks" / item["mask"]
        image = read_rgb(image_path)
        labels = read_label_map(mask_path, gray=True)
        mask = (labels > 0).astype(np.uint8)
        if self.ignore_value is not None:
            mask[labels == self.ignore_value] = IGNORE
        _check_pair(image, mask, str(image_path), str(mask_path), self.class_names[class_index])
        return Sample(image, mask, str(image_path), str(mask_path))


# ───────────────────────── SPair-71k ─────────────────────────


class SPair71k:
    """SPair-71k keypoint correspondence pairs of one split (test by default).

    Episode ``i`` is pair ``i mod P`` of ``Layout/large/<split>.txt``. Metric: PCK with
    threshold ``alpha * max(w, h)`` of the target object's bounding box, per image.
    """

    name = "spair"
    title = "SPair-71k"
    task = "keypoints"
    folds = None
    layout = """\
SPair-71k/
  JPEGImages/<category>/*.jpg
  PairAnnotation/<split>/<pair>.json   ('src_kps', 'trg_kps': [[x, y], ...], 'trg_bndbox': [x0, y0, x1, y1], 'category')
  ImageAnnotation/<category>/*.json
  Layout/large/trn.txt  val.txt  test.txt   (lines like 000001-2008_000585-2008_002145:aeroplane)"""

    def __init__(self, root, *, fold: int | None = None, shots: int = 1, split: str = "test"):
        if fold not in (None, 0):
            raise ValueError(f"fold={fold!r}: {self.title} has no folds; leave fold unset")
        if shots != 1:
            raise ValueError(f"shots={shots}: {self.title} matches one source image to one target; use shots=1")
        self.fold, self.shots, self.split = None, 1, split
        self.data_root = Path(root).expanduser()
        self.root = self.data_root / "SPair-71k"
        if not self.root.exists() and (self.data_root / "Layout").exists():
            self.root = self.data_root
        layout_file = self.root / "Layout" / "large" / f"{split}.txt"
        _require(self.title, self.data_root, self.layout, self.root, layout_file, self.root / "PairAnnotation" / split)
        with open(layout_file) as f:
            self.pairs = [ln.strip() for ln in f if ln.strip()]
        if not self.pairs:
            raise ValueError(f"{self.title}: {str(layout_file)!r} lists no pairs")
        self.parsed: list[tuple[str, str, str]] = []
        for pair in self.pairs:
            head, _, category = pair.partition(":")
            parts = head.split("-")
            if len(parts) < 3:
                raise ValueError(f"{self.title}: {str(layout_file)!r}: pair {pair!r} is not ID-SOURCE-TARGET:category")
            if not category:
                category = str(self._annotation(pair).get("category", ""))
            self.parsed.append((parts[1], parts[2], category))
        extra = sorted({c for _, _, c in self.parsed} - set(SPAIR_CATEGORIES))
        self.class_names = list(SPAIR_CATEGORIES) + extra
        self.default_episodes = len(self.pairs)

    def describe(self) -> dict:
        return {
            "name": self.name, "title": self.title, "fold": None, "shots": 1, "split": self.split,
            "root": str(self.root), "num_classes": len(self.class_names), "default_episodes": self.default_episodes,
        }

    def _annotation(self, pair: str) -> dict:
        path = self.root / "PairAnnotation" / self.split / f"{pair}.json"
        try:
            with open(path) as f:
                return json.load(f)
        except FileNotFoundError as e:
            raise BadSampleError(path, "pair annotation does not exist") from e
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise BadSampleError(path, f"cannot be parsed as JSON ({e})") from e

    def item_key(self, item):
        return str(item["image"])

    def sample(self, rng, index):
        i = index % len(self.pairs)
        source, target, category = self.parsed[i]
        ci = self.class_names.index(category)
        return ci, {"image": f"{category}/{target}.jpg", "pair": self.pairs[i]}, [{"image": f"{category}/{source}.jpg"}]

    def load_pair(self, target: dict, references: list[dict]) -> KeypointPair:
        ann = self._annotation(target["pair"])
        src_path = self.root / "JPEGImages" / references[0]["image"]
        trg_path = self.root / "JPEGImages" / target["image"]
        src, trg = read_rgb(src_path), read_rgb(trg_path)
        ann_path = self.root / "PairAnnotation" / self.split / f"{target['pair']}.json"
        try:
            sk = np.asarray(ann["src_kps"], dtype=np.float32).reshape(-1, 2)
            tk = np.asarray(ann["trg_kps"], dtype=np.float32).reshape(-1, 2)
            x0, y0, x1, y1 = (float(v) for v in ann["trg_bndbox"])
        except (KeyError, ValueError, TypeError) as e:
            raise BadSampleError(ann_path, f"needs 'src_kps', 'trg_kps' ([[x, y], ...]) and 'trg_bndbox' ({e})") from e
        if len(sk) != len(tk) or len(sk) == 0:
            raise BadSampleError(ann_path, f"has {len(sk)} source and {len(tk)} target keypoints; need the same number > 0")
        return KeypointPair(src, trg, sk, tk, max(x1 - x0, y1 - y0), str(ann.get("category", target["image"].split("/")[0])),
                            str(src_path), str(trg_path))


# ───────────────────────── registry ─────────────────────────

BENCHMARKS: dict[str, type] = {
    "coco": COCO20i,
    "lvis": LVIS92i,
    "pascal_part": PascalPart,
    "paco_part": PACOPart,
    "isic": ISIC2018,
    "lung": ChestXray,
    "suim": SUIM,
    "isaid": ISAID5i,
    "permis": PerMIS,
    "spair": SPair71k,
    "folder": FolderDataset,
}


def dataset_names() -> list[str]:
    """The names ``build_dataset`` (and ``insid3lab eval --dataset``) accepts."""
    return list(BENCHMARKS)


def build_dataset(name: str, data_root: str | os.PathLike, *, fold: int | None = None, shots: int = 1, **kwargs):
    """Build benchmark ``name`` (see :func:`dataset_names`) from ``data_root``.

    ``data_root`` may be the folder that holds the benchmark's folder (``COCO2014/``,
    ``LVIS/``, ...) as in the authors' ``data/`` layout, or that folder itself. For
    ``folder`` it is the folder with ``images/`` and ``masks/``. ``fold`` is required to
    lie in the benchmark's folds (default 0) and must be unset for benchmarks without folds.
    """
    key = str(name).lower().replace("-", "_")
    if key not in BENCHMARKS:
        raise ValueError(f"dataset={name!r} is not known; allowed: {', '.join(BENCHMARKS)}")
    cls = BENCHMARKS[key]
    if cls.folds is None and fold == 0:
        fold = None
    return cls(data_root, fold=fold, shots=shots, **kwargs)
