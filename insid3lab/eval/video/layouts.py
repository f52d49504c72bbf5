"""Video object segmentation data on disk: the DAVIS 2017 and YouTube-VOS layouts, palette PNGs.

DAVIS 2017 (semi-supervised)::

    ROOT/JPEGImages/480p/<sequence>/00000.jpg ...
    ROOT/Annotations/480p/<sequence>/00000.png ...   palette PNGs: 0 background, 1..n objects, 255 void
    ROOT/ImageSets/2017/val.txt                      one sequence name a line

YouTube-VOS::

    ROOT/JPEGImages/<sequence>/00000.jpg ...
    ROOT/Annotations/<sequence>/00000.png ...        sparse: only some frames are annotated

Frames and annotations are listed in natural order (see :func:`insid3lab.core.video.natural_key`;
for DAVIS's zero-padded names this is the toolkit's sorted order). Label maps are (H, W) uint8.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from insid3lab.core.palette import VOID, read_label_map
from insid3lab.core.video import IMAGE_SUFFIXES, iter_frames, natural_key

__all__ = [
    "DavisDataset",
    "YouTubeVOSDataset",
]

DAVIS_URL = "https://davischallenge.org/davis2017/code.html"


def _files(folder: Path, suffixes: tuple[str, ...]) -> list[Path]:
    if not folder.is_dir():
        return []
    out = [p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in suffixes]
    return sorted(out, key=lambda p: natural_key(p.name))


class _Layout:
    """What the two layouts share: frames and annotations of a sequence found in two folders."""

    name = "vos"

    def __init__(self, root, images: Path, annotations: Path, sequences: list[str]):
        self.root = Path(root).expanduser()
        self._images, self._annotations = images, annotations
        self.sequences = list(sequences)
        if not self.sequences:
            raise ValueError(f"{self.name} at {str(self.root)!r}: no sequence to evaluate")

    def __len__(self) -> int:
        return len(self.sequences)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.root)!r}, {len(self)} sequences)"

    def _check(self, seq: str) -> None:
        if seq not in self.sequences:
            raise KeyError(f"sequence {seq!r} is not in {self!r}")

    def frame_paths(self, seq: str) -> list[Path]:
        """The frame files of ``seq`` in order."""
        self._check(seq)
        files = _files(self._images / seq, IMAGE_SUFFIXES)
        if not files:
            raise FileNotFoundError(f"sequence {seq!r}: no frame in {str(self._images / seq)!r}")
        return files

    def annotation_paths(self, seq: str) -> dict[str, Path]:
        """Frame name → annotation PNG of ``seq``, for the annotated frames."""
        self._check(seq)
        return {p.stem: p for p in _files(self._annotations / seq, (".png",))}

    def frames(self, seq: str):
        """Iterator of the (H, W, 3) uint8 frames of ``seq`` (see :func:`insid3lab.core.video.iter_frames`)."""
        return (frame for _, frame in iter_frames([str(p) for p in self.frame_paths(seq)]))

    def describe(self) -> dict:
        return {"name": self.name, "root": str(self.root), "sequences": len(self.sequences)}


class DavisDataset(_Layout):
    """The DAVIS semi-supervised layout (every frame annotated).

    Args:
        root: the folder holding ``JPEGImages``, ``Annotations`` and ``ImageSets``.
        split: the ``ImageSets/<year>/<split>.txt`` list to read (``val``, ``train``, ...).
        year: the ImageSets year folder.
        resolution: ``480p`` or ``Full-Resolution``.
        sequences: names to use instead of the split's list.
    """

    def __init__(self, root, split: str = "val", *, year: str = "2017", resolution: str = "480p", sequences=None):
        r = Path(root).expanduser()
        images, annotations = r / "JPEGImages" / resolution, r / "Annotations" / resolution
        for d in (images, annotations):
            if not d.is_dir():
                raise FileNotFoundError(f"DAVIS at {str(r)!r}: no folder {str(d)!r} (get DAVIS 2017 from {DAVIS_URL})")
        if sequences is None:
            listing = r / "ImageSets" / str(year) / f"{split}.txt"
            if not listing.is_file():
                raise FileNotFoundError(f"DAVIS at {str(r)!r}: no sequence list {str(listing)!r} for split {split!r}")
            sequences = [s.strip() for s in listing.read_text().splitlines() if s.strip()]
        elif isinstance(sequences, str):
            sequences = [sequences]
        self.split, self.year, self.resolution = split, str(year), resolution
        self.name = f"davis{self.year}"
        super().__init__(r, images, annotations, list(sequences))
        missing = [s for s in self.sequences if not (images / s).is_dir()]
        if missing:
            raise FileNotFoundError(
                f"DAVIS at {str(r)!r}: no frame folder for sequence(s) {', '.join(missing)} in {str(images)!r}"
            )

    def label_maps(self, seq: str) -> np.ndarray:
        """(T, H, W) uint8 ground truth of every frame of ``seq``, void (255) kept."""
        ann = self.annotation_paths(seq)
        frames = self.frame_paths(seq)
        missing = [f.stem for f in frames if f.stem not in ann]
        if missing:
            raise FileNotFoundError(
                f"sequence {seq!r}: no annotation for frame(s) {', '.join(missing[:5])}"
                f"{' ...' if len(missing) > 5 else ''} in {str(self._annotations / seq)!r}"
            )
        maps = [read_label_map(ann[f.stem]) for f in frames]
        if len({m.shape for m in maps}) != 1:
            raise ValueError(f"sequence {seq!r}: annotations of different sizes {sorted({m.shape for m in maps})}")
        return np.stack(maps)

    def first_label_map(self, seq: str) -> np.ndarray:
        """(H, W) uint8 annotation of the first frame, void (255) set to background (the given mask)."""
        first = self.frame_paths(seq)[0]
        path = self.annotation_paths(seq).get(first.stem)
        if path is None:
            raise FileNotFoundError(f"sequence {seq!r}: no annotation of its first frame {first.stem!r}")
        m = read_label_map(path)
        return np.where(m == VOID, 0, m).astype(np.uint8)

    def num_objects(self, seq: str) -> int:
        """The largest object id of the first frame (the toolkit's object count)."""
        return int(self.first_label_map(seq).max())

    def describe(self) -> dict:
        return {**super().describe(), "split": self.split, "resolution": self.resolution}


class YouTubeVOSDataset(_Layout):
    """The YouTube-VOS layout: sparse annotations, objects may first appear after the first frame.

    ``meta.json`` is not needed: the objects and the frame where each appears are read from the
    annotations. The validation ground truth is not public, so these sequences are for
    prediction; :func:`insid3lab.eval.video.scores.evaluate_sequence` needs every frame annotated.

    Args:
        root: the split folder holding ``JPEGImages`` and ``Annotations`` (e.g. ``.../valid``).
        sequences: names to use (default: every folder of ``JPEGImages``).
    """

    name = "youtube-vos"

    def __init__(self, root, *, sequences=None):
        r = Path(root).expanduser()
        images, annotations = r / "JPEGImages", r / "Annotations"
        for d in (images, annotations):
            if not d.is_dir():
                raise FileNotFoundError(f"YouTube-VOS at {str(r)!r}: no folder {str(d)!r}")
        if sequences is None:
            sequences = sorted(
                (d.name for d in images.iterdir() if d.is_dir() and not d.name.startswith(".")), key=natural_key
            )
        elif isinstance(sequences, str):
            sequences = [sequences]
        super().__init__(r, images, annotations, list(sequences))

    def first_label_map(self, seq: str) -> np.ndarray:
        """(H, W) uint8 annotation of the first annotated frame."""
        ann = self.annotation_paths(seq)
        if not ann:
            raise FileNotFoundError(f"sequence {seq!r}: no annotation in {str(self._annotations / seq)!r}")
        return read_label_map(next(iter(ann.values())))

    def object_frames(self, seq: str) -> dict[int, str]:
        """Object id → name of the first frame whose annotation shows it."""
        out: dict[int, str] = {}
        for name, path in self.annotation_paths(seq).items():
            for k in np.unique(read_label_map(path)):
                if k not in (0, VOID):
                    out.setdefault(int(k), name)
        return dict(sorted(out.items()))

    def num_objects(self, seq: str) -> int:
        """The number of distinct objects annotated anywhere in ``seq``."""
        return len(self.object_frames(seq))
