"""PerMIS personalised segmentation: frame 0 of each video is the reference for frames 1 and 2."""

from __future__ import annotations

import numpy as np

from insid3lab.eval.datasets.base import (
    BadSampleError,
    Sample,
    SegmentationBenchmark,
    check_pair,
    missing_error,
    read_image,
)
from insid3lab.eval.datasets.readers import SplitFileError, load_npy
from insid3lab.eval.datasets.registry import register_benchmark


@register_benchmark("permis", help="PerMIS personalised segmentation, one shot")
class PerMIS(SegmentationBenchmark):
    """PerMIS personalised segmentation: per video, frame 0 is the reference for frames 1 and 2.

    Episode ``i`` is video ``i // 2`` (folders sorted by name), target frame ``1 + i mod 2``.
    One shot only. Masks come from ``masks.npz.npy`` (or ``masks.npz``): 3 dicts, one per
    frame, whose first value is the object's mask.
    """

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
            raise missing_error(self.title, self.data_root, self.root / "<video>", self.layout)
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
                data = load_npy(path)
            except FileNotFoundError as e:
                raise BadSampleError(d / "masks.npz.npy", "mask file does not exist") from e
            except SplitFileError as e:
                raise BadSampleError(path, str(e).removeprefix(f"{path}: ")) from e
            except OSError as e:
                raise BadSampleError(path, f"cannot be read ({e})") from e
            if isinstance(data, dict):
                frames = [data[k] for k in sorted(data)]
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
        image = read_image(image_path)
        mask = (np.asarray(self._frame_masks(item["video"])[item["frame"]]) > 0).astype(np.uint8)
        where = f"{self.root / item['video'] / 'masks.npz.npy'}[frame {item['frame']}]"
        check_pair(image, mask, str(image_path), where, "the object")
        return Sample(image, mask, str(image_path), where)
