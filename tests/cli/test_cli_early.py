"""Bad input is refused in one line before the weights are loaded: concepts, label values, keypoints, usage."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from insid3lab import INSID3
from insid3lab.cli import main

NO_WEIGHTS = "no-such-weights"  # reached only if the check came too late: its error names the weights


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("INSID3LAB_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture()
def files(tmp_path):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (64, 80, 3), dtype=np.uint8)).save(tmp_path / "ref.png")
    Image.fromarray(rng.integers(0, 255, (64, 80, 3), dtype=np.uint8)).save(tmp_path / "target.png")
    lm = np.zeros((64, 80), np.uint8)
    lm[4:20, 4:20], lm[30:50, 30:60], lm[55:60, 0:80] = 1, 2, 255
    Image.fromarray(lm).save(tmp_path / "labels.png")
    return tmp_path


def _segment(files, *extra, mask="labels.png"):
    return ["segment", "--model", NO_WEIGHTS, "--ref", str(files / "ref.png"), "--ref-mask", str(files / mask),
            str(files / "target.png"), "--out", str(files / "out"), *map(str, extra)]  # fmt: skip


def _one_error(capsys) -> str:
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("insid3lab: error: "), err
    assert NO_WEIGHTS not in lines[0]
    return lines[0]


def test_more_than_255_concepts_for_a_palette_output(files, capsys):
    many = (np.arange(64 * 80).reshape(64, 80) % 300 + 1).astype(np.uint16)  # 300 values, 255 (void) among them
    Image.fromarray(many).save(files / "many.png")
    assert main(_segment(files, "--labels", "all", mask="many.png")) == 1
    line = _one_error(capsys)
    assert "299 concepts" in line and "at most 255" in line and "many.png" in line


def test_a_labels_value_absent_from_the_label_map(files, capsys):
    assert main(_segment(files, "--labels", "1=cat,3=dog")) == 1
    line = _one_error(capsys)
    assert line == (
        f"insid3lab: error: --ref-mask {files / 'labels.png'}: --labels value 3 ('dog') is absent from the label "
        "map (its values: 1, 2; 0 is background, 255 void)"
    )


def test_the_library_names_the_label_and_the_value_and_counts_masks_not_concepts(tiny, files):
    model = INSID3(tiny, image_size=32, svd_components=8, basis_cache=False, progress=False)
    model.set_reference(files / "ref.png", files / "labels.png", labels={1: "cat", 2: "dog"})
    with pytest.raises(ValueError) as e:  # the second map given; the model already holds two concepts
        model.set_reference(files / "ref.png", files / "labels.png", labels={1: "cat", 3: "bird"})
    msg = str(e.value)
    assert msg.startswith("reference mask 1 (") and "value 3 ('bird') is absent" in msg, msg
    assert len(model.references) == 2  # nothing added


def test_255_is_void_in_every_label_map_unless_named(tiny, files):
    model = INSID3(tiny, image_size=32, svd_components=8, basis_cache=False, progress=False)
    model.set_reference(files / "ref.png", files / "labels.png", labels="all")
    assert model.labels == ["1", "2"]  # as track reads it: 255 is void
    model.clear_reference()
    model.set_reference(files / "ref.png", files / "labels.png", labels={255: "rim"})
    assert model.labels == ["rim"]


def test_match_keypoints_outside_the_reference_blame_the_reference(files, capsys):
    pts = files / "points.json"
    pts.write_text(json.dumps([[10, 10], [90, 5]]))
    argv = ["match", "--model", NO_WEIGHTS, "--ref", str(files / "ref.png"), "--points", str(pts),
            str(files / "target.png"), "--out", str(files / "m")]  # fmt: skip
    assert main(argv) == 1
    line = _one_error(capsys)
    assert line.startswith(f"insid3lab: error: --points {pts}: point 1 (x, y) = (90, 5) lies outside the 80x64 "
                           f"reference image {files / 'ref.png'}")  # fmt: skip
    assert "target" not in line


def test_a_bad_option_value_is_one_line_without_the_usage_block(capsys):
    with pytest.raises(SystemExit) as e:
        main(["segment", "--ref", "r", "--ref-mask", "m", "--out", "o", "t", "--labels", "1:cat"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith("insid3lab: error: segment: argument --labels: '1:cat': ")
    assert "usage" not in err and "insid3lab segment --help" in err
