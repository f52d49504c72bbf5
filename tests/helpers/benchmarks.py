"""Tiny on-disk replicas of the evaluation benchmarks, in their real layouts.

Every image shows one or two flat-coloured rectangles on a grey noisy background
(:func:`insid3lab.synthetic.box_scene`); the colour says the class, so the colour-matching
:class:`helpers.runs.FakeModel` gets meaningful, non-trivial IoU and a test can tell a wrong mask
from a right one.
"""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from insid3lab.synthetic import box_scene

COLOURS = [
    (220, 40, 40),
    (40, 200, 60),
    (40, 80, 230),
    (230, 200, 30),
    (200, 40, 200),
    (30, 200, 210),
    (240, 130, 20),
    (120, 60, 20),
    (250, 250, 250),
    (10, 10, 10),
]


def colour(k: int) -> tuple[int, int, int]:
    return COLOURS[k % len(COLOURS)]


def scene(seed: int, h: int, w: int, boxes: list[tuple[int, tuple[int, int, int, int]]]) -> np.ndarray:
    """(h, w, 3) uint8 :func:`~insid3lab.synthetic.box_scene`; boxes = [(colour index, (x0, y0, x1, y1)), ...]."""
    return box_scene((h, w), [(box, colour(k)) for k, box in boxes], seed=seed)[0]


def data_root(root: Path, name: str) -> Path:
    """The ``--data-root`` of benchmark ``name`` among the replicas under ``root``."""
    return root / "defects" if name == "folder" else root


def box_mask(h: int, w: int, box, value: int = 1) -> np.ndarray:
    m = np.zeros((h, w), dtype=np.uint8)
    x0, y0, x1, y1 = box
    m[y0:y1, x0:x1] = value
    return m


def rand_box(rng, h, w, lo=16, hi=36):
    bw, bh = int(rng.integers(lo, hi)), int(rng.integers(lo, hi))
    x0, y0 = int(rng.integers(2, w - bw - 2)), int(rng.integers(2, h - bh - 2))
    return (x0, y0, x0 + bw, y0 + bh)


def save(img: np.ndarray, path: Path, **kw) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path, **kw)


def _size(rng) -> tuple[int, int]:
    return int(rng.integers(64, 97)), int(rng.integers(64, 97))


def make_coco(root: Path) -> dict:
    """COCO2014 with fold-0 classes 0 (person) and 4 (airplane) and fold-1 class 1; 3 images each."""
    base = root / "COCO2014"
    rng = np.random.default_rng(1)
    classwise = {f: {c: [] for c in range(80)} for f in range(4)}
    truth = {}
    n = 0
    for c in (0, 4, 1):
        for _ in range(3):
            name = f"val2014/COCO_val2014_{n:012d}.jpg"
            h, w = _size(rng)
            b, other = rand_box(rng, h, w), rand_box(rng, h, w, 8, 12)
            img = scene(n, h, w, [(9, other), (c, b)])
            save(img, base / name, quality=95)
            labels = np.zeros((h, w), dtype=np.uint8)
            x0, y0, x1, y1 = other
            labels[y0:y1, x0:x1] = 80  # class 79 (toothbrush) elsewhere in the image
            x0, y0, x1, y1 = b
            labels[y0:y1, x0:x1] = c + 1
            save(labels, base / "annotations" / name.replace(".jpg", ".png"))
            classwise[c % 4][c].append(name)
            truth[name] = (c, b, (h, w))
            n += 1
    for f in range(4):
        (base / "splits" / "val").mkdir(parents=True, exist_ok=True)
        with open(base / "splits" / "val" / f"fold{f}.pkl", "wb") as fh:
            pickle.dump(classwise[f], fh)
    return truth


def _poly(box) -> list[float]:
    x0, y0, x1, y1 = box
    return [x0, y0, x1, y0, x1, y1, x0, y1]


def make_lvis(root: Path) -> dict:
    """LVIS with 20 categories (2 per fold) over 4 images; polygons and one RLE annotation."""
    import pycocotools.mask as mask_api

    base = root / "LVIS"
    rng = np.random.default_rng(2)
    images = []
    for i in range(4):
        h, w = _size(rng)
        b = rand_box(rng, h, w)
        name = f"val2017/{i:012d}.jpg"
        save(scene(100 + i, h, w, [(i, b)]), base / "coco" / name, quality=95)
        images.append((name, b, (h, w)))
    anno = {}
    for k in range(20):
        cat = 1000 + k
        anno[cat] = {}
        for j in range(3):
            name, b, (h, w) = images[(k + j) % 4]
            if k == 0 and j == 0:
                rle = mask_api.encode(np.asfortranarray(box_mask(h, w, b)))
                rle["counts"] = rle["counts"].decode("ascii")
                segm = rle
            else:
                segm = [_poly(b)]
            anno[cat][name] = {"annotations": [{"segmentation": segm}]}
    with open(base / "lvis_val.pkl", "wb") as fh:
        pickle.dump(anno, fh)
    return {"images": images}


def make_paco(root: Path) -> dict:
    """PACO-Part with 8 training part classes (2 per fold), 4 validation images, 2 objects in image 0."""
    base = root / "PACO-Part"
    rng = np.random.default_rng(3)
    train = {"cid2img": {cid: [] for cid in range(200, 208)}}
    cid2img = {cid: [] for cid in range(200, 208)}
    img2anno = {}
    for i in range(4):
        h, w = _size(rng)
        img_id = 5000 + i
        name = f"val2017/{img_id:012d}.jpg"
        obj = rand_box(rng, h, w, 30, 40)
        x0, y0, x1, y1 = obj
        part = (x0 + 4, y0 + 4, x0 + 14, y0 + 14)
        save(scene(200 + i, h, w, [(9, obj), (i, part)]), base / "coco" / name, quality=95)
        annos = []
        for cid in range(200, 208):
            cid2img[cid].append({img_id: f"/some/where/{name}"})
            annos.append(
                {
                    "category_id": cid,
                    "obj_ann_id": 70 + i,
                    "obj_bbox": [x0, y0, x1 - x0, y1 - y0],
                    "segmentation": [_poly(part)],
                }
            )
        img2anno[img_id] = annos
    cid2img[200].append({5000: f"/some/where/val2017/{5000:012d}.jpg"})  # a duplicate entry
    val = {"cid2img": cid2img, "img2anno": img2anno}
    (base / "paco").mkdir(parents=True, exist_ok=True)
    for fname, obj in (("paco_part_train.pkl", train), ("paco_part_val.pkl", val)):
        with open(base / "paco" / fname, "wb") as fh:
            pickle.dump(obj, fh)
    return {}


def make_pascal_part(root: Path) -> dict:
    """Pascal-Part with super-category animals: cat+HEAD (4 val images), cat+TAIL (val only: excluded)."""
    import pycocotools.mask as mask_api

    voc = root / "Pascal-Part" / "VOCdevkit" / "VOC2010"
    rng = np.random.default_rng(4)
    ids = []
    truth = {}
    for i in range(4):
        h, w = _size(rng)
        img_id = f"2008_{i:06d}"
        obj = rand_box(rng, h, w, 30, 40)
        x0, y0, x1, y1 = obj
        head = (x0 + 3, y0 + 3, x0 + 15, y0 + 13)
        save(scene(300 + i, h, w, [(9, obj), (2, head)]), voc / "JPEGImages" / f"{img_id}.jpg", quality=95)
        rle = mask_api.encode(np.asfortranarray(box_mask(h, w, head)))
        rle["counts"] = rle["counts"].decode("ascii")
        objects = [
            {
                "name": "cat",
                "bndbox": {"xmin": x0, "ymin": y0, "xmax": x1, "ymax": y1},
                "parts": [{"name": "HEAD", "mask": [rle]}],
            }
        ]
        if i == 0:  # a second cat without a head: never chosen for cat+HEAD
            objects.insert(0, {"name": "cat", "bndbox": {"xmin": 0, "ymin": 0, "xmax": 5, "ymax": 5}, "parts": []})
        (voc / "Annotations_Part_json_merged_part_classes").mkdir(parents=True, exist_ok=True)
        with open(voc / "Annotations_Part_json_merged_part_classes" / f"{img_id}.json", "w") as fh:
            json.dump({"object": objects}, fh)
        ids.append(img_id)
        truth[img_id] = (obj, head)
    index = {
        "animals": {
            "object": {
                "cat": {"part": {"HEAD": {"train": ["2007_000001"], "val": ids}, "TAIL": {"train": [], "val": ids[:2]}}}
            }
        },
        "indoor": {"object": {}},
        "person": {"object": {}},
        "vehicles": {"object": {}},
    }
    with open(voc / "all_obj_part_to_image.json", "w") as fh:
        json.dump(index, fh)
    return truth


def make_isic(root: Path) -> dict:
    base = root / "ISIC"
    rng = np.random.default_rng(5)
    n = 0
    for c in ("1", "2", "3"):
        for _ in range(3):
            h, w = _size(rng)
            b = rand_box(rng, h, w)
            sid = f"ISIC_{n:07d}"
            save(
                scene(400 + n, h, w, [(3, b)]), base / "ISIC2018_Task1-2_Training_Input" / c / f"{sid}.jpg", quality=95
            )
            save(box_mask(h, w, b, 255), base / "ISIC2018_Task1_Training_GroundTruth" / f"{sid}_segmentation.png")
            n += 1
    return {}


def make_lung(root: Path) -> dict:
    base = root / "LungSegmentation"
    rng = np.random.default_rng(6)
    for i, stem in enumerate(["CHNCXR_0001_0", "CHNCXR_0002_0", "MCUCXR_0001_0"]):
        h, w = _size(rng)
        b = rand_box(rng, h, w)
        save(scene(500 + i, h, w, [(8, b)]), base / "CXR_png" / f"{stem}.png")
        mask_name = f"{stem}.png" if "MCUCXR" in stem else f"{stem}_mask.png"
        save(box_mask(h, w, b, 255), base / "masks" / mask_name)
    return {}


def make_suim(root: Path) -> dict:
    base = root / "SUIM"
    rng = np.random.default_rng(7)
    classes = ("FV", "HD", "PF", "RI", "RO", "SR", "WR")
    for i in range(3):
        h, w = _size(rng)
        boxes = [rand_box(rng, h, w, 10, 20) for _ in classes]
        save(scene(600 + i, h, w, [(k, b) for k, b in enumerate(boxes)]), base / "images" / f"d_r_{i}_.jpg", quality=95)
        for k, c in enumerate(classes):
            save(box_mask(h, w, boxes[k], 255), base / "masks" / c / f"d_r_{i}_.png")
    h, w = _size(rng)
    save(scene(699, h, w, []), base / "images" / "d_r_9_.jpg", quality=95)
    save(np.zeros((h, w), np.uint8), base / "masks" / "FV" / "d_r_9_.png")  # empty: not used
    return {}


def make_isaid(root: Path) -> dict:
    """iSAID fold 0 (classes 0-4): 4 images of class 0 (ship) and 3 of class 1, 255 boundaries."""
    base = root / "iSAID"
    rng = np.random.default_rng(8)
    lines = []
    for i, c in enumerate([0, 0, 0, 0, 1, 1, 1]):
        name = f"P{i:04d}_0_800_0_800"
        h, w = _size(rng)
        b = rand_box(rng, h, w)
        save(scene(700 + i, h, w, [(c, b)]), base / "val" / "images" / f"{name}.png")
        labels = box_mask(h, w, b, c + 1)
        x0, y0, x1, y1 = b
        labels[y0 - 1, x0 - 1 : x1 + 1] = 255
        labels[y1, x0 - 1 : x1 + 1] = 255
        save(labels, base / "val" / "semantic_png" / f"{name}_instance_color_RGB.png")
        lines.append(f"{name}__{c + 1}")
    (base / "splits" / "val").mkdir(parents=True, exist_ok=True)
    (base / "splits" / "val" / "fold0.txt").write_text("\n".join(lines) + "\n")
    return {}


def make_permis(root: Path) -> dict:
    base = root / "PerMIRS"
    rng = np.random.default_rng(9)
    for v in ("0", "4"):
        h, w = _size(rng)
        masks = []
        for f in range(3):
            b = rand_box(rng, h, w)
            save(scene(800 + 10 * int(v) + f, h, w, [(5, b)]), base / v / f"{f}.jpg", quality=95)
            masks.append({17: box_mask(h, w, b).astype(bool)})
        np.save(base / v / "masks.npz", np.array(masks, dtype=object), allow_pickle=True)
    return {}


def make_spair(root: Path) -> dict:
    base = root / "SPair-71k"
    rng = np.random.default_rng(10)
    pairs = []
    sizes = {}
    for cat in ("cat", "dog"):
        for i in range(3):
            name = f"2008_{cat}{i:02d}"
            h, w = _size(rng)
            save(scene(900 + i, h, w, [(1, (10, 10, 40, 40))]), base / "JPEGImages" / cat / f"{name}.jpg", quality=95)
            sizes[name] = (h, w)
    n = 1
    for cat in ("cat", "dog"):
        for a, b in ((0, 1), (1, 2)):
            src, trg = f"2008_{cat}{a:02d}", f"2008_{cat}{b:02d}"
            pair = f"{n:06d}-{src}-{trg}:{cat}"
            src_kps = [[12.0, 15.0], [30.0, 20.0], [25.0, 35.0]]
            (sh, sw), (th, tw) = sizes[src], sizes[trg]
            trg_kps = [[x * tw / sw, y * th / sh] for x, y in src_kps]
            trg_kps[2][0] += 8.0  # one keypoint off by 8 px
            ann = {
                "src_imname": f"{src}.jpg",
                "trg_imname": f"{trg}.jpg",
                "category": cat,
                "src_kps": src_kps,
                "trg_kps": trg_kps,
                "src_bndbox": [5, 5, 50, 45],
                "trg_bndbox": [4, 6, 64, 46],
            }
            (base / "PairAnnotation" / "test").mkdir(parents=True, exist_ok=True)
            with open(base / "PairAnnotation" / "test" / f"{pair}.json", "w") as fh:
                json.dump(ann, fh)
            pairs.append(pair)
            n += 1
    (base / "Layout" / "large").mkdir(parents=True, exist_ok=True)
    (base / "Layout" / "large" / "test.txt").write_text("\n".join(pairs) + "\n")
    (base / "ImageAnnotation").mkdir(parents=True, exist_ok=True)
    return {"pairs": pairs}


def make_folder(root: Path, *, classes=("scratch", "dent"), per_class: int = 3) -> Path:
    rng = np.random.default_rng(11)
    folder = root / "defects"
    for k, c in enumerate(classes):
        for i in range(per_class):
            h, w = _size(rng)
            b = rand_box(rng, h, w)
            save(scene(1000 + 10 * k + i, h, w, [(k, b)]), folder / "images" / c / f"part{i}.png")
            save(box_mask(h, w, b, 255), folder / "masks" / c / f"part{i}.png")
    return folder


MAKERS = {
    "coco": make_coco,
    "lvis": make_lvis,
    "paco_part": make_paco,
    "pascal_part": make_pascal_part,
    "isic": make_isic,
    "lung": make_lung,
    "suim": make_suim,
    "isaid": make_isaid,
    "permis": make_permis,
    "spair": make_spair,
}


def make_all(root: Path) -> Path:
    """All benchmark replicas under ``root`` (the ``--data-root``) plus ``root/defects`` (folder format)."""
    for make in MAKERS.values():
        make(root)
    make_folder(root)
    return root


def isaid_three_folds(eval_data: Path, root: Path) -> Path:
    """The iSAID replica with folds 1 and 2 added: fold 0's images relabelled with classes 5 k + c."""
    shutil.copytree(eval_data / "iSAID", root / "iSAID")
    base = root / "iSAID"
    lines = (base / "splits" / "val" / "fold0.txt").read_text().split()
    for k in (1, 2):
        new = []
        for line in lines:
            name, c = line.split("__")
            shutil.copy(base / "val" / "images" / f"{name}.png", base / "val" / "images" / f"{name}_{k}.png")
            labels = np.array(Image.open(base / "val" / "semantic_png" / f"{name}_instance_color_RGB.png"))
            labels[(labels > 0) & (labels < 255)] += 5 * k
            Image.fromarray(labels).save(base / "val" / "semantic_png" / f"{name}_{k}_instance_color_RGB.png")
            new.append(f"{name}_{k}__{int(c) + 5 * k}")
        (base / "splits" / "val" / f"fold{k}.txt").write_text("\n".join(new) + "\n")
    return root
