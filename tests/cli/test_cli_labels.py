"""``insid3lab segment --label/--labels``: several concepts per call, a label map, instances and an overlay per target."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers.cli import tiny_model_args
from PIL import Image

from insid3lab import INSID3
from insid3lab.cli import main
from insid3lab.cli.segment import parse_labels
from insid3lab.synthetic import box_scene

RED, GREEN = (220, 30, 30), (30, 200, 40)


def _scene(boxes, seed: int):
    """A 128 x 128 :func:`~insid3lab.synthetic.box_scene` from ``(y0, x0, y1, x1, colour)`` boxes: (image, label map)."""
    img, labels = box_scene((128, 128), [((x0, y0, x1, y1), c) for y0, x0, y1, x1, c in boxes], seed=seed)
    return Image.fromarray(img), labels


@pytest.fixture(scope="module")
def env(workdir):
    """``workdir`` with a reference of a red and a green box (label map and one mask per box) and two targets."""
    d = workdir
    ref, lm = _scene([(16, 16, 56, 56, RED), (70, 60, 120, 120, GREEN)], seed=0)
    ref.save(d / "ref.png")
    Image.fromarray(lm).save(d / "ref_labels.png")
    Image.fromarray((lm == 1).astype(np.uint8) * 255).save(d / "ref_red.png")
    Image.fromarray((lm == 2).astype(np.uint8) * 255).save(d / "ref_green.png")
    for i, boxes in enumerate(([(60, 10, 110, 60, RED), (8, 70, 50, 118, GREEN)], [(20, 20, 100, 100, GREEN)])):
        _scene(boxes, seed=i + 1)[0].save(d / f"t{i}.png")
    return d


def _args(env, out, *extra):
    return ["segment", *tiny_model_args(env / "model"), "--merge-threshold", "-1", "--quiet", "--out", str(out),
            *map(str, extra)]  # fmt: skip


def _model(env, tiny_backbone):
    return INSID3(tiny_backbone, image_size=64, svd_components=8, merge_threshold=-1.0, basis_cache=False,
                  progress=False)  # fmt: skip


def test_two_labelled_shots_write_label_map_instances_and_overlay(env, tmp_path, tiny_backbone):
    from pycocotools import mask as mask_utils

    out = tmp_path / "out"
    rc = main(_args(env, out, "--ref", env / "ref.png", "--ref-mask", env / "ref_red.png", "--label", "red",
                    "--ref", env / "ref.png", "--ref-mask", env / "ref_green.png", "--label", "green",
                    env / "t0.png", env / "t1.png"))  # fmt: skip
    assert rc == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"t{i}.png{s}" for i in range(2) for s in (".labels.png", ".instances.json", ".overlay.png")
    )
    model = _model(env, tiny_backbone)
    model.set_reference(env / "ref.png", env / "ref_red.png", label="red")
    model.set_reference(env / "ref.png", env / "ref_green.png", label="green")
    for i in range(2):
        png = Image.open(out / f"t{i}.png.labels.png")
        lm = np.asarray(png)
        assert png.mode == "P" and lm.shape == (128, 128)
        expected, _ = model.segment_labels(env / f"t{i}.png")
        np.testing.assert_array_equal(lm, expected.numpy())  # the same label map as the library's
        assert (lm > 0).any(), "a merge threshold of -1 gives every concept with candidates its clusters"
        doc = json.loads((out / f"t{i}.png.instances.json").read_text())
        assert [c["name"] for c in doc["categories"]] == ["red", "green"] and doc["image_size"] == [128, 128]
        union = np.zeros(lm.shape, bool)
        for rec in doc["instances"]:
            m = mask_utils.decode({"size": rec["segmentation"]["size"], "counts": rec["segmentation"]["counts"]})
            m = m.astype(bool)
            assert (lm[m] == rec["category_id"]).all(), "an instance lies inside its concept"
            assert not (union & m).any(), "instances do not overlap"
            union |= m
        np.testing.assert_array_equal(union, lm > 0)
        overlay = Image.open(out / f"t{i}.png.overlay.png")
        assert overlay.size[0] > 200


def test_labels_reads_a_label_map_as_concepts(env, tmp_path, tiny_backbone):
    out = tmp_path / "out"
    args = ["--ref", env / "ref.png", "--ref-mask", env / "ref_labels.png", env / "t0.png", "--no-overlay"]
    assert main(_args(env, out, *args, "--labels", "1=red,2=green")) == 0
    assert sorted(p.name for p in out.iterdir()) == ["t0.png.instances.json", "t0.png.labels.png"]
    model = _model(env, tiny_backbone)
    model.set_reference(env / "ref.png", env / "ref_labels.png", labels={1: "red", 2: "green"})
    expected, _ = model.segment_labels(env / "t0.png")
    np.testing.assert_array_equal(np.asarray(Image.open(out / "t0.png.labels.png")), expected.numpy())
    doc = json.loads((out / "t0.png.instances.json").read_text())
    assert [c["name"] for c in doc["categories"]] == ["red", "green"]
    # the same outputs again: kept without --overwrite, replaced (and said) with it
    assert main(_args(env, out, *args, "--labels", "all")) == 1
    assert main(_args(env, out, *args, "--labels", "all", "--overwrite")) == 0
    doc = json.loads((out / "t0.png.instances.json").read_text())
    assert [c["name"] for c in doc["categories"]] == ["1", "2"]


def test_label_counts_that_do_not_match_are_one_line(env, tmp_path, capsys):
    rc = main(_args(env, tmp_path / "o", "--ref", env / "ref.png", "--ref-mask", env / "ref_red.png", "--label", "a",
                    "--ref", env / "ref.png", "--ref-mask", env / "ref_green.png", env / "t0.png"))  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and err == ["insid3lab: error: give one --label per --ref (got 2 --ref and 1 --label)"]
    assert not (tmp_path / "o").exists()
    rc = main(_args(env, tmp_path / "o", "--ref", env / "ref.png", "--ref-mask", env / "ref_labels.png", "--label", "a",
                    "--labels", "all", env / "t0.png"))  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and "not both" in err[0]


def test_without_labels_segment_writes_masks_as_before(env, tmp_path):
    out = tmp_path / "out"
    assert main(_args(env, out, "--ref", env / "ref.png", "--ref-mask", env / "ref_red.png", env / "t0.png")) == 0
    assert sorted(p.name for p in out.iterdir()) == ["t0.png.overlay.png", "t0.png.pred.png"]


def test_parse_labels():
    assert parse_labels("all") == "all" and parse_labels(" ALL ") == "all"
    assert parse_labels("1=cat, 2 = dog") == {1: "cat", 2: "dog"}
    for bad in ("cat", "0=bg", "1=", "x=cat", "1=a,1=b"):
        with pytest.raises(Exception, match="VALUE=NAME|twice"):
            parse_labels(bad)
    with pytest.raises(SystemExit) as e:
        main(["segment", "--ref", "r", "--ref-mask", "m", "--out", "o", "t", "--labels", "1:cat"])
    assert e.value.code == 2
