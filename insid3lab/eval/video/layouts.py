"""Video object segmentation data on disk: the DAVIS 2017 and YouTube-VOS layouts, palette PNGs.

DAVIS 2017 (semi-supervised; every frame annotated)::

    ROOT/JPEGImages/480p/<sequence>/00000.jpg ...
    ROOT/Annotations/480p/<sequence>/00000.png ...   palette PNGs: 0 background, 1..n objects, 255 void
    ROOT/ImageSets/2017/val.txt                      one sequence name a line

YouTube-VOS (objects may first appear after the first frame; not every frame need be annotated)::

    ROOT/train/JPEGImages/<sequence>/00000.jpg 00005.jpg ...   the frames at 6 fps
    ROOT/train/Annotations/<sequence>/00000.png 00005.png ...  every one of them annotated
    ROOT/train_all_frames/JPEGImages/<sequence>/00000.jpg 00001.jpg ...   optional: every frame (30 fps)
    ROOT/valid/...                                              the validation split: see below

Every layout is a :class:`VideoLayout`: what :func:`~insid3lab.eval.video.runner.evaluate_sequences`
tracks (the masks given, and at which frame) and scores (the annotated frames, and which of them
count for each object). A layout registers itself as a benchmark of ``insid3lab eval`` with
:func:`~insid3lab.eval.video.registry.register_video_benchmark`.

Frames and annotations are listed in natural order (see :func:`insid3lab.core.video.natural_key`;
for DAVIS's zero-padded names this is the toolkit's sorted order). Label maps are (H, W) uint8.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from insid3lab.core.palette import VOID, read_label_map
from insid3lab.core.video import IMAGE_SUFFIXES, iter_frames, natural_key
from insid3lab.eval.video.registry import register_video_benchmark

__all__ = ["DavisDataset", "VideoLayout", "YouTubeVOSDataset"]

DAVIS_URL = "https://davischallenge.org/davis2017/code.html"
#: The fewest frames a DAVIS sequence is scored on: the first (given) and the last are not.
MIN_FRAMES = 3
YOUTUBE_VOS_URL = "https://youtube-vos.org/dataset/vos/"


def _files(folder: Path, suffixes: tuple[str, ...]) -> list[Path]:
    if not folder.is_dir():
        return []
    out = [p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in suffixes]
    return sorted(out, key=lambda p: natural_key(p.name))


def _objects(label_map: np.ndarray) -> list[int]:
    return [int(k) for k in np.unique(label_map) if k not in (0, VOID)]


class VideoLayout:
    """A video benchmark's sequences: frames and annotations found in two folders.

    Subclasses find the folders and the sequence names and pass them to ``__init__``; they
    may override what is given and what is scored. What a sequence runner reads:

    * :meth:`frame_paths`, :meth:`frames`: every frame of a sequence;
    * :meth:`given`: frame index → the label map of the objects whose mask is given at that
      frame (the first frame's objects, for DAVIS);
    * :meth:`label_maps` and :meth:`annotated_frames`: the ground truth and where it lies;
    * :meth:`scored_frames`: object id → the frames its J and F are computed on;
    * :meth:`check_scorable`: an error, before any work, for data without ground truth.

    Attributes:
        name: the benchmark's name in summaries.
        root: the folder it was read from.
        sequences: the sequence names, in evaluation order.
    """

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

    def frames(self, seq: str, start: int = 0):
        """Iterator of the (H, W, 3) uint8 frames of ``seq`` from index ``start`` on (see
        :func:`insid3lab.core.video.iter_frames`)."""
        return (frame for _, frame in iter_frames([str(p) for p in self.frame_paths(seq)[start:]]))

    def annotated_frames(self, seq: str) -> list[int]:
        """Indices (into :meth:`frame_paths`) of the frames that have an annotation, in order."""
        ann = self.annotation_paths(seq)
        return [t for t, p in enumerate(self.frame_paths(seq)) if p.stem in ann]

    def label_maps(self, seq: str) -> np.ndarray:
        """(A, H, W) uint8 ground truth of the A :meth:`annotated_frames` of ``seq``, void (255) kept."""
        ann, frames = self.annotation_paths(seq), self.frame_paths(seq)
        maps = [read_label_map(ann[frames[t].stem]) for t in self.annotated_frames(seq)]
        if not maps:
            raise FileNotFoundError(f"sequence {seq!r}: no annotation in {str(self._annotations / seq)!r}")
        if len({m.shape for m in maps}) != 1:
            raise ValueError(f"sequence {seq!r}: annotations of different sizes {sorted({m.shape for m in maps})}")
        return np.stack(maps)

    def given(self, seq: str) -> dict[int, np.ndarray]:
        """Frame index → (H, W) uint8 label map of the objects first annotated at that frame (void as background).

        Each object is given once, at the first annotated frame that shows it, and tracked from there.
        """
        out: dict[int, np.ndarray] = {}
        seen: set[int] = set()
        for t, m in zip(self.annotated_frames(seq), self.label_maps(seq)):
            new = [k for k in _objects(m) if k not in seen]
            if new:
                out[t] = np.where(np.isin(m, new), m, 0).astype(np.uint8)
                seen.update(new)
        if not out:
            raise ValueError(f"sequence {seq!r}: no annotation shows an object; nothing to track")
        return out

    def scored_frames(self, seq: str) -> dict[int, list[int]]:
        """Object id → the frame indices its J and F are computed on: the annotated frames after the
        one where it is given (objects given at the last annotated frame have none and are left out)."""
        annotated = self.annotated_frames(seq)
        out = {}
        for t, m in sorted(self.given(seq).items()):
            later = [u for u in annotated if u > t]
            for k in _objects(m):
                if later:
                    out[k] = later
        return dict(sorted(out.items()))

    def check_scorable(self) -> None:
        """Raise ``ValueError`` when this data has no ground truth to score a prediction with."""

    def describe(self) -> dict:
        return {"name": self.name, "root": str(self.root), "sequences": len(self.sequences)}


@register_video_benchmark("davis2017", help="DAVIS 2017 val, J and F as the DAVIS toolkit reports")
class DavisDataset(VideoLayout):
    """The DAVIS semi-supervised layout (every frame annotated), scored as the DAVIS toolkit scores.

    The objects are those of the first frame's annotation (ids 1..n, n its largest id, as the
    toolkit counts them), given there; each is scored on every frame but the first and the last.

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

    def annotated_frames(self, seq: str) -> list[int]:
        """Every frame: DAVIS annotates them all (a missing annotation is an error)."""
        ann = self.annotation_paths(seq)
        frames = self.frame_paths(seq)
        missing = [f.stem for f in frames if f.stem not in ann]
        if missing:
            raise FileNotFoundError(
                f"sequence {seq!r}: no annotation for frame(s) {', '.join(missing[:5])}"
                f"{' ...' if len(missing) > 5 else ''} in {str(self._annotations / seq)!r}"
            )
        return list(range(len(frames)))

    def first_label_map(self, seq: str) -> np.ndarray:
        """(H, W) uint8 annotation of the first frame, void (255) set to background (the given mask)."""
        first = self.frame_paths(seq)[0]
        path = self.annotation_paths(seq).get(first.stem)
        if path is None:
            raise FileNotFoundError(f"sequence {seq!r}: no annotation of its first frame {first.stem!r}")
        m = read_label_map(path)
        return np.where(m == VOID, 0, m).astype(np.uint8)

    def given(self, seq: str) -> dict[int, np.ndarray]:
        """``{0: first_label_map(seq)}``: every object is given at the first frame."""
        return {0: self.first_label_map(seq)}

    def num_objects(self, seq: str) -> int:
        """The largest object id of the first frame (the toolkit's object count)."""
        return int(self.first_label_map(seq).max())

    def scored_frames(self, seq: str) -> dict[int, list[int]]:
        """Objects 1..n on frames 1..T-2: the first frame is given and the last left out, as the toolkit does."""
        T = len(self.frame_paths(seq))
        n = self.num_objects(seq)
        if n < 1:
            raise ValueError(f"sequence {seq!r}: its first annotation holds no object")
        if T < MIN_FRAMES:
            raise ValueError(
                f"sequence {seq!r}: {T} frame(s); the scores need at least {MIN_FRAMES} (the first and last are not "
                "scored)"
            )
        return {k: list(range(1, T - 1)) for k in range(1, n + 1)}

    def describe(self) -> dict:
        return {**super().describe(), "split": self.split, "resolution": self.resolution}


@register_video_benchmark("youtube_vos", help="YouTube-VOS train split, J and F on its annotated frames")
class YouTubeVOSDataset(VideoLayout):
    """The YouTube-VOS layout: objects may first appear after the first frame, annotations may be sparse.

    ``meta.json`` is not needed: the objects and the frame where each appears are read from the
    annotations. Each object is given at the first annotated frame that shows it and scored on
    every annotated frame after it (:meth:`VideoLayout.scored_frames`); frames without an
    annotation (all frames, ``all_frames=True``) are tracked through but not scored.

    Only the train split can be scored: the ground truth of the validation and test splits is not
    public (their ``Annotations`` hold only the mask where each object first appears). Their
    sequences can be read to predict (:meth:`frames`, :meth:`given`), and
    :meth:`check_scorable` says why they cannot be scored.

    Args:
        root: the YouTube-VOS folder holding the split folders (``train/``, ``valid/``, ...), or
            one split's folder itself (the one holding ``JPEGImages`` and ``Annotations``; its
            name, when ``train``, ``valid`` or ``test``, is the split).
        split: the split folder to read under ``root``.
        all_frames: read the frames from ``<split>_all_frames/JPEGImages`` beside the split
            folder (every frame of the videos, of which every fifth is annotated).
        sequences: names to use (default: every folder of ``JPEGImages``).
    """

    name = "youtube_vos"
    #: The splits whose ground truth is not public.
    HIDDEN_SPLITS = ("valid", "test")

    def __init__(self, root, split: str = "train", *, all_frames: bool = False, sequences=None):
        r = Path(root).expanduser()
        if (r / "JPEGImages").is_dir() and not (r / split / "JPEGImages").is_dir():
            folder = r
            split = r.name if r.name in ("train", *self.HIDDEN_SPLITS) else split
        else:
            folder = r / split
        images, annotations = folder / "JPEGImages", folder / "Annotations"
        if all_frames:
            images = folder.parent / f"{folder.name}_all_frames" / "JPEGImages"
        for d in (images, annotations):
            if not d.is_dir():
                raise FileNotFoundError(f"YouTube-VOS at {str(r)!r}: no folder {str(d)!r} (see {YOUTUBE_VOS_URL})")
        if sequences is None:
            sequences = sorted(
                (d.name for d in images.iterdir() if d.is_dir() and not d.name.startswith(".")), key=natural_key
            )
        elif isinstance(sequences, str):
            sequences = [sequences]
        self.split, self.all_frames = split, bool(all_frames)
        super().__init__(r, images, annotations, list(sequences))
        missing = [s for s in self.sequences if not (images / s).is_dir()]
        if missing:
            raise FileNotFoundError(
                f"YouTube-VOS at {str(r)!r}: no frame folder for sequence(s) {', '.join(missing)} in {str(images)!r}"
            )

    def check_scorable(self) -> None:
        """A ``ValueError`` for the validation and test splits, whose ground truth is not public."""
        if self.split in self.HIDDEN_SPLITS:
            raise ValueError(
                f"YouTube-VOS {self.split} at {str(self.root)!r}: the ground truth of the {self.split} split is not "
                "public (its Annotations hold only the mask where each object first appears), so it cannot be "
                "scored here; score on the train split, or submit predictions to the challenge server"
            )

    def first_label_map(self, seq: str) -> np.ndarray:
        """(H, W) uint8 annotation of the first annotated frame."""
        ann = self.annotation_paths(seq)
        if not ann:
            raise FileNotFoundError(f"sequence {seq!r}: no annotation in {str(self._annotations / seq)!r}")
        return read_label_map(next(iter(ann.values())))

    def object_frames(self, seq: str) -> dict[int, str]:
        """Object id → name of the first frame whose annotation shows it."""
        names = [p.stem for p in self.frame_paths(seq)]
        return dict(sorted((k, names[t]) for t, m in self.given(seq).items() for k in _objects(m)))

    def num_objects(self, seq: str) -> int:
        """The number of distinct objects annotated anywhere in ``seq``."""
        return len(self.object_frames(seq))

    def describe(self) -> dict:
        return {**super().describe(), "split": self.split, "all_frames": self.all_frames}
