"""Benchmark loaders on tiny replicas in the authors' documented layouts."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from helpers.benchmarks import box_mask, make_coco

from insid3lab.eval.datasets import (
    BENCHMARKS,
    BadSampleError,
    DatasetNotFoundError,
    SPair71k,
    build_dataset,
    dataset_names,
    decode_segmentation,
)
from insid3lab.eval.run.episodes import sample_episodes


def test_names_accepted():
    assert dataset_names() == [
        "coco",
        "lvis",
        "pascal_part",
        "paco_part",
        "isic",
        "lung",
        "suim",
        "isaid",
        "permis",
        "spair",
        "folder",
        "coco_json",
    ]
    with pytest.raises(ValueError, match="allowed: coco, lvis"):
        build_dataset("voc", "/nowhere")
    # the entries are what the classes check against: folds, names, which ones read a COCO-format file
    assert {n: e.folds for n, e in BENCHMARKS.items() if e.folds} == {
        "coco": (0, 1, 2, 3),
        "lvis": tuple(range(10)),
        "pascal_part": (0, 1, 2, 3),
        "paco_part": (0, 1, 2, 3),
        "isaid": (0, 1, 2),
    }
    assert all(e.cls.name == n and e.cls.folds == e.folds and e.help for n, e in BENCHMARKS.items())
    assert [n for n, e in BENCHMARKS.items() if e.annotations] == ["coco_json"]


def test_coco_folds_classes_and_masks(eval_data):
    ds = build_dataset("coco", eval_data, fold=0)
    assert ds.class_ids == [4 * v for v in range(20)]
    assert ds.class_names[:3] == ["person", "airplane", "boat"]
    assert [ds.class_names[i] for i in ds.sampleable] == ["person", "airplane"]
    assert ds.default_episodes == 1000
    assert build_dataset("coco", eval_data, fold=1).class_ids[:2] == [1, 5]
    truth = make_coco(eval_data / "coco_again")  # same generator, same files: the ground truth
    for name, (c, box, (h, w)) in truth.items():
        if c % 4 != 0:
            continue
        s = ds.load({"image": name}, ds.class_ids.index(c))
        assert s.image.shape == (h, w, 3) and s.image.dtype == np.uint8
        # only this class's pixels: the other object (class 79) is background
        assert np.array_equal(s.mask, box_mask(h, w, box))
        assert s.ignore is None
    # --data-root may also be the benchmark folder itself
    assert build_dataset("coco", eval_data / "COCO2014", fold=0).root == eval_data / "COCO2014"


def test_lvis_every_tenth_category_polygons_and_rle(eval_data):
    ds = build_dataset("lvis", eval_data, fold=0)
    assert ds.category_ids == [1000, 1010]
    assert build_dataset("lvis", eval_data, fold=3).category_ids == [1003, 1013]
    assert ds.default_episodes == 2300
    import pickle

    with open(eval_data / "LVIS" / "lvis_val.pkl", "rb") as f:
        anno = pickle.load(f)
    for ci, cat in enumerate(ds.category_ids):
        for name, info in anno[cat].items():
            s = ds.load({"image": name}, ci)
            h, w = s.mask.shape
            segm = info["annotations"][0]["segmentation"]
            expected = decode_segmentation(segm, h, w)
            assert np.array_equal(s.mask, expected.astype(np.uint8)) and s.mask.sum() > 100
    # category 1000, first image, is stored as a compressed RLE string; the rest as polygons
    first = next(iter(anno[1000].values()))["annotations"][0]["segmentation"]
    assert isinstance(first, dict) and isinstance(first["counts"], str)


def test_polygon_rasterisation_by_hand():
    m = decode_segmentation([[3, 5, 20, 5, 20, 12, 3, 12]], 30, 30)
    assert np.array_equal(m, box_mask(30, 30, (3, 5, 20, 12)) > 0)


def test_paco_part_folds_dedup_and_box_crop(eval_data):
    ds = build_dataset("paco_part", eval_data, fold=0)
    assert ds.category_ids == [200, 204] and ds.default_episodes == 2500
    assert build_dataset("paco_part", eval_data, fold=1).category_ids == [201, 205]
    assert len(ds.cid2img[200]) == 4  # the duplicated entry of image 5000 is dropped
    ep = sample_episodes(ds, 3, seed=0)[0]
    s = ds.load(ep.target, ep.class_index)
    anno = ds.img2anno[ep.target["image_id"]][0]
    _, _, bw, bh = anno["obj_bbox"]
    assert s.mask.shape == (bh, bw) and s.image.shape == (bh, bw, 3)
    assert np.array_equal(np.argwhere(s.mask).min(0), [4, 4]) and s.mask.sum() == 100  # the 10x10 part


def test_pascal_part_fold_is_a_super_category(eval_data):
    ds = build_dataset("pascal_part", eval_data, fold=0)
    assert ds.class_names == ["cat+HEAD"]  # TAIL has no training images
    assert ds.default_episodes == 6  # all validation entries of the super-category
    for ep in sample_episodes(ds, 4, seed=1):
        assert ep.target["object"] == (1 if ep.target["image"] == "2008_000000" else 0)  # the cat with a head
        s = ds.load(ep.target, 0)
        assert s.mask.sum() == 12 * 10 and np.array_equal(np.argwhere(s.mask).min(0), [3, 3])
    with pytest.raises(ValueError, match="no class has"):
        build_dataset("pascal_part", eval_data, fold=1)  # 'indoor' has no classes in the replica


def test_isic_lung_suim(eval_data):
    isic = build_dataset("isic", eval_data)
    assert isic.class_names == ["1", "2", "3"] and isic.default_episodes == 600
    assert [e.class_index for e in sample_episodes(isic, 5, seed=0)] == [0, 1, 2, 0, 1]
    s = isic.load({"image": "2/ISIC_0000003.jpg"}, 1)
    assert set(np.unique(s.mask)) == {0, 1}

    lung = build_dataset("lung", eval_data)
    assert lung.image_name("CHNCXR_0001_0_mask.png") == "CHNCXR_0001_0.png"
    assert lung.image_name("MCUCXR_0001_0.png") == "MCUCXR_0001_0.png"
    s = lung.load({"mask": "CHNCXR_0002_0_mask.png"}, 0)
    assert s.image_path.endswith("CXR_png/CHNCXR_0002_0.png") and s.mask.sum() > 0

    suim = build_dataset("suim", eval_data)
    assert suim.class_names == ["FV", "HD", "PF", "RI", "RO", "SR", "WR"]
    assert suim.default_episodes == 21  # 7 classes x 3 non-empty masks; the empty FV mask is left out
    assert "FV/d_r_9_.png" not in suim.masks[0]


def test_isaid_targets_from_split_and_ignore(eval_data):
    ds = build_dataset("isaid", eval_data, fold=0)
    assert ds.class_names == ["ship", "storage tank", "baseball diamond", "tennis court", "basketball court"]
    assert ds.default_episodes == 7
    eps = sample_episodes(ds, 9, seed=0)
    assert [e.target["image"] for e in eps[:7]] == [f"P{i:04d}_0_800_0_800" for i in range(7)]
    assert [e.class_index for e in eps[:7]] == [0, 0, 0, 0, 1, 1, 1]
    assert eps[7].target == eps[0].target  # the list wraps around
    s = ds.load(eps[0].target, eps[0].class_index)
    assert s.ignore is not None and s.ignore.sum() > 0 and set(np.unique(s.mask)) == {0, 1, 255}
    with pytest.raises(ValueError, match="folds 0..2"):
        build_dataset("isaid", eval_data, fold=3)


def test_permis_fixed_episodes(eval_data):
    ds = build_dataset("permis", eval_data)
    assert ds.default_episodes == 4
    eps = sample_episodes(ds, 4, seed=0)
    assert [(e.target["video"], e.target["frame"]) for e in eps] == [("0", 1), ("0", 2), ("4", 1), ("4", 2)]
    assert all(e.references == ({"video": e.target["video"], "frame": 0},) for e in eps)
    s = ds.load(eps[1].target, 0)
    assert s.mask.dtype == np.uint8 and s.mask.sum() > 0
    with pytest.raises(ValueError, match="use shots=1"):
        build_dataset("permis", eval_data, shots=2)


def test_spair_pairs_and_threshold(eval_data):
    ds = build_dataset("spair", eval_data)
    assert isinstance(ds, SPair71k) and ds.default_episodes == 4
    ep = sample_episodes(ds, 1, seed=0)[0]
    assert ep.class_name == "cat" and ep.target["image"] == "cat/2008_cat01.jpg"
    pair = ds.load_pair(ep.target, list(ep.references))
    assert pair.source_points.shape == (3, 2) and pair.threshold == 60.0  # max(64 - 4, 46 - 6)


def test_folder_format_with_class_subfolders(eval_data, tmp_path):
    ds = build_dataset("folder", eval_data / "defects")
    assert ds.class_names == ["dent", "scratch"] and ds.default_episodes == 6
    s = ds.load({"image": "dent/part0.png", "mask": "dent/part0.png"}, 0)
    assert set(np.unique(s.mask)) == {0, 1}
    flat = tmp_path / "lesions"
    (flat / "images").mkdir(parents=True)
    (flat / "masks").mkdir()
    for i in range(3):
        shutil.copy(eval_data / "defects" / "images" / "dent" / f"part{i}.png", flat / "images" / f"x{i}.png")
        shutil.copy(eval_data / "defects" / "masks" / "dent" / f"part{i}.png", flat / "masks" / f"x{i}.png")
    (flat / "images" / "unlabelled.png").write_bytes((flat / "images" / "x0.png").read_bytes())
    one = build_dataset("folder", flat, shots=2)
    assert one.class_names == ["lesions"] and one.default_episodes == 3
    with pytest.raises(ValueError, match="needs at least 4"):
        build_dataset("folder", flat, shots=3)


@pytest.mark.parametrize(
    "name, expect",
    [
        ("coco", "splits/val/fold0.pkl"),
        ("lvis", "lvis_val.pkl"),
        ("paco_part", "paco_part_val.pkl"),
        ("pascal_part", "all_obj_part_to_image.json"),
        ("isic", "ISIC2018_Task1_Training_GroundTruth"),
        ("lung", "CXR_png"),
        ("suim", "masks/FV"),
        ("isaid", "semantic_png"),
        ("permis", "masks.npz.npy"),
        ("spair", "Layout/large"),
        ("folder", "masks/<class>"),
    ],
)
def test_missing_dataset_shows_expected_layout(tmp_path, name, expect):
    with pytest.raises(DatasetNotFoundError) as err:
        build_dataset(name, tmp_path / "empty")
    msg = str(err.value)
    assert "Expected layout" in msg and expect in msg and "does not exist" in msg


def test_fold_validation(eval_data):
    with pytest.raises(ValueError, match="has no folds"):
        build_dataset("isic", eval_data, fold=2)
    with pytest.raises(ValueError, match="folds 0..3"):
        build_dataset("coco", eval_data, fold=4)
    with pytest.raises(ValueError, match="shots=0"):
        build_dataset("coco", eval_data, shots=0)


def test_bad_samples_name_the_file(eval_data, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(eval_data / "ISIC", root / "ISIC")
    ds = build_dataset("isic", root)
    broken = root / "ISIC" / "ISIC2018_Task1-2_Training_Input" / "1" / "ISIC_0000000.jpg"
    broken.write_bytes(b"not a jpeg")
    with pytest.raises(BadSampleError, match="ISIC_0000000.jpg: cannot be read as an image"):
        ds.load({"image": "1/ISIC_0000000.jpg"}, 0)
    empty = root / "ISIC" / "ISIC2018_Task1_Training_GroundTruth" / "ISIC_0000001_segmentation.png"
    from PIL import Image

    h, w = np.asarray(Image.open(empty)).shape
    Image.fromarray(np.zeros((h, w), np.uint8)).save(empty)
    with pytest.raises(BadSampleError, match="ISIC_0000001_segmentation.png: mask has no foreground"):
        ds.load({"image": "1/ISIC_0000001.jpg"}, 0)
    Image.fromarray(np.full((h + 1, w), 255, np.uint8)).save(empty)
    with pytest.raises(BadSampleError, match="but its image"):
        ds.load({"image": "1/ISIC_0000001.jpg"}, 0)


def test_paco_objects_with_empty_boxes_are_never_drawn(eval_data, tmp_path):
    import pickle

    root = tmp_path / "data"
    shutil.copytree(eval_data / "PACO-Part", root / "PACO-Part")
    val_p = root / "PACO-Part" / "paco" / "paco_part_val.pkl"
    with open(val_p, "rb") as f:
        val = pickle.load(f)
    for a in val["img2anno"][5001]:
        a["obj_bbox"] = [10.0, 10.0, 0.4, 20.0]  # crops to zero columns
    with open(val_p, "wb") as f:
        pickle.dump(val, f)
    ds = build_dataset("paco_part", root)
    for ep in sample_episodes(ds, 20, seed=0):
        assert 5001 not in [ep.target["image_id"]] + [r["image_id"] for r in ep.references]
