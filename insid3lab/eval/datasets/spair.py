"""SPair-71k keypoint correspondence pairs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from insid3lab.eval.datasets.base import BadSampleError, KeypointPair, read_image, require_paths
from insid3lab.eval.datasets.registry import register_benchmark

SPAIR_CATEGORIES = (
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)


@register_benchmark("spair", help="SPair-71k keypoint correspondence, scored as PCK")
class SPair71k:
    """SPair-71k keypoint correspondence pairs of one split (test by default).

    Episode ``i`` is pair ``i mod P`` of ``Layout/large/<split>.txt``. Metric: PCK with
    threshold ``alpha * max(w, h)`` of the target object's bounding box, per image.
    """

    title = "SPair-71k"
    task = "keypoints"
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
        require_paths(
            self.title, self.data_root, self.layout, self.root, layout_file, self.root / "PairAnnotation" / split
        )
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
            "name": self.name,
            "title": self.title,
            "fold": None,
            "shots": 1,
            "split": self.split,
            "root": str(self.root),
            "num_classes": len(self.class_names),
            "default_episodes": self.default_episodes,
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
        src, trg = read_image(src_path), read_image(trg_path)
        ann_path = self.root / "PairAnnotation" / self.split / f"{target['pair']}.json"
        try:
            sk = np.asarray(ann["src_kps"], dtype=np.float32).reshape(-1, 2)
            tk = np.asarray(ann["trg_kps"], dtype=np.float32).reshape(-1, 2)
            x0, y0, x1, y1 = (float(v) for v in ann["trg_bndbox"])
        except (KeyError, ValueError, TypeError) as e:
            raise BadSampleError(ann_path, f"needs 'src_kps', 'trg_kps' ([[x, y], ...]) and 'trg_bndbox' ({e})") from e
        if len(sk) != len(tk) or len(sk) == 0:
            raise BadSampleError(
                ann_path, f"has {len(sk)} source and {len(tk)} target keypoints; need the same number > 0"
            )
        return KeypointPair(
            src,
            trg,
            sk,
            tk,
            max(x1 - x0, y1 - y0),
            str(ann.get("category", target["image"].split("/")[0])),
            str(src_path),
            str(trg_path),
        )
