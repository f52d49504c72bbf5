"""COCO-format datasets: masks from polygons / RLE / crowd, the reference split, episodes, the checker, the runner."""

from __future__ import annotations

import argparse
import copy
import json
import warnings

import numpy as np
import pycocotools.mask as mask_api
import pytest
from helpers.cocojson import (
    CROWD,
    N_IMAGES,
    SECOND_SQUARE,
    H,
    W,
    disc,
    make_export,
    rect,
    square_box,
    square_polygon,
    uncompressed_rle,
)
from helpers.runs import FakeModel
from PIL import Image

from insid3lab.cli.data import add_parser as add_data_parser
from insid3lab.eval.datasets.cocojson import CocoJsonDataset, in_reference_pool
from insid3lab.eval.datasets.cocojson_check import PROBLEM_KINDS, check_coco_json, format_report
from insid3lab.eval.run.episodes import Episode, sample_episodes
from insid3lab.eval.run.runner import run_evaluation


@pytest.fixture()
def export(tmp_path):
    return make_export(tmp_path)


def item(i: int) -> dict:
    return {"image": f"img_{i:02d}.png", "image_id": 100 + i}


# ───────────────────────── masks ─────────────────────────


def test_masks_equal_the_hand_drawn_shapes(export):
    images_dir, path, _ = export
    ds = CocoJsonDataset(images_dir, annotations=path, reference_split=None)
    assert ds.class_names == ["square", "blob"] and ds.category_ids == [1, 7]
    sq, blob = 0, 1

    s = ds.load(item(0), sq)  # one polygon: the square
    assert s.image.shape == (H, W, 3) and s.mask.dtype == np.uint8
    np.testing.assert_array_equal(s.mask, rect(*square_box(0)).astype(np.uint8))
    assert s.image_path.endswith("img_00.png")

    s = ds.load(item(3), sq)  # two instances: their union
    np.testing.assert_array_equal(s.mask, (rect(*square_box(3)) | rect(*SECOND_SQUARE)).astype(np.uint8))

    s = ds.load(item(5), sq)  # a crowd region is ignored (255), the instance is foreground
    expected = rect(*CROWD).astype(np.uint8) * 255
    expected[rect(*square_box(5))] = 1
    np.testing.assert_array_equal(s.mask, expected)
    assert s.ignore.sum() == 16 * 10

    for i in (2, 3):  # uncompressed and compressed RLE
        np.testing.assert_array_equal(ds.load(item(i), blob).mask, disc().astype(np.uint8))
    # the other category is background
    assert not (ds.load(item(4), blob).mask[rect(*square_box(4))]).any()


def test_instances_with_boxes_and_crowd_regions(export):
    images_dir, path, _ = export
    ds = CocoJsonDataset(images_dir, annotations=path, reference_split=None)
    inst = ds.instances(103)
    assert [(i.category_index, i.bbox) for i in inst] == [
        (0, (7.0, 4.0, 12.0, 12.0)),
        (0, (40.0, 28.0, 12.0, 12.0)),
        (1, (38.0, 14.0, 13.0, 13.0)),
    ]
    np.testing.assert_array_equal(inst[1].mask, rect(*SECOND_SQUARE))
    np.testing.assert_array_equal(inst[2].mask, disc())
    ci, mask, bbox = ds.instances(105, crowd=True)[0]
    assert ci == 0 and bbox == (40.0, 30.0, 16.0, 10.0) and mask.sum() == 160
    assert ds.instances(100 + N_IMAGES) == []  # empty.png
    with pytest.raises(KeyError, match="999"):
        ds.instances(999)


# ───────────────────────── episodes and the split ─────────────────────────


def test_the_split_follows_the_file_name_hash(export):
    images_dir, path, _ = export
    ds = CocoJsonDataset(images_dir, annotations=path, shots=2)  # reference_split=0.5
    names = {100 + i: f"img_{i:02d}.png" for i in range(N_IMAGES)}
    ref_pool = {n for n in names.values() if in_reference_pool(n, 0.5, 0)}
    assert 0 < len(ref_pool) < N_IMAGES
    # the pool is a fraction of sha1("0/NAME") < 0.5, computed here by hand for one name
    import hashlib

    u = int.from_bytes(hashlib.sha1(b"0/img_00.png").digest()[:8], "big") / 2.0**64
    assert ds.in_reference_pool("img_00.png") == (u < 0.5)

    eps = sample_episodes(ds, 40, seed=0)
    for e in eps:
        assert e.target["image"] not in ref_pool
        assert all(r["image"] in ref_pool for r in e.references)
        assert len({r["image"] for r in e.references}) == 2
    # each class draws from exactly its images in each pool
    square_imgs = {names[100 + i] for i in range(10)}
    assert {e.target["image"] for e in eps if e.class_index == 0} <= square_imgs - ref_pool
    assert ds.default_episodes == len(square_imgs - ref_pool) + len({names[100 + i] for i in range(2, 12)} - ref_pool)
    # another seed salts the hash: another split
    other = CocoJsonDataset(images_dir, annotations=path, seed=5)
    assert {n for n in names.values() if other.in_reference_pool(n)} != ref_pool


def test_episodes_are_deterministic_replayable_and_independent_of_file_order(export, tmp_path):
    images_dir, path, _ = export
    _, reversed_path, _ = make_export(tmp_path, reverse=True)
    ds = CocoJsonDataset(images_dir, annotations=path)
    ds_rev = CocoJsonDataset(images_dir, annotations=reversed_path)
    a, b = sample_episodes(ds, 12, seed=3), sample_episodes(ds, 12, seed=3)
    assert a == b
    assert [e.to_json() for e in sample_episodes(ds_rev, 12, seed=3)] == [e.to_json() for e in a]
    assert sample_episodes(ds, 12, seed=4) != a
    assert [e.class_index for e in a] == [i % 2 for i in range(12)]
    # JSON round trip: the same episode, the same pixels
    back = [Episode.from_json(json.loads(json.dumps(e.to_json()))) for e in a]
    assert back == a
    s1, s2 = ds.load(a[0].target, a[0].class_index), ds.load(back[0].target, back[0].class_index)
    assert np.array_equal(s1.mask, s2.mask) and np.array_equal(s1.image, s2.image)


def test_without_a_split_references_come_from_all_images_but_the_target(export):
    images_dir, path, _ = export
    ds = CocoJsonDataset(images_dir, annotations=path, shots=3, reference_split=None)
    eps = sample_episodes(ds, 60, seed=1)
    for e in eps:
        keys = [r["image"] for r in e.references]
        assert e.target["image"] not in keys and len(set(keys)) == 3
    used = {e.target["image"] for e in eps} | {r["image"] for e in eps for r in e.references}
    assert "empty.png" not in used and len(used) == N_IMAGES
    assert ds.default_episodes == 10 + 10


def test_category_filter_by_name_or_id(export):
    images_dir, path, _ = export
    assert CocoJsonDataset(images_dir, annotations=path, categories=["blob"]).class_names == ["blob"]
    assert CocoJsonDataset(images_dir, annotations=path, categories=[1]).class_names == ["square"]
    assert CocoJsonDataset(images_dir, annotations=path, categories=["7", "square"]).class_names == ["square", "blob"]
    with pytest.raises(ValueError, match=r"'cat' is not a category .* allowed: 'square' \(id 1\), 'blob' \(id 7\)"):
        CocoJsonDataset(images_dir, annotations=path, categories=["cat"])


def test_classes_with_too_few_images_are_reported(export, tmp_path):
    images_dir, _, doc = export
    doc = copy.deepcopy(doc)
    doc["categories"].append({"id": 9, "name": "rare"})
    doc["annotations"].append(
        {"id": 999, "image_id": 100, "category_id": 9, "iscrowd": 0, "segmentation": [square_polygon(30, 30, 40, 40)]}
    )
    path = tmp_path / "rare.json"
    path.write_text(json.dumps(doc))
    with pytest.warns(UserWarning, match=r"1 class\(es\) have too few images .* 'rare' \(1 image\(s\)\)"):
        ds = CocoJsonDataset(images_dir, annotations=path, reference_split=None)
    assert ds.class_names == ["square", "blob"]
    assert ds.describe()["skipped_classes"] == [
        {"category": "rare", "id": 9, "images": 1, "reference_images": 1, "target_images": 1}
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match="no class has enough images for a 20-shot episode"):
            CocoJsonDataset(images_dir, annotations=path, shots=20, reference_split=None)


def test_bad_arguments(export, tmp_path):
    images_dir, path, _ = export
    with pytest.raises(ValueError, match=r"reference_split=1\.5: must be a fraction in \(0, 1\)"):
        CocoJsonDataset(images_dir, annotations=path, reference_split=1.5)
    with pytest.raises(FileNotFoundError, match="annotations file .*nope.json"):
        CocoJsonDataset(images_dir, annotations=tmp_path / "nope.json")
    with pytest.raises(FileNotFoundError, match="images folder"):
        CocoJsonDataset(tmp_path / "no_images", annotations=path)
    with pytest.raises(ValueError, match="has no folds"):
        CocoJsonDataset(images_dir, annotations=path, fold=2)


# ───────────────────────── the runner ─────────────────────────


def test_the_dataset_plugs_into_the_evaluation_runner(export, tmp_path):
    """The colour-matching fake model is exact on the flat shapes: IoU 100 (the crowd region, also red, is ignored)."""
    images_dir, path, _ = export
    ds = CocoJsonDataset(images_dir, annotations=path)
    s = run_evaluation(FakeModel(), ds, tmp_path / "run", episodes=4, seed=0, progress=False)
    assert s["episodes"] == {"total": 4, "evaluated": 4, "bad": 0, "resumed": 0}
    assert s["miou"] == 100.0 and s["per_class_episodes"] == {"square": 2, "blob": 2}
    assert s["dataset"]["name"] == "coco_json" and s["dataset"]["skipped_images"] == 0
    recs = [json.loads(x) for x in (tmp_path / "run" / "results.jsonl").read_text().splitlines()]
    eps = sample_episodes(ds, 4, seed=0)
    for r, e in zip(recs, eps):
        fg = ds.load(e.target, e.class_index).foreground.sum()
        assert r["intersection"][1] == r["union"][1] == fg


# ───────────────────────── the checker ─────────────────────────


def _mutations():
    """(name, change of the document, expected kind, expected location fragment)."""

    def drop(key):
        return lambda d, root: d.pop(key)

    def image(i, **kw):
        return lambda d, root: d["images"][i].update(kw)

    def ann(i, **kw):
        return lambda d, root: d["annotations"][i].update(kw)

    def missing_file(d, root):
        (root / "images" / "img_04.png").unlink()

    def unreadable(d, root):
        (root / "images" / "img_04.png").write_bytes(b"not an image")

    def dup_image(d, root):
        d["images"].append({**d["images"][1], "id": d["images"][0]["id"]})

    def dup_ann(d, root):
        d["annotations"][2]["id"] = d["annotations"][0]["id"]

    def empty_category(d, root):
        d["categories"].append({"id": 9, "name": "unused"})

    return [
        ("no images list", drop("images"), "not_coco", "annotations"),
        ("images not a list", lambda d, r: d.update(images={}), "not_coco", "annotations"),
        ("image without file_name", lambda d, r: d["images"][2].pop("file_name"), "bad_entry", "image #2"),
        ("missing on disk", missing_file, "missing_image", "image 'img_04.png'"),
        ("unreadable", unreadable, "unreadable_image", "image 'img_04.png'"),
        ("size differs", image(N_IMAGES, width=65), "image_size", "image 'empty.png'"),
        ("polygon outside", ann(0, segmentation=[square_polygon(50, 4, 70, 16)]), "polygon_outside", "annotation 1 "),
        ("polygon of 2 points", ann(0, segmentation=[[1, 1, 5, 5]]), "polygon_too_few_points", "annotation 1 "),
        (
            "RLE of another size",
            ann(3, segmentation={"size": [H, W + 1], "counts": "abc"}),
            "rle_size",
            "annotation 4 ",
        ),
        (
            "RLE counts do not cover",
            ann(3, segmentation={"size": [H, W], "counts": [5, 5]}),
            "bad_segmentation",
            "annotation 4 ",
        ),
        ("unknown image id", ann(0, image_id=12345), "unknown_image", "annotation 1"),
        ("unknown category id", ann(0, category_id=42), "unknown_category", "annotation 1 (image 'img_00.png')"),
        ("empty category", empty_category, "empty_category", "category 9 ('unused')"),
        ("duplicate image id", dup_image, "duplicate_image_id", "image 'img_00.png'"),
        ("duplicate annotation id", dup_ann, "duplicate_annotation_id", "annotation 1"),
    ]


@pytest.mark.parametrize("name, change, kind, location", _mutations(), ids=[m[0] for m in _mutations()])
def test_the_checker_finds_each_kind_of_problem(tmp_path, name, change, kind, location):
    images_dir, _, doc = make_export(tmp_path)
    doc = copy.deepcopy(doc)
    change(doc, tmp_path)
    problems = check_coco_json(doc, images_dir)
    assert kind in PROBLEM_KINDS
    assert [p.kind for p in problems] == [kind] * len(problems) and problems, problems
    assert problems[0].location.startswith(location) and "\n" not in problems[0].line


def test_the_checker_lists_every_problem_of_a_bad_file(tmp_path, capsys):
    images_dir, path, doc = make_export(tmp_path)
    assert check_coco_json(path, images_dir) == [] and check_coco_json(doc, images_dir) == []
    bad = copy.deepcopy(doc)
    (images_dir / "img_04.png").unlink()
    bad["images"][N_IMAGES]["height"] = 50
    bad["images"].append({**bad["images"][1], "id": bad["images"][0]["id"]})
    bad["annotations"][3]["segmentation"] = [square_polygon(-10, 4, 20, 16)]
    bad["annotations"][5]["category_id"] = 42
    bad["categories"].append({"id": 9, "name": "unused"})
    bad_path = tmp_path / "bad.json"
    bad_path.write_text(json.dumps(bad))
    problems = check_coco_json(bad_path, images_dir)
    assert sorted(p.kind for p in problems) == sorted(
        [
            "duplicate_image_id",
            "duplicate_image_id",
            "missing_image",
            "image_size",
            "polygon_outside",
            "unknown_category",
            "empty_category",
        ]
    )
    report = format_report(problems, source=str(bad_path))
    assert report.splitlines()[0] == f"{bad_path}: 7 problem(s)" and len(report.splitlines()) == 9
    assert "missing_image" in report and "by kind: " in report.splitlines()[-1]

    # the command line prints the report and exits 1, or 0 for a clean file
    parser = argparse.ArgumentParser(prog="insid3lab")
    add_data_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["data", "check", "--annotations", str(bad_path), "--images", str(images_dir)])
    assert args.func(args) == 1
    assert capsys.readouterr().out.strip() == report
    clean_images, clean_path, _ = make_export(tmp_path / "clean")
    args = parser.parse_args(["data", "check", "--annotations", str(clean_path), "--images", str(clean_images)])
    assert args.func(args) == 0 and "no problems found" in capsys.readouterr().out


def test_files_that_are_not_coco_json(tmp_path):
    (tmp_path / "x.json").write_text("{not json")
    (tmp_path / "list.json").write_text("[1, 2]")
    assert [p.kind for p in check_coco_json(tmp_path / "x.json", tmp_path)] == ["not_coco"]
    assert "is not valid JSON" in check_coco_json(tmp_path / "x.json", tmp_path)[0].message
    assert "top level is a JSON list" in check_coco_json(tmp_path / "list.json", tmp_path)[0].message
    assert "file does not exist" in check_coco_json(tmp_path / "none.json", tmp_path)[0].message
    with pytest.raises(ValueError, match="is not valid JSON"):
        CocoJsonDataset(tmp_path, annotations=tmp_path / "x.json")


def test_polygons_a_pixel_outside_are_tolerated(tmp_path):
    images_dir, _, doc = make_export(tmp_path)
    doc["annotations"][0]["segmentation"] = [[-0.5, 0, W + 0.9, 0, W + 0.9, 10, -0.5, 10]]
    assert check_coco_json(doc, images_dir) == []


def test_the_dataset_stops_at_the_first_problem_or_skips_bad_images(tmp_path):
    images_dir, _, doc = make_export(tmp_path)
    (images_dir / "img_04.png").unlink()
    doc["annotations"][0]["segmentation"] = [[1, 1, 5, 5]]  # img_00
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))
    first = check_coco_json(path, images_dir)[0]
    assert first.kind == "missing_image"
    with pytest.raises(ValueError) as err:
        CocoJsonDataset(images_dir, annotations=path)
    msg = str(err.value)
    assert "\n" not in msg and f"{path}: {first.line}" in msg and "2 problem(s)" in msg and "skip_bad" in msg

    ds = CocoJsonDataset(images_dir, annotations=path, skip_bad=True, reference_split=None)
    d = ds.describe()
    assert d["skipped_images"] == 2 and d["images"] == N_IMAGES + 1 - 2 and len(d["skip_reasons"]) == 2
    used = {e.target["image"] for e in sample_episodes(ds, 50, seed=0)}
    assert "img_04.png" not in used and "img_00.png" not in used


# ───────────────────────── RLE counts, category names, paths, the images folder ─────────────────────────


def _compressed(counts: list[int]) -> dict:
    """A compressed RLE of these run lengths, whatever they sum to (pycocotools encodes without checking)."""
    rle = mask_api.frPyObjects({"size": [H, W], "counts": counts}, H, W)
    return {"size": [H, W], "counts": rle["counts"].decode("ascii")}


def _bad_rles():
    runs = uncompressed_rle(disc())["counts"]
    return [
        ("compressed, too short", _compressed(runs[:-1]), f"sum to {H * W - runs[-1]}"),
        ("compressed, too long", _compressed([*runs, 40]), f"sum to {H * W + 40}"),
        ("compressed, not RLE", {"size": [H, W], "counts": "abc"}, "not a compressed RLE"),
        ("compressed, characters out of range", {"size": [H, W], "counts": "0 ~\x7f"}, "not a compressed RLE"),
        ("uncompressed, too short", {"size": [H, W], "counts": runs[:-1]}, f"sum to {H * W - runs[-1]}"),
    ]


@pytest.mark.parametrize("name, rle, says", _bad_rles(), ids=[b[0] for b in _bad_rles()])
def test_rle_counts_are_checked_against_the_size(tmp_path, name, rle, says):
    images_dir, _, doc = make_export(tmp_path)
    doc["annotations"][3]["segmentation"] = rle  # annotation 4, image img_02.png
    problems = check_coco_json(doc, images_dir)
    assert [p.kind for p in problems] == ["bad_segmentation"], problems
    assert problems[0].location == "annotation 4 (image 'img_02.png')" and says in problems[0].message
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=r"annotation 4 \(image 'img_02.png'\)"):
        CocoJsonDataset(images_dir, annotations=path)
    ds = CocoJsonDataset(images_dir, annotations=path, skip_bad=True, reference_split=None)
    assert "img_02.png" not in {ds._images[i]["file_name"] for i in ds.image_ids}


def test_a_short_rle_is_refused_at_read_time_naming_where(tmp_path):
    from insid3lab.eval.datasets import BadSampleError, decode_segmentation

    runs = uncompressed_rle(disc())["counts"]
    for rle in (_compressed(runs[:-1]), _compressed([*runs, 3]), {"size": [H, W], "counts": "abc"}):
        with pytest.raises(BadSampleError, match=r"^lvis_val.pkl\[3\]\[a.jpg\]: (compressed )?RLE counts"):
            decode_segmentation(rle, H, W, where="lvis_val.pkl[3][a.jpg]")
    assert np.array_equal(decode_segmentation(_compressed(runs), H, W), disc())


def test_categories_of_the_same_name(tmp_path):
    images_dir, _, doc = make_export(tmp_path)
    doc["categories"][1]["name"] = "square"  # id 7, the blobs
    path = tmp_path / "twins.json"
    path.write_text(json.dumps(doc))
    problems = check_coco_json(path, images_dir)
    assert [(p.kind, p.location) for p in problems] == [("duplicate_category_name", "category 7 ('square')")]
    assert "also the name of category 1" in problems[0].message
    with pytest.raises(ValueError, match=r"categories: 'square' names categories 1 and 7 of .*; give the id"):
        CocoJsonDataset(images_dir, annotations=path, categories=["square"])
    ds = CocoJsonDataset(images_dir, annotations=path, reference_split=None)
    assert ds.class_names == ["square (id 1)", "square (id 7)"]
    assert CocoJsonDataset(images_dir, annotations=path, categories=[7], reference_split=None).class_names == [
        "square (id 7)"
    ]
    s = run_evaluation(FakeModel(), ds, tmp_path / "run", episodes=6, progress=False, bootstrap=0)
    assert set(s["per_class_iou"]) == {"square (id 1)", "square (id 7)"}
    assert sum(s["per_class_episodes"].values()) == 6


@pytest.mark.parametrize("file_name", ["../outside.png", "images/../../outside.png", "ABSOLUTE"])
def test_file_names_that_leave_the_images_folder_are_refused(tmp_path, file_name):
    images_dir, _, doc = make_export(tmp_path)
    outside = tmp_path / "outside.png"
    Image.fromarray(np.zeros((H, W, 3), dtype=np.uint8)).save(outside)
    name = str(outside) if file_name == "ABSOLUTE" else file_name
    doc["images"][4]["file_name"] = name
    problems = check_coco_json(doc, images_dir)
    assert [(p.kind, p.location) for p in problems] == [("path_outside", f"image {name!r}")], problems
    path = tmp_path / "escape.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="path_outside|leaves the image folder"):
        CocoJsonDataset(images_dir, annotations=path)
    ds = CocoJsonDataset(images_dir, annotations=path, skip_bad=True, reference_split=None)
    assert name not in {ds._images[i]["file_name"] for i in ds.image_ids}
    from insid3lab.eval.datasets.cocojson_check import resolve_image

    with pytest.raises(ValueError, match="leaves the image folder"):
        resolve_image(images_dir, name)


def test_a_missing_images_folder_is_one_line(tmp_path, capsys):
    _, path, _ = make_export(tmp_path)
    problems = check_coco_json(path, tmp_path / "missing")
    assert [(p.kind, p.location) for p in problems] == [("missing_folder", f"images {str(tmp_path / 'missing')!r}")]
    parser = argparse.ArgumentParser(prog="insid3lab")
    add_data_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["data", "check", "--annotations", str(path), "--images", str(tmp_path / "missing")])
    assert args.func(args) == 1
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and "missing_folder" in lines[1] and "does not exist" in lines[1]
