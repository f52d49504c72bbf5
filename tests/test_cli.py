"""The command line: segment and match in a subprocess on generated images, errors in-process."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from insid3lab import INSID3, load_backbone, save_pretrained
from insid3lab.cli import main
from insid3lab.samples import write_samples


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, tiny_backbone):
    d = tmp_path_factory.mktemp("cli")
    write_samples(d / "samples", targets=2)
    save_pretrained(tiny_backbone, d / "model")
    return d


def _env(tmp):
    env = dict(os.environ)
    env["INSID3LAB_CACHE_DIR"] = str(tmp / "cache")
    env["HF_HUB_OFFLINE"] = "1"
    return env


def test_segment_writes_masks_and_overlays(workdir):
    s = workdir / "samples"
    out = workdir / "out"
    cmd = [sys.executable, "-m", "insid3lab", "segment", "--model", str(workdir / "model"), "--device", "cpu",
           "--image-size", "64", "--svd-components", "8",
           "--ref", str(s / "reference.png"), "--ref-mask", str(s / "reference_mask.png"),
           str(s / "target_1.png"), str(s / "target_2.png"), "--out", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True, env=_env(workdir), timeout=300)
    assert r.returncode == 0, r.stderr
    for t in ("target_1", "target_2"):
        mask = np.asarray(Image.open(out / f"{t}_mask.png"))
        target = Image.open(s / f"{t}.png")
        assert mask.shape == (target.height, target.width)
        assert set(np.unique(mask)) <= {0, 255}
        assert (out / f"{t}_overlay.png").stat().st_size > 1000
    # the written mask is the library's mask
    model = INSID3(load_backbone(workdir / "model", device="cpu"), image_size=64, svd_components=8)
    model.set_reference(s / "reference.png", s / "reference_mask.png")
    expected = model.segment(s / "target_2.png").numpy()
    assert np.array_equal(np.asarray(Image.open(out / "target_2_mask.png")) > 0, expected)
    assert "100%" in r.stderr  # the progress bar reached the end


def test_segment_error_is_one_line_and_nonzero(workdir, tmp_path):
    s = workdir / "samples"
    cmd = [sys.executable, "-m", "insid3lab", "segment", "--model", str(workdir / "model"),
           "--ref", str(s / "reference.png"), "--ref-mask", str(s / "reference_mask.png"),
           str(tmp_path / "missing.png"), "--out", str(tmp_path / "o")]
    r = subprocess.run(cmd, capture_output=True, text=True, env=_env(workdir), timeout=300)
    assert r.returncode == 1
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert lines == [f"insid3lab: error: {tmp_path / 'missing.png'}: no such file"]


def test_without_weights_it_says_how_to_get_them(workdir, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    s = workdir / "samples"
    code = main(["segment", "--model", "facebook/dinov3-vitl16-pretrain-lvd1689m",
                 "--ref", str(s / "reference.png"), "--ref-mask", str(s / "reference_mask.png"),
                 str(s / "target_1.png"), "--out", str(workdir / "o3")])
    err = capsys.readouterr().err
    assert code == 1
    assert "gated" in err and "accept the licence" in err and ".pth" in err


def test_mismatched_reference_masks(workdir, capsys):
    s = workdir / "samples"
    code = main(["segment", "--model", "random:tiny", "--ref", str(s / "reference.png"),
                 "--ref", str(s / "target_1.png"), "--ref-mask", str(s / "reference_mask.png"),
                 str(s / "target_2.png"), "--out", str(workdir / "o4")])
    assert code == 1
    assert "one --ref-mask per --ref" in capsys.readouterr().err


def test_match_writes_json_and_figure(workdir, capsys):
    s = workdir / "samples"
    pts = workdir / "points.json"
    pts.write_text(json.dumps({"points": [[100, 80], [200, 150]]}))
    out = workdir / "matches"
    code = main(["match", "--model", str(workdir / "model"), "--device", "cpu", "--image-size", "64",
                 "--ref", str(s / "reference.png"), "--points", str(pts), str(s / "target_1.png"),
                 "--out", str(out), "--quiet"])
    assert code == 0, capsys.readouterr().err
    rec = json.loads((out / "target_1_matches.json").read_text())
    assert rec["points"] == [[100.0, 80.0], [200.0, 150.0]] and len(rec["matches"]) == 2
    tw, th = Image.open(s / "target_1.png").size
    assert all(0 <= x <= tw and 0 <= y <= th for x, y in rec["matches"])
    assert (out / "target_1_matches.png").is_file()
    # bad points file
    pts.write_text('{"points": [[1, 2, 3]]}')
    assert main(["match", "--model", "random:tiny", "--ref", str(s / "reference.png"), "--points", str(pts),
                 str(s / "target_1.png"), "--out", str(out)]) == 1
    assert "expected" in capsys.readouterr().err


def test_samples_and_cache_commands(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("INSID3LAB_CACHE_DIR", str(tmp_path / "cache"))
    assert main(["samples", str(tmp_path / "s")]) == 0
    printed = capsys.readouterr().out.split()
    assert any(p.endswith("reference_mask.png") for p in printed)
    assert main(["cache", "info"]) == 0
    assert "0 cached basis" in capsys.readouterr().out
    assert main(["cache", "clear"]) == 0
