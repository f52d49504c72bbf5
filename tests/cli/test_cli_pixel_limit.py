"""The pixel limit (a guard against decompression bombs): one rule, one flag on every command that reads images."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from insid3lab.cli import build_parser, main
from insid3lab.core import imageio

LIMIT = 5000  # pixels; the test images above it have 6,000 (1.2 x) and 40,000 (8 x, beyond PIL's own 2 x refusal)


@pytest.fixture(autouse=True)
def _env(tmp_path, monkeypatch):
    monkeypatch.setenv("INSID3LAB_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("INSID3LAB_MAX_IMAGE_PIXELS", raising=False)


def _image(path, h, w, seed=0):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)
    return path


def _errors(err: str) -> list[str]:
    return [ln for ln in err.splitlines() if "insid3lab: error" in ln]


def test_every_command_that_reads_images_offers_the_flag_and_its_help_says_what_it_does():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices
    data_check = next(a for a in sub["data"]._actions if a.dest == "data_command").choices["check"]
    for name, p in [*((n, sub[n]) for n in ("segment", "match", "track", "eval", "bench")), ("data check", data_check)]:
        flag = [a for a in p._actions if "--max-image-pixels" in a.option_strings]
        assert flag, f"{name} has no --max-image-pixels"
        text = flag[0].help
        assert "refused" in text and "warn" not in text and "2N" not in text, (name, text)


def test_an_image_just_above_the_limit_is_refused_as_the_help_says(tmp_path, capsys):
    """1.2 x the limit: PIL alone would only warn; the rule is one: above N is refused, with the flag named."""
    ref = _image(tmp_path / "ref.png", 64, 64)
    mask = tmp_path / "mask.png"
    Image.fromarray(np.pad(np.ones((20, 20), np.uint8) * 255, 22)).save(mask)
    big = _image(tmp_path / "big.png", 60, 100)  # 6,000 pixels
    small = _image(tmp_path / "small.png", 64, 64, seed=1)  # 4,096 pixels
    argv = ["segment", "--model", "random:tiny", "--image-size", "64", "--svd-components", "8", "--quiet",
            "--no-overlay", "--ref", str(ref), "--ref-mask", str(mask), str(big), str(small), "--out",
            str(tmp_path / "o"), "--max-image-pixels", str(LIMIT)]  # fmt: skip
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert _errors(err) == [
        f"insid3lab: error: {big}: has 6,000 pixels, more than the pixel limit of 5,000 (a guard against "
        "decompression bombs); if you trust the file, raise the limit with --max-image-pixels N or "
        "INSID3LAB_MAX_IMAGE_PIXELS=N (0: no limit)"
    ]
    assert "warning" not in err
    assert (tmp_path / "o" / "small.png.pred.png").is_file() and not (tmp_path / "o" / "big.png.pred.png").exists()
    # the flag wins over the environment variable, and 0 lifts the limit
    assert main([*argv[:-1], "0", "--overwrite"]) == 0
    assert (tmp_path / "o" / "big.png.pred.png").is_file()


def test_the_flag_is_the_limit_the_library_reads(tmp_path, monkeypatch):
    path = _image(tmp_path / "a.png", 60, 100)
    monkeypatch.setenv("INSID3LAB_MAX_IMAGE_PIXELS", "100000")
    with pytest.raises(imageio.ImageTooLargeError) as e:
        with imageio.pixel_limit_set(LIMIT):
            imageio.read_image(path)
    assert (e.value.pixels, e.value.limit, e.value.path) == (6000, LIMIT, str(path))
    assert imageio.image_size(path) == (100, 60)  # the environment's limit again


def test_data_check_names_each_image_over_the_limit_and_goes_on(tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    entries = []
    for i, (h, w) in enumerate([(40, 50), (60, 100), (200, 200), (40, 50)]):
        _image(images / f"im{i}.png", h, w, seed=i)
        entries.append({"id": i + 1, "file_name": f"im{i}.png", "width": w, "height": h})
    entries[3]["width"] = 51  # a problem after the large ones: still found
    doc = {"images": entries, "categories": [{"id": 1, "name": "a"}],
           "annotations": [{"id": i + 1, "image_id": i + 1, "category_id": 1, "iscrowd": 0,
                            "segmentation": [[1, 1, 10, 1, 10, 10, 1, 10]]} for i in range(4)]}  # fmt: skip
    ann = tmp_path / "a.json"
    ann.write_text(json.dumps(doc))
    argv = ["data", "check", "--annotations", str(ann), "--images", str(images), "--max-image-pixels", str(LIMIT)]
    assert main(argv) == 1
    out = capsys.readouterr().out
    big = [ln for ln in out.splitlines() if ln.strip().startswith("image_too_large")]
    assert len(big) == 2 and "'im1.png'" in big[0] and "6,000 pixels" in big[0] and "'im2.png'" in big[1]
    assert "--max-image-pixels" in big[0]
    assert any("image_size" in ln and "'im3.png'" in ln for ln in out.splitlines())
    assert main([*argv[:-1], "0"]) == 1  # no limit: only the size problem is left
    out = capsys.readouterr().out
    assert "image_too_large" not in out and "1 problem(s)" in out


def test_eval_and_track_name_every_image_over_the_limit(tmp_path, capsys):
    frames = tmp_path / "frames"
    frames.mkdir()
    for t in range(4):
        _image(frames / f"{t:05d}.png", 64, 64 if t != 2 else 100, seed=t)
    _image(frames / "00004.png", 200, 200, seed=9)
    mask = tmp_path / "first.png"
    Image.fromarray(np.pad(np.ones((20, 20), np.uint8) * 255, 22)).save(mask)
    argv = ["track", "--model", "no-such-weights", "--frames", str(frames), "--mask", str(mask), "--out",
            str(tmp_path / "t"), "--max-image-pixels", str(LIMIT), "--quiet"]  # fmt: skip
    assert main(argv) == 1  # refused before the weights are looked for
    lines = _errors(capsys.readouterr().err)
    assert len(lines) == 1 and "2 frame(s) exceed the pixel limit of 5,000" in lines[0]
    assert "00002.png" in lines[0] and "00004.png" in lines[0] and "--max-image-pixels" in lines[0]

    # eval --skip-bad: a folder dataset with one image over the limit counts it as a bad sample and goes on
    root = tmp_path / "data"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(4):
        h, w = (64, 64) if i != 1 else (60, 100)
        _image(root / "images" / f"x{i}.png", h, w, seed=i)
        m = np.zeros((h, w), np.uint8)
        m[10:30, 10:30] = 255
        Image.fromarray(m).save(root / "masks" / f"x{i}.png")
    argv = ["eval", "--dataset", "folder", "--data-root", str(root), "--model", "random:tiny", "--image-size", "64",
            "--svd-components", "8", "--episodes", "4", "--bootstrap", "0", "--no-progress", "--skip-bad",
            "--out", str(tmp_path / "run"), "--max-image-pixels", str(LIMIT)]  # fmt: skip
    assert main(argv) == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["episodes"]["bad"] >= 1
    assert any("x1.png" in json.dumps(b) and "pixel limit" in json.dumps(b) for b in summary["bad_samples"])
