"""What every benchmark shares: the interface, the sample types, the errors and the one image reader.

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

``loads_any_class``: True where ``load(item, c)`` gives class ``c``'s mask in the item's image for
any class ``c`` (the item names an image, not one class's mask file), raising
:class:`BadSampleError` (or ``KeyError``) where the image has none of it: the benchmarks N-way
episodes can score (COCO-20i, LVIS-92i, iSAID-5i, COCO-format files).

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

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "IGNORE",
    "BadSampleError",
    "DatasetNotFoundError",
    "KeypointPair",
    "Sample",
    "SegmentationBenchmark",
    "leaves_folder",
    "read_image",
]

IGNORE = 255


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


def leaves_folder(name: str) -> bool:
    """Whether a file name from an annotation, split or episodes file would open a file outside the folder it
    is relative to: an absolute path (``/x``, ``C:/x``, ``\\\\server\\x``) or one with a ``..`` part (``/`` and
    ``\\`` both separate parts). Such names are refused wherever they are read."""
    text = str(name).replace("\\", "/")
    if text.startswith("/") or (len(text) > 1 and text[0].isalpha() and text[1] == ":"):
        return True
    return ".." in text.split("/")


def missing_error(title: str, root: Path, what: Path, layout: str) -> DatasetNotFoundError:
    return DatasetNotFoundError(
        f"{title}: {str(what)!r} does not exist.\nExpected layout under {str(root)!r}:\n{layout.rstrip()}"
    )


def require_paths(title: str, root: Path, layout: str, *paths: Path) -> None:
    for p in paths:
        if not p.exists():
            raise missing_error(title, root, p, layout)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """(H, W, 3) uint8 RGB pixels of an image file, in stored order (no EXIF rotation, as the authors' loaders).

    Every image the benchmarks load is read here, through the package's one image reader
    (:func:`insid3lab.core.imageio.read_rgb_array`): gray, palette, RGBA and CMYK files become RGB,
    16-bit files are scaled by their bit depth (see :mod:`insid3lab.core.imageio`), and an image over
    PIL's pixel limit is a bad sample rather than a crash.
    """
    from insid3lab.core.imageio import read_rgb_array

    try:
        return read_rgb_array(path, exif_transpose=False, what="image")
    except FileNotFoundError as e:
        raise BadSampleError(path, "image file does not exist") from e
    except (OSError, ValueError, SyntaxError) as e:
        raise BadSampleError(path, f"cannot be read as an image ({type(e).__name__}: {e})") from e


read_rgb = read_image  # the same reader under its earlier name


def check_pair(image: np.ndarray, mask: np.ndarray, image_path: str, mask_path: str, what: str) -> None:
    if image.shape[:2] != mask.shape[:2]:
        raise BadSampleError(
            mask_path,
            f"mask is {mask.shape[0]}x{mask.shape[1]} but its image {image_path!r} is {image.shape[0]}x{image.shape[1]}",
        )
    if not (mask == 1).any():
        raise BadSampleError(mask_path, f"mask has no foreground pixel for {what}")


def pick(rng: np.random.Generator, seq):
    return seq[int(rng.integers(len(seq)))]


def target_and_references(rng: np.random.Generator, names: list, shots: int) -> tuple[Any, list]:
    """A target and ``shots`` distinct references, all distinct from the target, from unique ``names``."""
    target = pick(rng, names)
    others = [n for n in names if n != target]
    picks = rng.choice(len(others), size=shots, replace=False)
    return target, [others[int(i)] for i in picks]


def unique(seq) -> list:
    seen, out = set(), []
    for x in seq:
        if x not in seen:
            seen.add(x)
            out.append(x)
    return out


def crop(arr: np.ndarray, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    return np.ascontiguousarray(arr[max(y0, 0) : max(y1, 0), max(x0, 0) : max(x1, 0)])


# ───────────────────────── base class ─────────────────────────


class SegmentationBenchmark:
    """Common interface of the few-shot segmentation benchmarks (see the module docstring)."""

    name: str = ""
    title: str = ""
    task = "segmentation"
    loads_any_class = False
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
            raise missing_error(self.title, data_root, candidate, self.layout)
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


def binary_mask(labels: np.ndarray) -> np.ndarray:
    return (labels >= 128).astype(np.uint8)
